"""eBay mapper: inventory item and offer payloads, required attributes, aspects and eBay's rules."""

from __future__ import annotations

from decimal import Decimal

import pytest

from domain.catalogue import PlatformMappings
from domain.mapping import MappingMissing, PolicyViolation
from domain.mapping.ebay import EbayAccountSettings, map_to_ebay_inventory_item, map_to_ebay_offer
from ops.config.reference_data import load_platform_mappings
from tests.unit.mapping_samples import MAPPINGS, PRODUCT, assert_matches_golden, mappings_without, product

ACCOUNT = EbayAccountSettings(
    marketplace_id="EBAY_FR",
    fulfillment_policy_id="6196932000",
    payment_policy_id="6196933000",
    return_policy_id="6196934000",
    merchant_location_key="paris-warehouse",
)


def aspects(payload: dict[str, object]) -> dict[str, object]:
    item_product = payload["product"]
    assert isinstance(item_product, dict)
    found = item_product["aspects"]
    assert isinstance(found, dict)
    return found


def test_inventory_item_matches_the_golden_payload() -> None:
    assert_matches_golden(map_to_ebay_inventory_item(PRODUCT, MAPPINGS), "ebay_inventory_item")


def test_offer_matches_the_golden_payload() -> None:
    assert_matches_golden(map_to_ebay_offer(PRODUCT, MAPPINGS, ACCOUNT), "ebay_offer")


def test_title_is_cut_to_80_at_a_word_boundary() -> None:
    long_title = (
        "Veste en jean Levi's trucker vintage années 90 délavée bleu clair taille M homme parfait état"
    )

    item = map_to_ebay_inventory_item(product(title=long_title), MAPPINGS)

    item_product = item["product"]
    assert isinstance(item_product, dict)
    assert (
        item_product["title"]
        == "Veste en jean Levi's trucker vintage années 90 délavée bleu clair taille M homme"
    )
    assert len(item_product["title"]) <= 80


# --- required attributes ----------------------------------------------------------------------------------


def test_unset_condition_is_mapping_missing() -> None:
    with pytest.raises(MappingMissing) as caught:
        map_to_ebay_inventory_item(product(condition=None), MAPPINGS)

    assert (caught.value.attribute, caught.value.platform) == ("condition", "ebay")
    assert "condition" in str(caught.value)
    assert "ebay" in str(caught.value)


def test_unmapped_condition_is_mapping_missing() -> None:
    with pytest.raises(MappingMissing, match="condition 'very_good' has no ebay mapping"):
        map_to_ebay_inventory_item(PRODUCT, mappings_without("ebay", "conditions", "very_good"))


def test_unset_category_is_mapping_missing() -> None:
    with pytest.raises(MappingMissing) as caught:
        map_to_ebay_offer(product(category=None), MAPPINGS, ACCOUNT)

    assert (caught.value.attribute, caught.value.platform) == ("category", "ebay")
    assert "category" in str(caught.value)
    assert "ebay" in str(caught.value)


def test_unmapped_category_is_mapping_missing() -> None:
    with pytest.raises(MappingMissing, match="category 'women_dresses' has no ebay mapping"):
        map_to_ebay_offer(PRODUCT, mappings_without("ebay", "categories", "women_dresses"), ACCOUNT)


def test_unverified_condition_still_maps() -> None:
    item = map_to_ebay_inventory_item(product(condition="very_good"), MAPPINGS)

    assert item["condition"] == "PRE_OWNED_EXCELLENT"


# --- aspects ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attribute", "kind", "code"),
    [
        ("brand", "brands", "zara"),
        ("color", "colors", "blue"),
        ("size", "sizes", "m"),
        ("material", "materials", "cotton"),
        ("gender", "genders", "women"),
        ("style", "styles", "casual"),
        ("pattern", "patterns", "plain"),
    ],
)
def test_a_set_but_unmapped_aspect_is_mapping_missing(attribute: str, kind: str, code: str) -> None:
    with pytest.raises(MappingMissing) as caught:
        map_to_ebay_inventory_item(PRODUCT, mappings_without("ebay", kind, code))

    assert (caught.value.attribute, caught.value.platform, caught.value.value) == (attribute, "ebay", code)


def test_unset_recommended_aspects_are_left_out() -> None:
    bare = product(color=None, material=None, style=None, pattern=None, gender=None)

    assert aspects(map_to_ebay_inventory_item(bare, MAPPINGS)) == {
        "Brand": ["Zara"],
        "Size": ["M"],
        "Department": ["Women"],
    }


@pytest.mark.parametrize(("attribute", "aspect"), [("brand", "Brand"), ("size", "Size")])
def test_a_required_aspect_left_unset_is_mapping_missing_naming_it(attribute: str, aspect: str) -> None:
    with pytest.raises(MappingMissing, match=f"requires the item specific {aspect}") as caught:
        map_to_ebay_inventory_item(product(**{attribute: None}), MAPPINGS)

    assert (caught.value.attribute, caught.value.platform) == (attribute, "ebay")
    assert "63861" in str(caught.value)


def test_a_category_marked_none_is_mapping_missing_with_its_reason() -> None:
    with pytest.raises(MappingMissing, match="not in the dumped tree"):
        map_to_ebay_inventory_item(product(category="women_necklaces"), MAPPINGS)


def test_department_comes_from_the_category_root_without_a_gender() -> None:
    men = product(category="men_jeans", gender=None)

    assert aspects(map_to_ebay_inventory_item(men, MAPPINGS)) == {
        "Brand": ["Zara"],
        "Color": ["Blue"],
        "Size": ["M"],
        "Material": ["Cotton"],
        "Department": ["Men"],
        "Style": ["Casual"],
        "Pattern": ["Plain"],
    }


