"""200 generated, realistic products (varied gender, age, category, brand, size) through the three mappers
with the real reference data: the share each marketplace accepts, and every refusal explained.

This exercises the mappers only (pure); tests/e2e/test_catalogue_e2e.py publishes the same products through
the sandbox end to end. Run with `-s` to see the shares and the reasons.
"""

from __future__ import annotations

from collections import Counter
from datetime import date
from decimal import Decimal

from domain.catalogue import PlatformMappings, ProductSnapshot
from domain.errors import DomainError
from domain.mapping.ebay import EbayAccountSettings, map_to_ebay_inventory_item, map_to_ebay_offer
from domain.mapping.etsy import EtsyShopSettings, map_to_etsy_listing
from domain.mapping.vinted import map_to_vinted_item
from ops.reference_data import load_platform_mappings
from tests.realistic_catalogue import realistic_catalogue

TODAY = date(2026, 11, 26)
ACCOUNT = EbayAccountSettings("EBAY_FR", "f1", "p1", "r1", "warehouse-1")
SHOP = EtsyShopSettings(shop_id=1, shipping_profile_id=2)


def realistic_product(index: int, fields: dict[str, str | None]) -> ProductSnapshot:
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


def test_200_realistic_products_map_or_fail_with_an_explained_code() -> None:
    mappings = PlatformMappings.from_nested(load_platform_mappings())
    products = [realistic_product(index, fields) for index, fields in enumerate(realistic_catalogue())]
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
