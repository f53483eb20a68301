"""Generated, realistic products (varied gender, age, category, brand, size) made of the seeded reference
data: the catalogue the mapper test and the end-to-end publication of 200 products both use."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import date
from decimal import Decimal

from domain.catalogue import PlatformMappings, ProductSnapshot
from domain.errors import DomainError
from domain.mapping.ebay import EbayAccountSettings, map_to_ebay_inventory_item, map_to_ebay_offer
from domain.mapping.etsy import EtsyShopSettings, map_to_etsy_listing
from domain.mapping.vinted import map_to_vinted_item
from ops.config.reference_data import load_attributes

ACCOUNT = EbayAccountSettings("EBAY_FR", "f1", "p1", "r1", "warehouse-1")
SHOP = EtsyShopSettings(shop_id=1, shipping_profile_id=2)

#: Which of our sizes a reseller would pick for a category, by the category's family.
SIZES = {
    "clothing": ["xs", "s", "m", "l", "xl", "fr_36", "fr_38", "fr_40", "uk_10", "uk_12"],
    "trousers": ["w28", "w30", "w32", "w34", "m", "l"],
    "shoes_women": ["shoe_eu_37", "shoe_eu_38", "shoe_eu_39", "shoe_eu_40"],
    "shoes_men": ["shoe_eu_41", "shoe_eu_42", "shoe_eu_43", "shoe_eu_44"],
    "kids": ["kids_3_years", "kids_6_years", "kids_8_years", "kids_10_years", "kids_12_years"],
    "baby": ["kids_3_6_months", "kids_12_18_months"],
    "kids_shoes": ["shoe_eu_35", "shoe_eu_36"],
}


def leaf_categories() -> list[str]:
    records = load_attributes()["categories"]
    parents = {record.parent for record in records}
    return [record.code for record in records if record.code not in parents]


def realistic_fields(index: int, rng: random.Random) -> dict[str, str | None]:
    """What a reseller would type for product `index`: attribute codes, title, price (a string)."""
    category = rng.choice(leaf_categories())
    root = category.split("_", 1)[0]
    size: str | None = None
    if root == "kids":
        baby = "baby" in category
        gender = rng.choice(["baby_girls", "baby_boys"] if baby else ["girls", "boys"])
        if "girls" in category:
            gender = "baby_girls" if baby else "girls"
        if "boys" in category:
            gender = "baby_boys" if baby else "boys"
        if any(word in category for word in ("trainers", "boots", "sandals", "shoes")):
            size = rng.choice(SIZES["kids_shoes"])
        elif not any(word in category for word in ("bags", "backpacks", "hair", "hats", "gloves", "scarves")):
            size = rng.choice(SIZES["baby" if baby else "kids"])
    else:
        gender = root
        shoes = any(
            w in category
            for w in ("trainers", "boots", "heels", "flats", "sandals", "loafers", "mules", "slippers")
        )
        if shoes or "shoes" in category:
            size = rng.choice(SIZES["shoes_women" if root == "women" else "shoes_men"])
        elif any(w in category for w in ("jeans", "trousers", "shorts")) and root == "men":
            size = rng.choice(SIZES["trousers"])
        elif "_" in category and not any(
            w in category
            for w in (
                "bags",
                "backpacks",
                "wallets",
                "clutches",
                "necklaces",
                "earrings",
                "rings",
                "bracelets",
                "watches",
                "belts",
                "hats",
                "scarves",
                "sunglasses",
                "gloves",
                "hair",
                "ties",
                "jewellery",
                "briefcases",
                "holdalls",
            )
        ):
            # Men's clothing is sized in letters; FR and UK numbers are women's sizes.
            size = rng.choice(SIZES["clothing"] if root == "women" else SIZES["clothing"][:5])
    attributes = load_attributes()
    return {
        "sku": f"GEN-{index:04d}",
        "title": f"Article {index} {category.replace('_', ' ')}",
        "description": "Porté, bon état général.",
        "price": rng.choice(["8.00", "15.50", "29.90", "45.00", "120.00"]),
        "category": category,
        "brand": rng.choice(attributes["brands"]).code,
        "size": size,
        "color": rng.choice(attributes["colors"]).code,
        "material": rng.choice(attributes["materials"]).code,
        "gender": gender,
        "condition": rng.choice(attributes["conditions"]).code,
        "decade": rng.choice(["1970s", "1980s", "1990s", "2000s", "2010s"]),
    }


def realistic_catalogue(count: int = 200, seed: int = 10) -> list[dict[str, str | None]]:
    """`count` products as `realistic_fields` makes them, the same ones for a given seed."""
    rng = random.Random(seed)
    return [realistic_fields(index, rng) for index in range(count)]


def snapshot(index: int, fields: dict[str, str | None]) -> ProductSnapshot:
    """The product the mappers see for `fields`."""
    return ProductSnapshot(
        id=index,
        sku=fields["sku"],
        title=fields["title"] or "",
        description=fields["description"],
        price=Decimal(fields["price"] or "0"),
        currency="EUR",
        stock_quantity=1,
        category=fields["category"],
        brand=fields["brand"],
        size=fields["size"],
        color=fields["color"],
        material=fields["material"],
        gender=fields["gender"],
        condition=fields["condition"],
        decade=fields["decade"],
        image_urls=("https://media.example.com/1.jpg",),
    )


def mapping_outcomes(
    catalogue: list[dict[str, str | None]], mappings: PlatformMappings, today: date
) -> dict[str, list[str]]:
    """Per platform, per product in order: `published`, or the mapper's refusal as `code: message`."""
    outcomes: dict[str, list[str]] = {"vinted": [], "ebay": [], "etsy": []}
    for index, fields in enumerate(catalogue):
        product = snapshot(index, fields)
        attempts: dict[str, Callable[[], object]] = {
            "vinted": lambda p=product: map_to_vinted_item(p, mappings),
            "ebay": lambda p=product: (
                map_to_ebay_inventory_item(p, mappings),
                map_to_ebay_offer(p, mappings, ACCOUNT),
            ),
            "etsy": lambda p=product: map_to_etsy_listing(p, mappings, SHOP, today=today),
        }
        for platform, attempt in attempts.items():
            try:
                attempt()
            except DomainError as error:
                outcomes[platform].append(f"{error.code}: {error}")
            else:
                outcomes[platform].append("published")
    return outcomes
