"""200 generated, realistic products (varied gender, age, category, brand, size) through the three mappers
with the real reference data: the share each marketplace accepts, and every refusal explained.

This exercises the mappers only (pure); publishing the same products through the sandbox end to end is
still to do. Run with `-s` to see the shares and the reasons.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import date
from decimal import Decimal

from domain.catalogue import PlatformMappings, ProductSnapshot
from domain.errors import DomainError
from domain.mapping.ebay import EbayAccountSettings, map_to_ebay_inventory_item, map_to_ebay_offer
from domain.mapping.etsy import EtsyShopSettings, map_to_etsy_listing
from domain.mapping.vinted import map_to_vinted_item
from ops.reference_data import load_attributes, load_platform_mappings

TODAY = date(2026, 11, 26)
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


def realistic_product(index: int, rng: random.Random) -> ProductSnapshot:
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
    brand = rng.choice(load_attributes()["brands"]).code
    return ProductSnapshot(
        id=index,
        sku=f"GEN-{index:04d}",
        title=f"Article {index} {category.replace('_', ' ')}",
        description="Porté, bon état général.",
        price=Decimal(rng.choice(["8.00", "15.50", "29.90", "45.00", "120.00"])),
        currency="EUR",
        stock_quantity=1,
        category=category,
        brand=brand,
        size=size,
        color=rng.choice(load_attributes()["colors"]).code,
        material=rng.choice(load_attributes()["materials"]).code,
        gender=gender,
        condition=rng.choice(load_attributes()["conditions"]).code,
        decade=rng.choice(["1970s", "1980s", "1990s", "2000s", "2010s"]),
        image_urls=("https://media.example.com/1.jpg",),
    )


def test_200_realistic_products_map_or_fail_with_an_explained_code() -> None:
    mappings = PlatformMappings.from_nested(load_platform_mappings())
    rng = random.Random(10)
    products = [realistic_product(index, rng) for index in range(200)]
    outcomes: dict[str, Counter[str]] = {platform: Counter() for platform in ("vinted", "ebay", "etsy")}
    for product in products:
        attempts = {
            "vinted": lambda p=product: map_to_vinted_item(p, mappings),
            "ebay": lambda p=product: (
                map_to_ebay_inventory_item(p, mappings),
                map_to_ebay_offer(p, mappings, ACCOUNT),
            ),
            "etsy": lambda p=product: map_to_etsy_listing(p, mappings, SHOP, today=TODAY),
        }
        for platform, attempt in attempts.items():
            try:
                attempt()
            except DomainError as error:
                outcomes[platform][f"{error.code}: {error}"] += 1
            else:
                outcomes[platform]["published"] += 1

    for platform, counts in outcomes.items():
        print(f"\n{platform}: {counts['published']}/200 map")
        for reason, count in counts.most_common():
            if reason != "published":
                print(f"  {count:3d} x {reason}")
    # On eBay only jewellery and watches (no id found yet) and maternity (no eBay category) fail; Etsy
    # refuses the 2000s and 2010s as not yet vintage.
    # Every refusal names its code and says why: that is what the seller reads.
    codes = {reason.split(":")[0] for counts in outcomes.values() for reason in counts} - {"published"}
    assert codes <= {"mapping_missing", "not_eligible"}
    assert outcomes["vinted"]["published"] >= 190
    assert outcomes["ebay"]["published"] >= 180
