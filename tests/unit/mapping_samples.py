"""Sample products and mappings for the mapper tests, and the golden-payload comparison.

The mappings are a hand-made excerpt of ops/config/reference_data/platform_mappings (same shape, some
entries unverified on purpose), so that golden payloads change only when a mapper does.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from domain.catalogue import PlatformMappings, ProductSnapshot

GOLDEN_DIR = Path(__file__).parent / "golden"

#: Set STOFLOW_UPDATE_GOLDEN=1 to rewrite the golden files from the current mappers, then review the diff.
UPDATE_GOLDEN = os.environ.get("STOFLOW_UPDATE_GOLDEN") == "1"

NESTED_MAPPINGS: dict[str, dict[str, dict[str, dict[str, object]]]] = {
    "ebay": {
        "categories": {
            "women_dresses": {
                "category_id": "63861",
                "required_aspects": ["Brand", "Size", "Department"],
                "recommended_aspects": ["Color", "Material", "Style", "Pattern"],
                "verified": True,
            },
            "men_jeans": {"category_id": "11483", "required_aspects": ["Brand", "Size"], "verified": True},
            "kids_girls_dresses": {
                "category_id_by_gender": {"girls": "51581", "baby_girls": "260021"},
                "required_aspects": ["Department"],
                "verified": True,
            },
            "women_necklaces": {"none": "not in the dumped tree", "verified": False},
        },
        "conditions": {
            "new_with_tags": {"condition": "NEW", "verified": True},
            "very_good": {"condition": "PRE_OWNED_EXCELLENT", "verified": False},
            "good": {"condition": "USED_EXCELLENT", "verified": True},
        },
        "brands": {
            "levis": {"aspect": "Levi's", "verified": True},
            "zara": {"aspect": "Zara", "verified": True},
        },
        "colors": {"blue": {"aspect": "Blue", "verified": False}},
        "sizes": {"m": {"aspect": "M", "verified": False}, "w32": {"aspect": "W32", "verified": False}},
        "materials": {"cotton": {"aspect": "Cotton", "verified": False}},
        "styles": {"casual": {"aspect": "Casual", "verified": False}},
        "patterns": {"plain": {"aspect": "Plain", "verified": False}},
        "genders": {
            "women": {"department": "Women", "verified": True},
            "men": {"department": "Men", "verified": True},
            "unisex": {"department": "Unisex Adults", "verified": False},
            "girls": {"department": "Girls", "verified": False},
        },
    },
    "etsy": {
        "categories": {
            "women_dresses": {"taxonomy_id": 374, "verified": False},
            "men_jeans": {"taxonomy_id": 374, "verified": False},
        },
    },
    "vinted": {
        "categories": {
            "women_dresses": {"catalog_id": 10, "size_group": 4, "verified": True},
            "men_jeans": {"catalog_id": 257, "size_group": 77, "verified": True},
            "women_coats": {"catalog_id": 1907, "size_group": 4, "package_size_id": 2, "verified": False},
            "women_handbags": {"catalog_id": 156, "verified": True},
            "kids_girls_dresses": {
                "catalog_id_by_gender": {"girls": 1247},
                "size_group": 32,
                "verified": True,
            },
            "women": {"none": "a parent node", "verified": True},
        },
        "conditions": {
            "new_with_tags": {"status_id": 6, "verified": True},
            "very_good": {"status_id": 2, "verified": True},
            "good": {"status_id": 3, "verified": True},
        },
        "brands": {
            "levis": {"brand_id": 10, "verified": True},
            "zara": {"brand_id": 12, "verified": True},
            "sezane": {"brand_title": "Sézane", "verified": False},
        },
        "sizes": {
            "m": {"size_ids": {"4": 4, "14": 208, "77": 1652}, "verified": True},
            "xxs": {"size_ids": {"4": 102}, "verified": True},
            "kids_8_years": {"size_ids": {"32": 627}, "verified": True},
            "l32": {"none": "Vinted sizes trousers by waist only", "verified": True},
        },
        "colors": {"blue": {"color_id": 9, "verified": True}, "black": {"color_id": 1, "verified": False}},
    },
}

MAPPINGS = PlatformMappings.from_nested(NESTED_MAPPINGS)

PRODUCT = ProductSnapshot(
    id=42,
    sku="SKU-0042",
    title="Robe Zara vintage bleue en coton",
    description="Robe d'été en coton bleu, portée deux fois.",
    price=Decimal("19.90"),
    currency="EUR",
    stock_quantity=1,
    category="women_dresses",
    brand="zara",
    size="m",
    color="blue",
    material="cotton",
    gender="women",
    condition="very_good",
    decade="1990s",
    condition_sup="Small mark on the hem.",
    pattern="plain",
    style="casual",
    image_urls=("https://media.example.com/p/42/1.jpg", "https://media.example.com/p/42/2.jpg"),
)


def product(**changes: Any) -> ProductSnapshot:
    """Return the sample product with some fields changed."""
    return replace(PRODUCT, **changes)


def mappings_without(platform: str, kind: str, code: str) -> PlatformMappings:
    """Return the sample mappings with one entry removed."""
    nested = json.loads(json.dumps(NESTED_MAPPINGS))
    del nested[platform][kind][code]
    return PlatformMappings.from_nested(nested)


def assert_matches_golden(payload: dict[str, object], name: str) -> None:
    """Compare a payload exactly with tests/unit/golden/<name>.json, as the JSON it will be sent as."""
    path = GOLDEN_DIR / f"{name}.json"
    sent = json.loads(json.dumps(payload))  # also proves the payload is plain JSON
    if UPDATE_GOLDEN:
        path.write_text(json.dumps(sent, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    expected = json.loads(path.read_text(encoding="utf-8"))
    assert sent == expected
    assert payload == expected
