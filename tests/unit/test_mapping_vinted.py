"""Vinted mapper: the item body, required attributes, size ids by catalogue, colours and Vinted's rules."""

from __future__ import annotations

from decimal import Decimal

import pytest

from domain.catalogue import PlatformMappings
from domain.mapping import MappingMissing, PolicyViolation
from domain.mapping.vinted import map_to_vinted_item
from ops.reference_data import load_platform_mappings
from tests.unit.mapping_samples import MAPPINGS, PRODUCT, assert_matches_golden, mappings_without, product

PHOTO_IDS = (8000000001, 8000000002)


def item_of(payload: dict[str, object]) -> dict[str, object]:
    item = payload["item"]
    assert isinstance(item, dict)
    return item


def test_item_matches_the_golden_payload() -> None:
    assert_matches_golden(map_to_vinted_item(PRODUCT, MAPPINGS, photo_ids=PHOTO_IDS), "vinted_item")


# --- required attributes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("attribute", ["category", "condition", "brand"])
def test_unset_required_attribute_is_mapping_missing(attribute: str) -> None:
    with pytest.raises(MappingMissing) as caught:
        map_to_vinted_item(product(**{attribute: None}), MAPPINGS)

    assert (caught.value.attribute, caught.value.platform) == (attribute, "vinted")
    assert attribute in str(caught.value)
    assert "vinted" in str(caught.value)


@pytest.mark.parametrize(
    ("attribute", "kind", "code"),
    [
        ("category", "categories", "women_dresses"),
        ("condition", "conditions", "very_good"),
        ("brand", "brands", "zara"),
    ],
)
def test_unmapped_required_attribute_is_mapping_missing(attribute: str, kind: str, code: str) -> None:
    with pytest.raises(MappingMissing) as caught:
        map_to_vinted_item(PRODUCT, mappings_without("vinted", kind, code))

    assert (caught.value.attribute, caught.value.platform, caught.value.value) == (attribute, "vinted", code)


def test_a_brand_without_a_vinted_id_is_mapping_missing_not_free_text() -> None:
    with pytest.raises(MappingMissing, match="brand 'sezane' has no vinted mapping"):
        map_to_vinted_item(product(brand="sezane"), MAPPINGS)


def test_unverified_category_still_maps() -> None:
    item = item_of(map_to_vinted_item(product(category="men_jeans", gender="men"), MAPPINGS))

    assert item["catalog_id"] == 257


# --- sizes ------------------------------------------------------------------------------------------------


def test_womens_category_uses_the_womens_size_id() -> None:
    assert item_of(map_to_vinted_item(product(size="m"), MAPPINGS))["size_id"] == 4


def test_mens_category_uses_the_mens_size_id() -> None:
    men = product(category="men_jeans", size="m")

    assert item_of(map_to_vinted_item(men, MAPPINGS))["size_id"] == 208


def test_a_size_without_a_mens_id_is_mapping_missing_in_a_mens_category() -> None:
    with pytest.raises(MappingMissing, match="size_id_men") as caught:
        map_to_vinted_item(product(category="men_jeans", size="xxs"), MAPPINGS)

    assert (caught.value.attribute, caught.value.platform) == ("size", "vinted")


def test_a_sized_kids_product_is_mapping_missing() -> None:
    with pytest.raises(MappingMissing, match="no kids size ids") as caught:
        map_to_vinted_item(product(category="kids_girls_dresses", size="m"), MAPPINGS)

    assert caught.value.attribute == "size"


def test_an_unmapped_size_is_mapping_missing() -> None:
    with pytest.raises(MappingMissing, match="size 'w32' has no vinted mapping"):
        map_to_vinted_item(product(size="w32"), MAPPINGS)


def test_no_size_sends_null() -> None:
    assert (
        item_of(map_to_vinted_item(product(category="kids_girls_dresses", size=None), MAPPINGS))["size_id"]
        is None
    )


# --- colours, gender, parcel ------------------------------------------------------------------------------


def test_the_colour_becomes_a_one_element_list() -> None:
    assert item_of(map_to_vinted_item(product(color="black"), MAPPINGS))["color_ids"] == [1]


def test_no_colour_sends_an_empty_list() -> None:
    assert item_of(map_to_vinted_item(product(color=None), MAPPINGS))["color_ids"] == []


def test_an_unmapped_colour_is_mapping_missing() -> None:
    with pytest.raises(MappingMissing) as caught:
        map_to_vinted_item(product(color="mustard"), MAPPINGS)

    assert (caught.value.attribute, caught.value.value) == ("color", "mustard")


def test_unisex_gender_sets_is_unisex() -> None:
    assert item_of(map_to_vinted_item(product(gender="unisex"), MAPPINGS))["is_unisex"] is True
    assert item_of(map_to_vinted_item(product(gender=None), MAPPINGS))["is_unisex"] is False


def test_parcel_size_comes_from_the_category_mapping_else_small() -> None:
    assert item_of(map_to_vinted_item(product(category="women_coats"), MAPPINGS))["package_size_id"] == 2
    assert item_of(map_to_vinted_item(PRODUCT, MAPPINGS))["package_size_id"] == 1


# --- text, photos, update ---------------------------------------------------------------------------------


def test_missing_description_uses_the_title() -> None:
    assert item_of(map_to_vinted_item(product(description=None), MAPPINGS))["description"] == PRODUCT.title


def test_description_over_2000_characters_is_a_policy_violation() -> None:
    with pytest.raises(PolicyViolation) as caught:
        map_to_vinted_item(product(description="x" * 2001), MAPPINGS)

    assert caught.value.rule == "text_length"


def test_title_is_cut_to_100_at_a_word_boundary() -> None:
    title = "Robe " + "longue " * 20

    cut = item_of(map_to_vinted_item(product(title=title), MAPPINGS))["title"]

    assert isinstance(cut, str)
    assert len(cut) <= 100
    assert cut.endswith("longue")


def test_photos_are_assigned_in_order_at_most_20() -> None:
    ids = list(range(1, 31))

    photos = item_of(map_to_vinted_item(PRODUCT, MAPPINGS, photo_ids=ids))["assigned_photos"]

    assert photos == [{"id": n, "orientation": 0} for n in range(1, 21)]


def test_update_carries_the_item_id() -> None:
    assert item_of(map_to_vinted_item(PRODUCT, MAPPINGS, item_id=4000000123))["id"] == 4000000123


# --- platform rules ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "rule"),
    [
        ({"price": Decimal("0")}, "price_positive"),
        ({"price": Decimal("0.99")}, "price_minimum"),
        ({"stock_quantity": 0}, "quantity_at_least_one"),
        ({"currency": "USD"}, "currency_supported"),
        ({"image_urls": ()}, "images_required"),
    ],
)
def test_vinted_rules_are_policy_violations(changes: dict[str, object], rule: str) -> None:
    with pytest.raises(PolicyViolation) as caught:
        map_to_vinted_item(product(**changes), MAPPINGS)

    assert caught.value.rule == rule
    assert caught.value.platform == "vinted"


def test_pounds_are_accepted() -> None:
    item = item_of(map_to_vinted_item(product(currency="GBP", price=Decimal("12.5")), MAPPINGS))

    assert (item["currency"], item["price"]) == ("GBP", 12.5)


def test_the_sample_product_maps_with_the_reference_data() -> None:
    mappings = PlatformMappings.from_nested(load_platform_mappings())

    item = item_of(map_to_vinted_item(PRODUCT, mappings, photo_ids=PHOTO_IDS))

    assert (item["catalog_id"], item["brand_id"], item["status_id"], item["size_id"]) == (10, 12, 2, 4)
