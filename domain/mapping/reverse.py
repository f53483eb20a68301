"""Mapping back: a marketplace's listing (its own ids and texts) -> a Stoflow product's fields (our codes).

An import reads listings Stoflow did not create. Each value the marketplace gives (a Vinted brand id, an eBay
aspect text, a category id) is looked up backwards through the platform mappings. A value maps only when
exactly one of our codes carries it; a value no code carries, or several do (eBay files many of our
categories under one leaf), is never dropped nor guessed: it lands in the product's `needs_review` with the
marketplace's own words (`{"brand": "Marque inconnue"}`), for the seller to settle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from domain.attributes import PRODUCT_ATTRIBUTE_FIELDS
from domain.catalogue import PlatformMappings

#: Longest title a product may have (the catalogue's rule); longer marketplace titles are cut, and said so.
TITLE_MAX = 100


@dataclass(frozen=True)
class ForeignValue:
    """One attribute as the marketplace gave it: the mapping field that holds it, its value, and its text."""

    #: the field of our platform mapping that would carry it (`brand_id`, `aspect`, `size_ids`, ...)
    mapping_field: str
    value: str | int
    #: what the seller reads on the marketplace (kept in `needs_review` when it does not map)
    text: str


@dataclass(frozen=True)
class ForeignListing:
    """A live listing found on a marketplace, in the marketplace's terms."""

    platform: str
    external_id: str
    title: str
    price: Decimal
    url: str | None = None
    description: str = ""
    currency: str = "EUR"
    quantity: int = 1
    #: the marketplace's SKU, when it has one (eBay): a product of ours with that SKU is this listing's
    sku: str | None = None
    #: by our attribute name (`brand`, `category`, ...)
    values: Mapping[str, ForeignValue] = field(default_factory=dict)
    image_urls: tuple[str, ...] = ()
    #: what the listing row keeps for later updates and delists (offer id, photo ids)
    data: Mapping[str, object] = field(default_factory=dict)
    #: values a product has no field for (a second colour), kept for review in the marketplace's words
    extra_review: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ImportedProduct:
    """The product fields an import writes, and what could not be mapped (attribute -> marketplace text)."""

    fields: dict[str, object]
    needs_review: dict[str, str]


def map_back(listing: ForeignListing, mappings: PlatformMappings) -> ImportedProduct:
    """Turn a marketplace listing into product fields; unmappable values go to `needs_review`."""
    title = " ".join(listing.title.split()) or listing.external_id
    review: dict[str, str] = dict(listing.extra_review)
    if len(title) > TITLE_MAX:
        review["title"] = title
        title = title[:TITLE_MAX].rstrip()
    fields: dict[str, object] = {
        "title": title,
        "description": listing.description or None,
        "price": listing.price,
        "currency": listing.currency,
        "stock_quantity": max(listing.quantity, 0),
    }
    # The category first: on Vinted its size group says which of a size's ids the item's size id is.
    ordered = sorted(listing.values.items(), key=lambda entry: entry[0] != "category")
    size_group: str | None = None
    for attribute, foreign in ordered:
        kind = PRODUCT_ATTRIBUTE_FIELDS.get(attribute)
        codes = _codes_carrying(mappings, listing.platform, kind, foreign, size_group) if kind else []
        if len(codes) == 1:
            fields[attribute] = codes[0]
            if attribute == "category":
                group = (mappings.lookup(listing.platform, "categories", codes[0]) or {}).get("size_group")
                size_group = str(group) if group is not None else None
        else:
            review[attribute] = foreign.text
    return ImportedProduct(fields, review)


def _codes_carrying(
    mappings: PlatformMappings, platform: str, kind: str, foreign: ForeignValue, size_group: str | None
) -> list[str]:
    """Our codes whose mapping on `platform` carries the value (directly, per gender, or per size group)."""
    found = []
    for code, entry in mappings.entries(platform, kind):
        if isinstance(entry.get("none"), str):
            continue
        held: tuple[object, ...] = (
            entry.get(foreign.mapping_field),
            entry.get(f"{foreign.mapping_field}_by_gender"),
        )
        by_group = held[0]
        if size_group is not None and isinstance(by_group, Mapping):
            held = (by_group.get(size_group),)
        if any(_holds(value, foreign.value) for value in held):
            found.append(code)
    return found


def _holds(mapped: object, value: str | int) -> bool:
    if isinstance(mapped, Mapping):
        return any(_holds(inner, value) for inner in mapped.values())
    if isinstance(mapped, list | tuple):
        return any(_holds(inner, value) for inner in mapped)
    if isinstance(mapped, str) and isinstance(value, str):
        return mapped.casefold() == value.strip().casefold()
    if isinstance(mapped, bool) or mapped is None:
        return False
    return str(mapped) == str(value)
