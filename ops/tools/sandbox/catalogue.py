"""The catalogue ids each fake marketplace knows: eBay leaf categories (with the conditions they take) and
Etsy seller taxonomy nodes.

The real catalogues hold tens of thousands of nodes; the sandbox knows the ones Stoflow's own reference data
names (`ops/config/reference_data/platform_mappings`),
plus a few ids tests use on purpose. A listing in any other id
is refused, as a real marketplace refuses an id it has no node for: a typo or a stale id shows up in tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache

from ops.config.reference_data import load_platform_mappings

#: eBay's clothing categories take these item conditions (1000, 1500, 1750, 2990, 3000, 3010).
APPAREL_CONDITIONS = frozenset(
    {"NEW", "NEW_OTHER", "NEW_WITH_DEFECTS", "PRE_OWNED_EXCELLENT", "USED_EXCELLENT", "PRE_OWNED_FAIR"}
)
#: Ids kept for the sandbox's own tests: eBay "Jeans" (11483), Etsy "Clothing" (374) and "Shoes" (1429).
EXTRA_EBAY_CATEGORIES = frozenset({"11483"})
EXTRA_ETSY_TAXONOMIES = frozenset({374, 1429})


def _ids(platform: str, field: str) -> set[object]:
    """Every id our categories name in `field`, and per gender in `{field}_by_gender` (kids' categories)."""
    categories = load_platform_mappings().get(platform, {}).get("categories", {})
    found: set[object] = set()
    for fields in categories.values():
        if fields.get(field) is not None:
            found.add(fields[field])
        by_gender = fields.get(f"{field}_by_gender")
        if isinstance(by_gender, dict):
            found.update(value for value in by_gender.values() if value is not None)
    return found


@cache
def ebay_categories() -> Mapping[str, frozenset[str]]:
    """eBay category id -> the item conditions it accepts."""
    known = {str(value) for value in _ids("ebay", "category_id")} | EXTRA_EBAY_CATEGORIES
    return dict.fromkeys(sorted(known), APPAREL_CONDITIONS)


@cache
def etsy_taxonomy_ids() -> frozenset[int]:
    """The Etsy seller taxonomy ids the fake accepts."""
    found = {int(str(value)) for value in _ids("etsy", "taxonomy_id") if str(value).isdigit()}
    return frozenset(found) | EXTRA_ETSY_TAXONOMIES
