"""Pure validation rules of a product's own fields (attribute codes are checked against the database).

Each rule returns the normalised value or raises InvalidValue, which the gateway answers as a 422.
"""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal, InvalidOperation

from domain.errors import InvalidValue

TITLE_MAX_LENGTH = 100
#: Numeric(10, 2): eight digits before the decimal point.
MONEY_MAX = Decimal("99999999.99")
DEFAULT_CURRENCY = "EUR"
SKU_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$")
#: `STF-` then two groups of four Crockford base32 characters, e.g. `STF-7K2M-Q9XD`.
GENERATED_SKU_PATTERN = re.compile(r"^STF-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$")
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_ORDINARY_WHITESPACE = frozenset(" \t\n\r")

_ISO_4217_TEXT = """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP BYN BZD
    CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD
    GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT
    LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR
    NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP
    STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XCG
    XOF XPF YER ZAR ZMW ZWG
"""
#: Active ISO 4217 currency codes (funds and precious metals left out: nobody prices a jacket in XAU).
ISO_4217_CODES: frozenset[str] = frozenset(_ISO_4217_TEXT.split())


def validate_title(value: str) -> str:
    """Return the title without surrounding whitespace; refuse empty, too long or control characters."""
    title = value.strip(" \t\n\r")
    if not title:
        raise InvalidValue("title must not be empty", field="title")
    if len(title) > TITLE_MAX_LENGTH:
        raise InvalidValue(f"title must be at most {TITLE_MAX_LENGTH} characters", field="title")
    for character in title:
        if character not in _ORDINARY_WHITESPACE and unicodedata.category(character) == "Cc":
            raise InvalidValue("title must not contain control characters", field="title")
    return title


def _money(value: Decimal, field: str) -> Decimal:
    try:
        if not value.is_finite():
            raise InvalidValue(f"{field} must be a number", field=field)
        if value != value.quantize(Decimal("0.01")):
            raise InvalidValue(f"{field} must have at most 2 decimal places", field=field)
        amount = value.quantize(Decimal("0.01"))
    except InvalidOperation:
        raise InvalidValue(f"{field} is too large", field=field) from None
    if amount > MONEY_MAX:
        raise InvalidValue(f"{field} must be at most {MONEY_MAX}", field=field)
    return amount


def validate_price(value: Decimal) -> Decimal:
    """Return the price with 2 decimal places; refuse zero, negatives and fractions of a cent."""
    amount = _money(value, "price")
    if amount <= 0:
        raise InvalidValue("price must be greater than 0", field="price")
    return amount


def validate_cost_price(value: Decimal) -> Decimal:
    """Return the cost price with 2 decimal places; zero is allowed (a gift), negatives are not."""
    amount = _money(value, "cost_price")
    if amount < 0:
        raise InvalidValue("cost_price must not be negative", field="cost_price")
    return amount


def validate_currency(value: str) -> str:
    """Return the ISO 4217 code in upper case; refuse anything that is not an active currency."""
    code = value.strip().upper()
    if code not in ISO_4217_CODES:
        raise InvalidValue("currency must be an ISO 4217 code such as EUR", field="currency")
    return code


def validate_sku(value: str) -> str:
    """Return the SKU as given: 1..64 letters, digits, `.`, `_`, `/` or `-`, not starting with a symbol."""
    if not SKU_PATTERN.fullmatch(value):
        raise InvalidValue(
            "sku must be 1 to 64 letters, digits, '.', '_', '/' or '-', starting with a letter or digit",
            field="sku",
        )
    return value


def generate_sku(entropy: bytes) -> str:
    """Build an `STF-XXXX-XXXX` SKU from at least 5 random bytes (40 bits)."""
    if len(entropy) < 5:
        raise ValueError("generate_sku needs at least 5 bytes of entropy")
    number = int.from_bytes(entropy[:5], "big")
    characters = "".join(_CROCKFORD[(number >> shift) & 0x1F] for shift in range(35, -1, -5))
    return f"STF-{characters[:4]}-{characters[4:]}"
