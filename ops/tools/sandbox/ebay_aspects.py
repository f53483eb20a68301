"""The item specifics the fake eBay requires per leaf category, read from our reference data.

eBay refuses to publish an offer whose inventory item lacks an aspect its category requires, with one
25002 user error per missing aspect ("The item specific Brand is missing. Add Brand to this listing,
enter a valid value, and then try again.", the aspect's name as parameter "2"). The sandbox applies
the same rule from the `required_aspects` of ops/config/reference_data/platform_mappings/ebay.json, so a
mapper that skipped its own check would meet the refusal the real marketplace gives.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from ops.config.reference_data import load_platform_mappings


@cache
def required_aspects_by_category() -> Mapping[str, frozenset[str]]:
    """Return eBay category id -> the aspects a listing in it must carry."""
    required: dict[str, set[str]] = {}
    for fields in load_platform_mappings()["ebay"]["categories"].values():
        aspects = fields.get("required_aspects")
        if not isinstance(aspects, list):
            continue
        ids = [fields.get("category_id")]
        by_gender = fields.get("category_id_by_gender")
        if isinstance(by_gender, dict):
            ids.extend(by_gender.values())
        for category_id in ids:
            if isinstance(category_id, str):
                required.setdefault(category_id, set()).update(a for a in aspects if isinstance(a, str))
    return {category_id: frozenset(aspects) for category_id, aspects in required.items()}


def missing_aspect_errors(item: Mapping[str, Any], category_id: object) -> list[dict[str, Any]]:
    """Return eBay's 25002 error entries for each required aspect the inventory item lacks."""
    required = required_aspects_by_category().get(str(category_id), frozenset())
    product = item.get("product")
    aspects = product.get("aspects") if isinstance(product, Mapping) else None
    present = {
        name
        for name, values in (aspects.items() if isinstance(aspects, Mapping) else ())
        if isinstance(values, list) and any(isinstance(v, str) and v.strip() for v in values)
    }
    errors: list[dict[str, Any]] = []
    for aspect in sorted(required - present):
        missing = f"The item specific {aspect} is missing."
        advice = f"{missing} Add {aspect} to this listing, enter a valid value, and then try again."
        errors.append(
            {
                "errorId": 25002,
                "domain": "API_INVENTORY",
                "subdomain": "Selling",
                "category": "REQUEST",
                "message": f"A user error has occurred. {advice}",
                "longMessage": f"A user error has occurred. {advice}",
                "parameters": [
                    {"name": "0", "value": missing},
                    {"name": "1", "value": advice},
                    {"name": "2", "value": aspect},
                ],
            }
        )
    return errors
