from __future__ import annotations

import os
from decimal import Decimal

import pytest

from domain.errors import InvalidValue
from domain.products import (
    GENERATED_SKU_PATTERN,
    generate_sku,
    validate_cost_price,
    validate_currency,
    validate_price,
    validate_sku,
    validate_title,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Levi's 501", "Levi's 501"),
        ("  padded  ", "padded"),
        ("a", "a"),
        ("x" * 100, "x" * 100),
        ("tab\tand\nnewline", "tab\tand\nnewline"),
        ("Veste en laine été", "Veste en laine été"),
    ],
)
def test_titles_that_pass(raw: str, expected: str) -> None:
    assert validate_title(raw) == expected


@pytest.mark.parametrize(
    "raw", ["", "   ", "x" * 101, "bell\x07", "nul\x00byte", "esc\x1b[31m", "del\x7f", "c1\x85", "fs\x1c"]
)
def test_titles_that_fail(raw: str) -> None:
    with pytest.raises(InvalidValue) as raised:
        validate_title(raw)
    assert raised.value.field == "title"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (Decimal("19.9"), Decimal("19.90")),
        (Decimal("0.01"), Decimal("0.01")),
        (Decimal("7"), Decimal("7.00")),
    ],
)
def test_prices_are_kept_with_two_places(raw: Decimal, expected: Decimal) -> None:
    result = validate_price(raw)
    assert result == expected
    assert str(result) == str(expected)


@pytest.mark.parametrize(
    "raw",
    [
        Decimal("0"),
        Decimal("-1"),
        Decimal("0.001"),
        Decimal("19.999"),
        Decimal("NaN"),
        Decimal("Infinity"),
        Decimal("100000000"),
        Decimal("1E+30"),
    ],
)
def test_prices_that_fail(raw: Decimal) -> None:
    with pytest.raises(InvalidValue):
        validate_price(raw)


def test_cost_price_may_be_zero_but_not_negative() -> None:
    assert validate_cost_price(Decimal("0")) == Decimal("0.00")
    with pytest.raises(InvalidValue):
        validate_cost_price(Decimal("-0.01"))


@pytest.mark.parametrize(("raw", "expected"), [("EUR", "EUR"), ("usd", "USD"), (" gbp ", "GBP")])
def test_currencies_that_pass(raw: str, expected: str) -> None:
    assert validate_currency(raw) == expected


@pytest.mark.parametrize("raw", ["", "EU", "EURO", "XXX", "ABC", "€"])
def test_currencies_that_fail(raw: str) -> None:
    with pytest.raises(InvalidValue):
        validate_currency(raw)


@pytest.mark.parametrize("raw", ["A", "JKT-001", "levis_501.w32/l34", "9" * 64])
def test_skus_that_pass(raw: str) -> None:
    assert validate_sku(raw) == raw


@pytest.mark.parametrize("raw", ["", "-lead", "has space", "x" * 65, "semi;colon", "ünï"])
def test_skus_that_fail(raw: str) -> None:
    with pytest.raises(InvalidValue):
        validate_sku(raw)


def test_generated_skus_have_the_documented_format_and_are_valid_skus() -> None:
    for _ in range(200):
        sku = generate_sku(os.urandom(5))
        assert GENERATED_SKU_PATTERN.fullmatch(sku), sku
        assert validate_sku(sku) == sku


def test_generated_sku_depends_on_the_entropy() -> None:
    assert generate_sku(b"\x00" * 5) == "STF-0000-0000"
    assert generate_sku(b"\xff" * 5) == "STF-ZZZZ-ZZZZ"
    with pytest.raises(ValueError, match="5 bytes"):
        generate_sku(b"abc")
