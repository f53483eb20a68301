"""Shared mapping rules: errors, title cutting, prices, lookups, listing policy, catalogue values."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from domain.catalogue import PlatformMappings, ProductSnapshot
from domain.errors import DomainError
from domain.mapping import MappingMissing, NotEligible, PolicyViolation
from domain.mapping.common import (
    category_root,
    format_price,
    listing_description,
    listing_sku,
    mapped_field,
    optional_mapped_field,
    price_number,
    truncate_title,
)
from domain.mapping.policy import ListingPolicy, check_images, check_listing_policy, check_text_length
from ops.config.reference_data import load_attributes, load_platform_mappings
from tests.unit.mapping_samples import MAPPINGS, NESTED_MAPPINGS, product

# --- errors -----------------------------------------------------------------------------------------------


def test_error_codes_are_the_contract_codes() -> None:
    assert MappingMissing.code == "mapping_missing"
    assert NotEligible.code == "not_eligible"
    assert PolicyViolation.code == "policy_violation"
    assert all(issubclass(error, DomainError) for error in (MappingMissing, NotEligible, PolicyViolation))


def test_mapping_missing_names_attribute_platform_and_code() -> None:
    error = MappingMissing("brand", "vinted", "acme")

    assert "brand" in str(error)
    assert "vinted" in str(error)
    assert "'acme'" in str(error)
    assert (error.attribute, error.platform, error.value, error.field) == ("brand", "vinted", "acme", "brand")
    assert error.detail == str(error)


def test_mapping_missing_for_an_unset_attribute_says_so() -> None:
    error = MappingMissing("category", "ebay")

    assert str(error) == "ebay needs the product's category, which is not set"
    assert error.value is None


def test_mapping_missing_keeps_its_reason() -> None:
    error = MappingMissing("size", "vinted", "xxs", "its mapping has no size_id_men")

    assert str(error) == "size 'xxs' has no vinted mapping (its mapping has no size_id_men)"


def test_not_eligible_names_the_platform() -> None:
    error = NotEligible("etsy", "too recent", field="decade")

    assert str(error) == "not eligible for etsy: too recent"
    assert (error.platform, error.reason, error.field) == ("etsy", "too recent", "decade")


def test_policy_violation_names_the_rule() -> None:
    error = PolicyViolation("price_minimum", "vinted", "price 0.50 is below 1.00", field="price")

    assert error.rule == "price_minimum"
    assert error.platform == "vinted"
    assert str(error) == "vinted rule price_minimum: price 0.50 is below 1.00"


# --- titles -----------------------------------------------------------------------------------------------


def test_short_title_is_kept() -> None:
    assert truncate_title("Robe Zara bleue", 80) == "Robe Zara bleue"


def test_title_of_exactly_the_limit_is_kept() -> None:
    title = "a" * 40 + " " + "b" * 39

    assert truncate_title(title, 80) == title


def test_long_title_is_cut_at_a_word_boundary() -> None:
    title = "Veste en jean Levi's trucker vintage années 90 délavée bleu clair taille M homme parfait état"

    cut = truncate_title(title, 80)

    assert cut == "Veste en jean Levi's trucker vintage années 90 délavée bleu clair taille M homme"
    assert len(cut) <= 80
    assert title.startswith(cut)
    assert title[len(cut)] == " "


def test_a_space_just_past_the_limit_keeps_the_last_word() -> None:
    assert truncate_title("abcd efgh ijkl", 9) == "abcd efgh"


def test_cut_title_loses_trailing_punctuation() -> None:
    assert truncate_title("Robe Zara - bleue, coton", 12) == "Robe Zara"
    assert truncate_title("Jean W32 / L34 délavé", 10) == "Jean W32"
    assert truncate_title("Pull en laine, taille M", 15) == "Pull en laine"


def test_cut_title_keeps_a_closing_percent() -> None:
    assert truncate_title("Pull 100% cachemire écossais", 20) == "Pull 100% cachemire"


def test_single_word_longer_than_the_limit_is_cut_hard() -> None:
    assert truncate_title("Supercalifragilisticexpialidocious robe", 10) == "Supercalif"


def test_whitespace_runs_collapse() -> None:
    assert truncate_title("  Robe \t Zara\n bleue  ", 80) == "Robe Zara bleue"


@pytest.mark.parametrize("limit", [1, 5, 13, 40, 80, 140])
def test_cut_title_never_exceeds_the_limit(limit: int) -> None:
    title = "Blouson aviateur cuir marron doublure mouton taille L homme vintage 1980s excellent état " * 3

    assert len(truncate_title(title, limit)) <= limit


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        truncate_title("Robe", 0)


# --- prices, descriptions, SKUs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "text"),
    [("19.9", "19.90"), ("10", "10.00"), ("19.995", "20.00"), ("0.005", "0.01"), ("1234.5", "1234.50")],
)
def test_prices_render_with_two_places_rounding_half_up(amount: str, text: str) -> None:
    assert format_price(Decimal(amount)) == text


def test_price_number_is_rounded_to_cents() -> None:
    assert price_number(Decimal("19.90")) == 19.9
    assert price_number(Decimal("19.999")) == 20.0


def test_description_falls_back_on_the_title() -> None:
    assert listing_description(product(description=None)) == "Robe Zara vintage bleue en coton"
    assert listing_description(product(description="   ")) == "Robe Zara vintage bleue en coton"
    assert listing_description(product(description=" Belle robe. ")) == "Belle robe."


def test_sku_falls_back_on_one_derived_from_the_id() -> None:
    assert listing_sku(product(sku="ABC-1")) == "ABC-1"
    assert listing_sku(product(sku=None)) == "stoflow-42"


# --- categories -------------------------------------------------------------------------------------------


def test_category_root_is_the_code_prefix() -> None:
    assert category_root("women_dresses") == "women"
    assert category_root("men") == "men"
    assert category_root("kids_girls_dresses") == "kids"
    assert category_root("unisex_hats") is None


def test_category_root_agrees_with_the_reference_tree() -> None:
    tree = {record.code: record.parent for record in load_attributes()["categories"]}
    for code in tree:
        root = code
        while tree[root] is not None:
            root = str(tree[root])
        assert category_root(code) == root, code


# --- platform mappings ------------------------------------------------------------------------------------


def test_lookup_finds_fields_by_platform_kind_and_code() -> None:
    assert MAPPINGS.lookup("vinted", "brands", "zara") == {"brand_id": 12, "verified": True}
    assert MAPPINGS.lookup("vinted", "brands", "unknown") is None
    assert MAPPINGS.lookup("ebay", "brands", "zara") == {"aspect": "Zara", "verified": True}
    assert MAPPINGS.lookup("etsy", "brands", "zara") is None


def test_mappings_are_read_only_and_detached_from_their_source() -> None:
    nested: dict[str, dict[str, dict[str, dict[str, object]]]] = {
        "vinted": {"colors": {"blue": {"color_id": 9, "verified": True}}}
    }
    mappings = PlatformMappings.from_nested(nested)
    nested["vinted"]["colors"]["blue"]["color_id"] = 999

    fields = mappings.lookup("vinted", "colors", "blue")
    assert fields is not None
    assert fields["color_id"] == 9
    with pytest.raises(TypeError):
        fields["color_id"] = 1  # type: ignore[index]  # proving the mapping refuses writes
    with pytest.raises(dataclasses.FrozenInstanceError):
        mappings._entries = {}  # type: ignore[misc]  # proving the lookup is frozen


def test_mappings_load_from_the_reference_data_shape() -> None:
    nested = load_platform_mappings()
    mappings = PlatformMappings.from_nested(nested)

    expected = sum(len(by_code) for kinds in nested.values() for by_code in kinds.values())
    assert len(mappings) == expected
    assert mappings.lookup("vinted", "conditions", "good") == {"status_id": 3, "verified": True}


def test_mapped_field_reads_one_field() -> None:
    assert mapped_field(MAPPINGS, "vinted", "brand", "zara", "brand_id", int) == 12
    assert optional_mapped_field(MAPPINGS, "vinted", "color", None, "color_id", int) is None


@pytest.mark.parametrize("value", [True, "12", "", None])
def test_mapped_field_refuses_an_unusable_value(value: object) -> None:
    mappings = PlatformMappings.from_nested(
        {"vinted": {"brands": {"zara": {"brand_id": value, "verified": True}}}}
    )

    with pytest.raises(MappingMissing, match="has no brand_id") as caught:
        mapped_field(mappings, "vinted", "brand", "zara", "brand_id", int)
    assert caught.value.attribute == "brand"


def test_unverified_entries_map_like_verified_ones() -> None:
    assert NESTED_MAPPINGS["ebay"]["conditions"]["very_good"]["verified"] is False
    assert mapped_field(MAPPINGS, "ebay", "condition", "very_good", "condition", str) == "PRE_OWNED_EXCELLENT"


# --- listing policy ---------------------------------------------------------------------------------------

POLICY = ListingPolicy(
    "etsy", frozenset({"EUR"}), min_price=Decimal("0.20"), max_price=Decimal("50000"), max_quantity=999
)


@pytest.mark.parametrize(
    ("changes", "rule"),
    [
        ({"price": Decimal("0")}, "price_positive"),
        ({"price": Decimal("-1")}, "price_positive"),
        ({"price": Decimal("0.19")}, "price_minimum"),
        ({"price": Decimal("50000.01")}, "price_maximum"),
        ({"stock_quantity": 0}, "quantity_at_least_one"),
        ({"stock_quantity": 1000}, "quantity_maximum"),
        ({"currency": "USD"}, "currency_supported"),
    ],
)
def test_listing_policy_names_the_broken_rule(changes: dict[str, object], rule: str) -> None:
    with pytest.raises(PolicyViolation) as caught:
        check_listing_policy(product(**changes), POLICY)

    assert caught.value.rule == rule
    assert rule in str(caught.value)
    assert caught.value.platform == "etsy"


def test_listing_policy_accepts_the_bounds() -> None:
    check_listing_policy(product(price=Decimal("0.20"), stock_quantity=999), POLICY)
    check_listing_policy(product(price=Decimal("50000"), stock_quantity=1), POLICY)


def test_images_and_text_length_rules() -> None:
    with pytest.raises(PolicyViolation, match="images_required"):
        check_images(product(image_urls=()), "ebay")
    with pytest.raises(PolicyViolation, match="text_length"):
        check_text_length("x" * 11, 10, "vinted", "description")
    check_text_length("x" * 10, 10, "vinted", "description")


# --- catalogue values -------------------------------------------------------------------------------------


def test_product_snapshot_is_frozen() -> None:
    snapshot = product()

    with pytest.raises(dataclasses.FrozenInstanceError):
        snapshot.title = "Autre"  # type: ignore[misc]  # proving the snapshot is immutable


def test_product_snapshot_needs_only_id_title_and_price() -> None:
    bare = ProductSnapshot(id=1, title="Robe", price=Decimal("5"))

    assert (bare.currency, bare.stock_quantity, bare.image_urls, bare.dim6) == ("EUR", 1, (), None)