def test_gender_wins_over_the_category_root() -> None:
    item = map_to_ebay_inventory_item(product(category="men_jeans", gender="unisex"), MAPPINGS)

    assert aspects(item)["Department"] == ["Unisex Adults"]


def test_a_kids_category_takes_its_id_and_department_from_the_gender() -> None:
    girls = product(category="kids_girls_dresses", gender="girls")

    item = map_to_ebay_inventory_item(girls, MAPPINGS)

    assert aspects(item)["Department"] == ["Girls"]
    assert map_to_ebay_offer(girls, MAPPINGS, ACCOUNT)["categoryId"] == "51581"


def test_a_kids_category_without_a_gender_is_mapping_missing() -> None:
    with pytest.raises(MappingMissing) as caught:
        map_to_ebay_inventory_item(product(category="kids_girls_dresses", gender=None), MAPPINGS)

    assert caught.value.attribute == "gender"


# --- condition notes --------------------------------------------------------------------------------------


def test_condition_notes_are_left_out_for_new_items() -> None:
    item = map_to_ebay_inventory_item(product(condition="new_with_tags"), MAPPINGS)

    assert item["condition"] == "NEW"
    assert "conditionDescription" not in item


def test_blank_condition_notes_are_left_out() -> None:
    assert "conditionDescription" not in map_to_ebay_inventory_item(product(condition_sup="  "), MAPPINGS)


def test_condition_notes_over_1000_characters_are_a_policy_violation() -> None:
    with pytest.raises(PolicyViolation, match="text_length"):
        map_to_ebay_inventory_item(product(condition_sup="x" * 1001), MAPPINGS)


# --- platform rules ---------------------------------------------------------------------------------------


def test_offer_currency_must_be_the_marketplace_currency() -> None:
    with pytest.raises(PolicyViolation) as caught:
        map_to_ebay_offer(product(currency="GBP"), MAPPINGS, ACCOUNT)

    assert caught.value.rule == "currency_supported"


def test_offer_follows_the_marketplace_currency() -> None:
    account = EbayAccountSettings("EBAY_GB", "f", "p", "r", "london")

    offer = map_to_ebay_offer(product(currency="GBP"), MAPPINGS, account)

    assert offer["pricingSummary"] == {"price": {"value": "19.90", "currency": "GBP"}}


def test_unknown_marketplace_is_a_policy_violation() -> None:
    account = EbayAccountSettings("EBAY_XX", "f", "p", "r", "nowhere")

    with pytest.raises(PolicyViolation, match="currency_supported"):
        map_to_ebay_offer(PRODUCT, MAPPINGS, account)


@pytest.mark.parametrize(
    ("changes", "rule"),
    [({"price": Decimal("0")}, "price_positive"), ({"stock_quantity": 0}, "quantity_at_least_one")],
)
def test_offer_price_and_quantity_rules(changes: dict[str, object], rule: str) -> None:
    with pytest.raises(PolicyViolation) as caught:
        map_to_ebay_offer(product(**changes), MAPPINGS, ACCOUNT)

    assert caught.value.rule == rule


def test_inventory_item_needs_stock() -> None:
    with pytest.raises(PolicyViolation, match="quantity_at_least_one"):
        map_to_ebay_inventory_item(product(stock_quantity=0), MAPPINGS)


def test_inventory_item_needs_an_image() -> None:
    with pytest.raises(PolicyViolation, match="images_required"):
        map_to_ebay_inventory_item(product(image_urls=()), MAPPINGS)


def test_at_most_24_images_are_sent() -> None:
    urls = tuple(f"https://media.example.com/{n}.jpg" for n in range(30))

    item_product = map_to_ebay_inventory_item(product(image_urls=urls), MAPPINGS)["product"]

    assert isinstance(item_product, dict)
    assert item_product["imageUrls"] == list(urls[:24])


def test_description_over_4000_characters_is_a_policy_violation() -> None:
    with pytest.raises(PolicyViolation, match="text_length"):
        map_to_ebay_inventory_item(product(description="x" * 4001), MAPPINGS)


def test_missing_description_uses_the_title() -> None:
    offer = map_to_ebay_offer(product(description=None), MAPPINGS, ACCOUNT)

    assert offer["listingDescription"] == PRODUCT.title


def test_missing_sku_uses_the_derived_one() -> None:
    assert map_to_ebay_offer(product(sku=None), MAPPINGS, ACCOUNT)["sku"] == "stoflow-42"


@pytest.mark.parametrize("sku", ["with space", "é-accent", "x" * 51])
def test_sku_outside_ebay_syntax_is_a_policy_violation(sku: str) -> None:
    with pytest.raises(PolicyViolation, match="sku_format"):
        map_to_ebay_inventory_item(product(sku=sku), MAPPINGS)
    with pytest.raises(PolicyViolation, match="sku_format"):
        map_to_ebay_offer(product(sku=sku), MAPPINGS, ACCOUNT)


def test_the_same_product_maps_to_the_same_payload() -> None:
    assert map_to_ebay_offer(PRODUCT, MAPPINGS, ACCOUNT) == map_to_ebay_offer(PRODUCT, MAPPINGS, ACCOUNT)


def test_the_sample_product_maps_with_the_reference_data() -> None:
    mappings = PlatformMappings.from_nested(load_platform_mappings())

    item = map_to_ebay_inventory_item(PRODUCT, mappings)
    offer = map_to_ebay_offer(PRODUCT, mappings, ACCOUNT)

    assert item["condition"] == "PRE_OWNED_EXCELLENT"
    assert offer["categoryId"] == "63861"
