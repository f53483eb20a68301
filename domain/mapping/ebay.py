"""Stoflow product -> eBay Sell Inventory API payloads (inventory item, then offer).

Required attributes (MappingMissing when unset or unmapped):
- `category` -> offer `categoryId` (ebay.json `categories.category_id`, a leaf of eBay's tree; kids'
  categories carry `category_id_by_gender`, eBay splitting them into Girls, Boys, Unisex and Baby);
- `condition` -> inventory item `condition` (`conditions.condition`, an eBay ConditionEnum value);
- every item specific the leaf category requires (`categories.required_aspects`, e.g. Brand, Size,
  Department): eBay refuses to publish without them, so a product that cannot fill one is
  mapping_missing naming the aspect and the attribute that fills it, before any call.

Optional attributes become item aspects when set, and must then map (a set attribute is never dropped
silently): `brand` -> Brand, `color` -> Color, `size` -> Size, `material` -> Material,
`gender` -> Department, `style` -> Style, `pattern` -> Pattern. Without a gender, Department comes from
the category's root when that root is also a gender code (`women`, `men`): a women's dress is sold to
the Women department. `condition_sup` becomes `conditionDescription` for used items (eBay ignores it
on new ones, so it is left out there).

Rules: title cut to 80 characters at a word boundary; at least one image (at most 24 are sent);
description at most 4,000 characters (the inventory item's limit) and condition notes at most 1,000;
SKU per eBay's syntax; price > 0 in the currency of the account's marketplace; quantity ≥ 1.
Build both payloads before the first call, so that a product that cannot be listed fails with nothing
sent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from domain.catalogue import PlatformMappings, ProductSnapshot
from domain.mapping.common import (
    MappingMissing,
    PolicyViolation,
    category_root,
    format_price,
    gendered_field,
    listing_description,
    listing_sku,
    mapped_field,
    mapping_entry,
    optional_mapped_field,
    truncate_title,
)
from domain.mapping.policy import (
    ListingPolicy,
    check_images,
    check_listing_policy,
    check_quantity,
    check_text_length,
)
from domain.mapping.reverse import ForeignListing, ForeignValue
from domain.text_policy import check_listing_text

PLATFORM = "ebay"
TITLE_MAX = 80
DESCRIPTION_MAX = 4000
CONDITION_DESCRIPTION_MAX = 1000
IMAGES_MAX = 24
SKU_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]{1,50}$")

#: Each marketplace lists in one currency; an offer in another is refused.
MARKETPLACE_CURRENCIES: dict[str, str] = {
    "EBAY_US": "USD",
    "EBAY_GB": "GBP",
    "EBAY_FR": "EUR",
    "EBAY_DE": "EUR",
    "EBAY_IT": "EUR",
    "EBAY_ES": "EUR",
    "EBAY_NL": "EUR",
    "EBAY_BE": "EUR",
    "EBAY_AT": "EUR",
    "EBAY_IE": "EUR",
    "EBAY_CH": "CHF",
    "EBAY_PL": "PLN",
    "EBAY_CA": "CAD",
    "EBAY_AU": "AUD",
}

# Product field -> (aspect name, mapping field), in the order the aspects are sent. The category's
# `recommended_aspects` are filled from these too; only the required ones fail when unset.
_ASPECTS: tuple[tuple[str, str, str], ...] = (
    ("brand", "Brand", "aspect"),
    ("color", "Color", "aspect"),
    ("size", "Size", "aspect"),
    ("material", "Material", "aspect"),
    ("gender", "Department", "department"),
    ("style", "Style", "aspect"),
    ("pattern", "Pattern", "aspect"),
)


_ATTRIBUTE_OF_ASPECT: dict[str, str] = {aspect: attribute for attribute, aspect, _ in _ASPECTS}


@dataclass(frozen=True)
class EbayAccountSettings:
    """The seller's eBay marketplace, business policies and inventory location."""

    marketplace_id: str
    fulfillment_policy_id: str
    payment_policy_id: str
    return_policy_id: str
    merchant_location_key: str


def map_to_ebay_inventory_item(product: ProductSnapshot, mappings: PlatformMappings) -> dict[str, object]:
    """Build the body of `PUT /sell/inventory/v1/inventory_item/{sku}` (the SKU is `listing_sku`)."""
    _check_sku(product)
    check_quantity(product, PLATFORM)
    check_images(product, PLATFORM)
    description = listing_description(product)
    check_listing_text(truncate_title(product.title, TITLE_MAX), description, PLATFORM)
    check_text_length(description, DESCRIPTION_MAX, PLATFORM, "description")
    condition = mapped_field(mappings, PLATFORM, "condition", product.condition, "condition", str)
    category_id = gendered_field(mappings, PLATFORM, "category", product, "category_id", str)
    aspects = _aspects(product, mappings)
    _check_required_aspects(product, mappings, category_id, aspects)
    item: dict[str, object] = {
        "availability": {"shipToLocationAvailability": {"quantity": product.stock_quantity}},
        "condition": condition,
    }
    notes = (product.condition_sup or "").strip()
    if notes and not condition.startswith("NEW"):
        check_text_length(notes, CONDITION_DESCRIPTION_MAX, PLATFORM, "condition_sup")
        item["conditionDescription"] = notes
    item["product"] = {
        "title": truncate_title(product.title, TITLE_MAX),
        "description": description,
        "aspects": aspects,
        "imageUrls": list(product.image_urls[:IMAGES_MAX]),
    }
    return item


