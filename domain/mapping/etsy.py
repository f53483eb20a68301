"""Stoflow product -> Etsy Open API v3 `createDraftListing` body.

Etsy only takes handmade goods, craft supplies and vintage (at least 20 years old). A second-hand
product is therefore eligible only as vintage: it needs a `decade` whose last year is at least 20 years
before today (the 1990s end in 1999: eligible from 2019; the 2010s never before 2039). No decade, or a
decade too recent, is NotEligible, raised before anything else so that nothing is sent.

Required attributes (MappingMissing when unset or unmapped):
- `decade` -> `when_made`, computed by `etsy_when_made` from the decade and today's date (unset is
  NotEligible, see above): Etsy renames its recent ranges every January (`2020_2025` became
  `2020_2026`), so a table of them expires; the rule behind them does not;
- `category` -> `taxonomy_id` (`categories.taxonomy_id`).

Fixed values: `who_made` is `someone_else` (we resell, we did not make it), `is_supply` is false, `type`
is `physical`. The draft has no `state`: `createDraftListing` always creates a draft, and the worker
activates it once its images are uploaded (Etsy refuses to activate a listing without one). It has no SKU
either: `createDraftListing` does not take one; the worker sets it through the listing's inventory.

Rules: title cut to 140 characters at a word boundary, keeping only the characters Etsy's title rule allows
(letters, digits, punctuation, math symbols, spaces, ™ © ®) and each of `% : & +` once; price 0.20..50,000
in the shop's currency (Etsy prices a listing in its shop's currency); quantity 1..999.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from domain.catalogue import PlatformMappings, ProductSnapshot
from domain.mapping.common import (
    NotEligible,
    listing_description,
    mapped_field,
    price_number,
    truncate_title,
)
from domain.mapping.policy import ListingPolicy, check_listing_policy
from domain.text_policy import check_listing_text

PLATFORM = "etsy"
TITLE_MAX = 140
VINTAGE_MIN_AGE_YEARS = 20
MIN_PRICE = Decimal("0.20")
MAX_PRICE = Decimal("50000")
MAX_QUANTITY = 999

_DECADE_CODE = re.compile(r"^(\d{3})0s$")
_TITLE_SYMBOLS = frozenset("\u2122\u00a9\u00ae")
_TITLE_ONCE = "%:&+"


@dataclass(frozen=True)
class EtsyShopSettings:
    """The seller's Etsy shop: where listings go, how they ship, and the currency it sells in."""

    shop_id: int
    shipping_profile_id: int
    currency: str = "EUR"
    return_policy_id: int | None = None
    #: The shop's processing profile (Etsy's `readiness_state_id`), which physical listings need.
    readiness_state_id: int | None = None


def etsy_title(title: str) -> str:
    """The title as Etsy's rule takes it: disallowed characters (emoji, other symbols) dropped, each of
    `% : & +` kept once only (later ones become spaces), then cut to 140 characters at a word boundary."""
    kept: list[str] = []
    for char in title:
        category = unicodedata.category(char)
        if category[0] in "LP" or category in ("Nd", "Sm", "Zs") or char in _TITLE_SYMBOLS:
            kept.append(char)
        elif char.isspace():
            kept.append(" ")
    text = "".join(kept)
    for char in _TITLE_ONCE:
        first = text.find(char)
        if first >= 0:
            text = text[: first + 1] + text[first + 1 :].replace(char, " ")
    return truncate_title(text, TITLE_MAX)


def check_etsy_eligibility(product: ProductSnapshot, *, today: date) -> None:
    """Raise NotEligible unless the product is vintage: its decade ended at least 20 years before today."""
    if product.decade is None:
        raise NotEligible(
            PLATFORM, "Etsy takes second-hand goods only as vintage, and it has no decade", field="decade"
        )
    match = _DECADE_CODE.fullmatch(product.decade)
    if match is None:
        raise NotEligible(PLATFORM, f"cannot tell the age of decade {product.decade!r}", field="decade")
    last_year = int(match.group(1)) * 10 + 9
    if last_year > today.year - VINTAGE_MIN_AGE_YEARS:
        raise NotEligible(
            PLATFORM,
            f"vintage means at least {VINTAGE_MIN_AGE_YEARS} years old, and the {product.decade} "
            f"run until {last_year}",
            field="decade",
        )


def etsy_when_made(decade: str, *, today: date) -> str:
    """Return Etsy's `when_made` for an item made in `decade` (a code like `1970s`), as of `today`.

    Etsy names whole past decades `1900s`…`1990s`. The current century's buckets move with the year:
    in year Y, items from 2000 to Y-20 are `2000_{Y-20}` (vintage) and Y-19 to 2009 are `{Y-19}_2009`
    (2025: `2000_2005`, `2006_2009`; 2026: `2000_2006`, `2007_2009`). A decade that is wholly 20 years
    old is named like the older ones (`2000s` from 2029), the same rule carried forward.
    """
    match = _DECADE_CODE.fullmatch(decade)
    if match is None:
        raise NotEligible(PLATFORM, f"cannot tell the age of decade {decade!r}", field="decade")
    start = int(match.group(1)) * 10
    vintage_until = today.year - VINTAGE_MIN_AGE_YEARS
    if start + 9 <= vintage_until:
        return f"{start}s"
    if start <= vintage_until:
        return f"{start}_{vintage_until}"
    too_recent = f"vintage means at least {VINTAGE_MIN_AGE_YEARS} years old, and the {decade} are not"
    raise NotEligible(PLATFORM, too_recent, field="decade")


def map_to_etsy_listing(
    product: ProductSnapshot, mappings: PlatformMappings, shop: EtsyShopSettings, *, today: date
) -> dict[str, object]:
    """Build the body of `POST /v3/application/shops/{shop_id}/listings` (a draft listing)."""
    check_etsy_eligibility(product, today=today)
    check_listing_policy(
        product,
        ListingPolicy(
            PLATFORM,
            frozenset({shop.currency}),
            min_price=MIN_PRICE,
            max_price=MAX_PRICE,
            max_quantity=MAX_QUANTITY,
        ),
    )
    check_listing_text(truncate_title(product.title, TITLE_MAX), listing_description(product), PLATFORM)
    # Eligibility guarantees a decade code that parses.
    when_made = etsy_when_made(product.decade or "", today=today)
    taxonomy_id = mapped_field(mappings, PLATFORM, "category", product.category, "taxonomy_id", int)
    listing: dict[str, object] = {
        "quantity": product.stock_quantity,
        "title": etsy_title(product.title),
        "description": listing_description(product),
        "price": price_number(product.price),
        "who_made": "someone_else",
        "when_made": when_made,
        "taxonomy_id": taxonomy_id,
        "shipping_profile_id": shop.shipping_profile_id,
        "is_supply": False,
        "type": "physical",
    }
    if shop.return_policy_id is not None:
        listing["return_policy_id"] = shop.return_policy_id
    if shop.readiness_state_id is not None:
        listing["readiness_state_id"] = shop.readiness_state_id
    return listing
