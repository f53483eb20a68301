"""How big the slow tests run: `STOFLOW_TEST_SCALE=ci` (the default) or `full`.

The full sizes are the ones the issues' must-shows name (200 tenants sharing the sale-check budget, a
rotation over 100 tenants, 200 products published end to end...); CI runs the same tests, with the same
assertions, over fewer tenants, products or examples so the suite fits in its time on 2 cores. Run the full
sizes before a release or after touching what they guard:

    STOFLOW_TEST_SCALE=full scripts/test -q --ignore=tests/e2e

Each test that takes a size from here says in its docstring which must-show its full size proves.
"""

from __future__ import annotations

import os
from typing import Literal

Scale = Literal["ci", "full"]


def current_scale() -> Scale:
    """The scale STOFLOW_TEST_SCALE asks for (`ci` when unset); anything else is refused."""
    value = os.environ.get("STOFLOW_TEST_SCALE", "ci").strip().lower() or "ci"
    if value not in ("ci", "full"):
        raise ValueError(f"STOFLOW_TEST_SCALE must be 'ci' or 'full', not {value!r}")
    return "full" if value == "full" else "ci"


SCALE: Scale = current_scale()
FULL = SCALE == "full"


def sized(ci: int, full: int) -> int:
    """`full` at the full scale, else `ci`."""
    return full if FULL else ci


#: Tenants whose eBay sale checks share one daily budget over a simulated day (must-show 7: 200).
SALE_CHECK_TENANTS = sized(40, 200)
#: That day's eBay budget: two calls per tenant, as at the full size (400 for 200 tenants).
SALE_CHECK_BUDGET = 2 * SALE_CHECK_TENANTS
#: Tenants whose stored tokens a secret rotation re-seals (the rotation's must-show: 100).
ROTATION_TENANTS = sized(20, 100)
#: Products sold twice at once, on eBay and Etsy, one race each (the oversell must-show: 50).
OVERSELL_RACES = sized(15, 50)
#: Tenant schemas migrated in one batch, then left alone on a second run (the migration must-show: 50).
MIGRATION_TENANTS = sized(20, 50)
#: Tenant schemas a migration is killed in the middle of (the same must-show: 50).
KILLED_MIGRATION_TENANTS = sized(20, 50)
#: Hypothesis examples of the job lifecycle state machine (STOFLOW_STATEFUL_EXAMPLES overrides it).
STATEFUL_EXAMPLES = int(os.environ.get("STOFLOW_STATEFUL_EXAMPLES", str(sized(10, 20))))
#: Realistic products published to Vinted, eBay and Etsy end to end (the catalogue must-show: 200).
CATALOGUE_PRODUCTS = sized(60, 200)