def map_to_ebay_offer(
    product: ProductSnapshot, mappings: PlatformMappings, account: EbayAccountSettings
) -> dict[str, object]:
    """Build the body of `POST /sell/inventory/v1/offer` (or `PUT .../offer/{offerId}`), fixed price."""
    currency = MARKETPLACE_CURRENCIES.get(account.marketplace_id)
    if currency is None:
        raise PolicyViolation(
            "currency_supported",
            PLATFORM,
            f"marketplace {account.marketplace_id} is not one Stoflow lists on",
            field="marketplace_id",
        )
    check_listing_policy(product, ListingPolicy(PLATFORM, frozenset({currency})))
    _check_sku(product)
    category_id = gendered_field(mappings, PLATFORM, "category", product, "category_id", str)
    return {
        "sku": listing_sku(product),
        "marketplaceId": account.marketplace_id,
        "format": "FIXED_PRICE",
        # eBay only accepts Good 'Til Cancelled for fixed-price listings.
        "listingDuration": "GTC",
        "availableQuantity": product.stock_quantity,
        "categoryId": category_id,
        "listingDescription": listing_description(product),
        "listingPolicies": {
            "fulfillmentPolicyId": account.fulfillment_policy_id,
            "paymentPolicyId": account.payment_policy_id,
            "returnPolicyId": account.return_policy_id,
        },
        "pricingSummary": {"price": {"value": format_price(product.price), "currency": currency}},
        "merchantLocationKey": account.merchant_location_key,
    }


def _aspects(product: ProductSnapshot, mappings: PlatformMappings) -> dict[str, list[str]]:
    """Collect the item aspects of every set attribute; eBay aspects are lists of strings."""
    aspects: dict[str, list[str]] = {}
    for attribute, aspect, field_name in _ASPECTS:
        code = getattr(product, attribute)
        if attribute == "gender" and code is None and product.category is not None:
            # Only a root that is itself a gender code (women, men) says who the item is for.
            root = category_root(product.category)
            if root is not None and mappings.lookup(PLATFORM, "genders", root) is not None:
                code = root
        value = optional_mapped_field(mappings, PLATFORM, attribute, code, field_name, str)
        if value is not None:
            aspects[aspect] = [value]
    return aspects


def _check_required_aspects(
    product: ProductSnapshot, mappings: PlatformMappings, category_id: str, aspects: dict[str, list[str]]
) -> None:
    """Raise MappingMissing for the first item specific the category requires that no attribute filled."""
    required = mapping_entry(mappings, PLATFORM, "category", product.category).get("required_aspects")
    if not isinstance(required, list):
        return
    for aspect in required:
        if isinstance(aspect, str) and aspect not in aspects:
            attribute = _ATTRIBUTE_OF_ASPECT.get(aspect, aspect)
            raise MappingMissing(
                attribute, PLATFORM, None, f"eBay category {category_id} requires the item specific {aspect}"
            )


def _check_sku(product: ProductSnapshot) -> None:
    sku = listing_sku(product)
    if not SKU_PATTERN.fullmatch(sku):
        raise PolicyViolation(
            "sku_format",
            PLATFORM,
            f"SKU {sku!r} must be 1 to 50 letters, digits, '.', '_' or '-'",
            field="sku",
        )


def ebay_listing_from(
    item: Mapping[str, Any], offer: Mapping[str, Any], listing_url: str | None
) -> ForeignListing:
    """Read an inventory item and its published offer (getInventoryItems, getOffers) as a foreign listing."""
    product = item.get("product") if isinstance(item.get("product"), Mapping) else {}
    assert isinstance(product, Mapping)
    aspects = product.get("aspects") if isinstance(product.get("aspects"), Mapping) else {}
    assert isinstance(aspects, Mapping)
    values: dict[str, ForeignValue] = {}
    for aspect, texts in aspects.items():
        attribute = _ATTRIBUTE_OF_ASPECT.get(str(aspect))
        text = ", ".join(str(t) for t in texts) if isinstance(texts, list) else str(texts)
        if attribute is None:
            continue
        mapping_field = "department" if attribute == "gender" else "aspect"
        values[attribute] = ForeignValue(mapping_field, text, text)
    condition = item.get("condition")
    if isinstance(condition, str) and condition:
        values["condition"] = ForeignValue("condition", condition, condition)
    category_id = offer.get("categoryId")
    if category_id:
        values["category"] = ForeignValue("category_id", str(category_id), f"eBay category {category_id}")
    pricing = offer.get("pricingSummary") if isinstance(offer.get("pricingSummary"), Mapping) else {}
    price = pricing.get("price") if isinstance(pricing, Mapping) else None
    price = price if isinstance(price, Mapping) else {}
    availability = item.get("availability") if isinstance(item.get("availability"), Mapping) else {}
    ship = availability.get("shipToLocationAvailability") if isinstance(availability, Mapping) else None
    quantity = ship.get("quantity") if isinstance(ship, Mapping) else offer.get("availableQuantity")
    listing = offer.get("listing") if isinstance(offer.get("listing"), Mapping) else {}
    assert isinstance(listing, Mapping)
    images = product.get("imageUrls") if isinstance(product.get("imageUrls"), list) else []
    assert isinstance(images, list)
    return ForeignListing(
        platform=PLATFORM,
        external_id=str(listing.get("listingId")),
        url=listing_url,
        title=str(product.get("title") or ""),
        description=str(product.get("description") or offer.get("listingDescription") or ""),
        price=_decimal(price.get("value")),
        currency=str(price.get("currency") or "EUR"),
        quantity=int(quantity) if isinstance(quantity, int) else 1,
        sku=str(item.get("sku")) if item.get("sku") else None,
        values=values,
        image_urls=tuple(str(url) for url in images),
        data={"offer_id": str(offer.get("offerId"))},
    )


def _decimal(value: object) -> Decimal:
    try:
        return Decimal(str(value))
    except (ArithmeticError, ValueError):
        return Decimal(0)
