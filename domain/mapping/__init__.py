"""Platform mappers: a Stoflow product -> each marketplace's payload, pure and deterministic.

One module per platform (`ebay`, `etsy`, `vinted`), their shared errors and formatting in `common`, and
price/quantity/currency rules in `policy`. Each platform module's docstring lists what it requires.

Each mapper checks eligibility first (not_eligible), then the platform's rules (policy_violation), then
the mappings (mapping_missing), and raises before returning anything: map every payload of a job before
its first marketplace call, and a product that cannot be listed fails with nothing sent.
"""

from domain.mapping.common import MappingMissing, NotEligible, PolicyViolation

__all__ = ["MappingMissing", "NotEligible", "PolicyViolation"]
