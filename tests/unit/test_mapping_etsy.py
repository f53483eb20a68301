"""Etsy mapper: vintage eligibility, the draft listing payload, required attributes and Etsy's rules."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from domain.catalogue import PlatformMappings
from domain.mapping import MappingMissing, NotEligible, PolicyViolation
from domain.mapping.etsy import EtsyShopSettings, check_etsy_eligibility, etsy_when_made, map_to_etsy_listing
from ops.config.reference_data import load_platform_mappings
from tests.unit.mapping_samples import MAPPINGS, PRODUCT, assert_matches_golden, mappings_without, product

SHOP = EtsyShopSettings(shop_id=5550001, shipping_profile_id=190001)
TODAY = date(2026, 11, 26)


def test_listing_matches_the_golden_payload() -> None:
    assert_matches_golden(map_to_etsy_listing(PRODUCT, MAPPINGS, SHOP, today=TODAY), "etsy_listing")


# --- eligibility ------------------------------------------------------------------------------------------


def test_a_2015_product_is_not_eligible() -> None:
    with pytest.raises(NotEligible) as caught:
        map_to_etsy_listing(product(decade="2010s"), MAPPINGS, SHOP, today=TODAY)

    assert caught.value.code == "not_eligible"
    assert caught.value.platform == "etsy"
    assert "2019" in str(caught.value)


def test_a_1990s_product_is_eligible() -> None:
    listing = map_to_etsy_listing(product(decade="1990s"), MAPPINGS, SHOP, today=TODAY)

    assert listing["when_made"] == "1990s"
    assert listing["who_made"] == "someone_else"


def test_a_product_without_a_decade_is_not_eligible() -> None:
    with pytest.raises(NotEligible, match="no decade"):
        map_to_etsy_listing(product(decade=None), MAPPINGS, SHOP, today=TODAY)


@pytest.mark.parametrize(("year", "eligible"), [(2028, False), (2029, True)])
def test_a_decade_becomes_vintage_20_years_after_its_last_year(year: int, eligible: bool) -> None:
    recent = product(decade="2000s")

    if eligible:
        check_etsy_eligibility(recent, today=date(year, 1, 1))
    else:
        with pytest.raises(NotEligible):
            check_etsy_eligibility(recent, today=date(year, 12, 31))


def test_an_unreadable_decade_is_not_eligible() -> None:
    with pytest.raises(NotEligible, match="cannot tell the age"):
        check_etsy_eligibility(product(decade="sixties"), today=TODAY)


def test_eligibility_is_checked_before_mappings_and_rules() -> None:
    broken = product(decade="2010s", category=None, price=Decimal("0"))

    with pytest.raises(NotEligible):
        map_to_etsy_listing(broken, MAPPINGS, SHOP, today=TODAY)


# --- required attributes ----------------------------------------------------------------------------------


def test_unset_category_is_mapping_missing() -> None:
    with pytest.raises(MappingMissing) as caught:
        map_to_etsy_listing(product(category=None), MAPPINGS, SHOP, today=TODAY)

    assert (caught.value.attribute, caught.value.platform) == ("category", "etsy")
    assert "category" in str(caught.value)
    assert "etsy" in str(caught.value)


def test_unmapped_category_is_mapping_missing() -> None:
    mappings = mappings_without("etsy", "categories", "women_dresses")

    with pytest.raises(MappingMissing, match="category 'women_dresses' has no etsy mapping"):
        map_to_etsy_listing(PRODUCT, mappings, SHOP, today=TODAY)


@pytest.mark.parametrize(
    ("decade", "today", "when_made"),
    [
        ("1970s", date(2026, 11, 26), "1970s"),
        ("1990s", date(2025, 3, 1), "1990s"),
        ("2000s", date(2029, 1, 1), "2000s"),
        ("2010s", date(2035, 6, 1), "2010_2015"),
        ("2010s", date(2039, 1, 1), "2010s"),
    ],
)
def test_when_made_is_computed_from_the_decade_and_today(decade: str, today: date, when_made: str) -> None:
    assert etsy_when_made(decade, today=today) == when_made


def test_when_made_refuses_a_decade_not_yet_vintage() -> None:
    with pytest.raises(NotEligible):
        etsy_when_made("2020s", today=date(2026, 1, 1))


def test_the_listing_carries_the_computed_when_made() -> None:
    listing = map_to_etsy_listing(product(decade="2000s"), MAPPINGS, SHOP, today=date(2030, 1, 1))

    assert listing["when_made"] == "2000s"


# --- payload ----------------------------------------------------------------------------------------------


def test_title_is_cut_to_140_at_a_word_boundary() -> None:
    title = " ".join(["Robe"] + ["vintage"] * 30)

    listing = map_to_etsy_listing(product(title=title), MAPPINGS, SHOP, today=TODAY)

    assert isinstance(listing["title"], str)
    assert len(listing["title"]) <= 140
    assert listing["title"].endswith("vintage")
    assert title.startswith(listing["title"] + " ")


def test_missing_description_uses_the_title() -> None:
    listing = map_to_etsy_listing(product(description=None), MAPPINGS, SHOP, today=TODAY)

    assert listing["description"] == PRODUCT.title


def test_return_policy_is_sent_when_the_shop_has_one() -> None:
    shop = EtsyShopSettings(shop_id=1, shipping_profile_id=2, return_policy_id=3)

    assert map_to_etsy_listing(PRODUCT, MAPPINGS, shop, today=TODAY)["return_policy_id"] == 3
    assert "return_policy_id" not in map_to_etsy_listing(PRODUCT, MAPPINGS, SHOP, today=TODAY)


def test_no_state_is_sent_because_create_makes_a_draft() -> None:
    assert "state" not in map_to_etsy_listing(PRODUCT, MAPPINGS, SHOP, today=TODAY)


def test_no_sku_is_sent_because_create_does_not_take_one() -> None:
    # Etsy sets SKUs through the listing's inventory only; the worker sends it there.
    assert "skus" not in map_to_etsy_listing(product(sku=None), MAPPINGS, SHOP, today=TODAY)


def test_title_keeps_only_what_etsy_allows() -> None:
    mapped = map_to_etsy_listing(
        product(title="Robe 100% lin 🌸 : bleue & blanche & rose + ceinture + sac"),
        MAPPINGS,
        SHOP,
        today=TODAY,
    )
    assert mapped["title"] == "Robe 100% lin : bleue & blanche rose + ceinture sac"


# --- platform rules ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "rule"),
    [
        ({"price": Decimal("0")}, "price_positive"),
        ({"price": Decimal("0.19")}, "price_minimum"),
        ({"price": Decimal("50000.01")}, "price_maximum"),
        ({"stock_quantity": 0}, "quantity_at_least_one"),
        ({"stock_quantity": 1000}, "quantity_maximum"),
        ({"currency": "USD"}, "currency_supported"),
    ],
)
def test_etsy_rules_are_policy_violations(changes: dict[str, object], rule: str) -> None:
    with pytest.raises(PolicyViolation) as caught:
        map_to_etsy_listing(product(**changes), MAPPINGS, SHOP, today=TODAY)

    assert caught.value.rule == rule
    assert caught.value.platform == "etsy"


def test_the_shop_currency_decides() -> None:
    shop = EtsyShopSettings(shop_id=1, shipping_profile_id=2, currency="USD")

    listing = map_to_etsy_listing(product(currency="USD", price=Decimal("25")), MAPPINGS, shop, today=TODAY)

    assert listing["price"] == 25.0


def test_the_sample_product_maps_with_the_reference_data() -> None:
    mappings = PlatformMappings.from_nested(load_platform_mappings())

    listing = map_to_etsy_listing(PRODUCT, mappings, SHOP, today=TODAY)

    assert (listing["when_made"], listing["taxonomy_id"]) == ("1990s", 374)
