"""Vinted mapper: the item body, required attributes, size ids by catalogue, colours and Vinted's rules."""

from __future__ import annotations

from decimal import Decimal

import pytest

from domain.catalogue import PlatformMappings
from domain.mapping import MappingMissing, PolicyViolation
from domain.mapping.vinted import map_to_vinted_item
from ops.config.reference_data import load_platform_mappings
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


def test_unverified_category_still_maps() -> None:
    item = item_of(map_to_vinted_item(product(category="men_jeans", gender="men"), MAPPINGS))

    assert item["catalog_id"] == 257


# --- sizes ------------------------------------------------------------------------------------------------


def test_womens_category_uses_the_womens_size_group() -> None:
    assert item_of(map_to_vinted_item(product(size="m"), MAPPINGS))["size_id"] == 4


def test_mens_jeans_use_the_waist_size_group() -> None:
    men = product(category="men_jeans", size="m", gender="men")

    assert item_of(map_to_vinted_item(men, MAPPINGS))["size_id"] == 1652


def test_a_size_the_categorys_group_lacks_is_mapping_missing() -> None:
    with pytest.raises(MappingMissing, match="size group 77") as caught:
        map_to_vinted_item(product(category="men_jeans", size="xxs"), MAPPINGS)

    assert (caught.value.attribute, caught.value.platform) == ("size", "vinted")


def test_a_kids_age_size_maps_in_a_kids_category() -> None:
    girls = product(category="kids_girls_dresses", gender="girls", size="kids_8_years")

    item = item_of(map_to_vinted_item(girls, MAPPINGS))

    assert (item["catalog_id"], item["size_id"]) == (1247, 627)


def test_a_size_on_a_category_without_sizes_is_mapping_missing() -> None:
    with pytest.raises(MappingMissing, match="asks no size"):
        map_to_vinted_item(product(category="women_handbags", size="m"), MAPPINGS)


def test_a_size_marked_none_names_the_reason() -> None:
    with pytest.raises(MappingMissing, match="waist only") as caught:
        map_to_vinted_item(product(size="l32"), MAPPINGS)

    assert caught.value.value == "l32"


def test_an_unmapped_size_is_mapping_missing() -> None:
    with pytest.raises(MappingMissing, match="size 'w32' has no vinted mapping"):
        map_to_vinted_item(product(size="w32"), MAPPINGS)


def test_no_size_sends_null() -> None:
    item = item_of(map_to_vinted_item(product(category="women_handbags", size=None), MAPPINGS))

    assert item["size_id"] is None


# --- kids, parents, brands --------------------------------------------------------------------------------


def test_a_kids_category_without_a_gender_is_mapping_missing_on_gender() -> None:
    with pytest.raises(MappingMissing, match="girls") as caught:
        map_to_vinted_item(product(category="kids_girls_dresses", gender=None, size=None), MAPPINGS)

    assert caught.value.attribute == "gender"


def test_a_kids_category_for_the_other_gender_is_mapping_missing() -> None:
    with pytest.raises(MappingMissing, match="it takes girls") as caught:
        map_to_vinted_item(product(category="kids_girls_dresses", gender="boys", size=None), MAPPINGS)

    assert (caught.value.attribute, caught.value.value) == ("gender", "boys")


def test_a_parent_category_is_mapping_missing_with_the_reason() -> None:
    with pytest.raises(MappingMissing, match="a parent node") as caught:
        map_to_vinted_item(product(category="women"), MAPPINGS)

    assert (caught.value.attribute, caught.value.value) == ("category", "women")


def test_a_brand_with_an_id_sends_an_empty_brand_text() -> None:
    item = item_of(map_to_vinted_item(PRODUCT, MAPPINGS))

    assert (item["brand_id"], item["brand"]) == (12, "")


def test_a_brand_missing_from_vinteds_list_goes_as_free_text() -> None:
    item = item_of(map_to_vinted_item(product(brand="sezane"), MAPPINGS))

    assert (item["brand_id"], item["brand"]) == (None, "Sézane")


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
