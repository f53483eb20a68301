"""Stoflow product -> body of Vinted's `POST /api/v2/item_upload/items` (and `PUT .../items/{id}`).

Vinted has no public API; the shape is the one the web app sends and public clients record:
`{"item": {...}, "feedback_id": null, "push_up": false, "parcel": null}`.

Required attributes (MappingMissing when unset or unmapped):
- `category` -> `catalog_id` (vinted.json `categories.catalog_id`). Vinted files kids' items under
  Girls or Boys, so a kids' category carries `catalog_id_by_gender` and the product's gender picks it;
- `condition` -> `status_id` (`conditions.status_id`);
- `brand` -> `brand_id` (`brands.brand_id`), or, for a brand missing from Vinted's brand list, the
  free-text path: `brand_id` null and `brand` set to the name (`brands.brand_title`). The upload body
  carries that `brand` text field beside `brand_id`, and Vinted's list holds member-created brands
  with very high ids, which is how a typed name becomes a brand (see ops/config/reference_data/README.md).

Optional attributes, which must map when set:
- `size` -> `size_id`. Vinted's size ids belong to a size group (women's clothing, men's shoes,
  kids' ages...), and each leaf catalogue uses one: the category mapping's `size_group` picks the id
  from the size mapping's `size_ids`. A size the group lacks, or a size on a catalogue that takes
  none (bags), is mapping_missing. Unset: `size_id` is null.
- `color` -> `color_ids`. Vinted takes at most two colours; a product carries one colour, so the list
  holds that one (or is empty when unset).
- `gender` `unisex` sets `is_unisex`.

Parcel: `package_size_id` is the category mapping's `package_size_id` when it has one, else Vinted's
small parcel (1). It is a shipping choice, like eBay's fulfilment policy, not a catalogue id: it only
picks the labels offered to the buyer, and small fits folded second-hand clothing.

Description: the product's own, else its title (Vinted refuses an empty one); never cut, so one over
2,000 characters is a PolicyViolation. Title cut to 100 characters at a word boundary. Price at least
1.00 in a currency Vinted sells in; quantity ≥ 1; at least one image. Photos are uploaded first
(`POST /api/v2/photos`); pass the ids Vinted answered as `photo_ids`, in display order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from domain.catalogue import PlatformMappings, ProductSnapshot
from domain.mapping.common import (
    MappingMissing,
    gendered_field,
    listing_description,
    mapped_field,
    mapping_entry,
    optional_mapped_field,
    price_number,
    truncate_title,
)
from domain.mapping.policy import ListingPolicy, check_images, check_listing_policy, check_text_length
from domain.mapping.reverse import ForeignListing, ForeignValue
from domain.text_policy import check_listing_text

PLATFORM = "vinted"
TITLE_MAX = 100
DESCRIPTION_MAX = 2000
PHOTOS_MAX = 20
COLORS_MAX = 2
MIN_PRICE = Decimal("1.00")
#: Vinted's small parcel.
PACKAGE_SIZE_SMALL = 1
#: The currencies of the countries Vinted operates in.
CURRENCIES: frozenset[str] = frozenset({"EUR", "GBP", "PLN", "CZK", "SEK", "DKK", "HUF", "RON"})


def map_to_vinted_item(
    product: ProductSnapshot,
    mappings: PlatformMappings,
    *,
    photo_ids: Sequence[int] = (),
    item_id: int | None = None,
) -> dict[str, object]:
    """Build a Vinted item body; `item_id` is the existing item's id when updating it."""
    check_listing_policy(product, ListingPolicy(PLATFORM, CURRENCIES, min_price=MIN_PRICE))
    check_images(product, PLATFORM)
    description = listing_description(product)
    check_listing_text(truncate_title(product.title, TITLE_MAX), description, PLATFORM)
    check_text_length(description, DESCRIPTION_MAX, PLATFORM, "description")
    catalog_id = gendered_field(mappings, PLATFORM, "category", product, "catalog_id", int)
    status_id = mapped_field(mappings, PLATFORM, "condition", product.condition, "status_id", int)
    brand_id, brand_title = _brand(product, mappings)
    item: dict[str, object] = {
        "id": item_id,
        "currency": product.currency,
        "title": truncate_title(product.title, TITLE_MAX),
        "description": description,
        "brand_id": brand_id,
        "brand": brand_title,
        "size_id": _size_id(product, mappings),
        "catalog_id": catalog_id,
        "is_unisex": product.gender == "unisex",
        "status_id": status_id,
        "price": price_number(product.price),
        "package_size_id": _package_size_id(product, mappings),
        "color_ids": _color_ids(product, mappings),
        "assigned_photos": [{"id": photo_id, "orientation": 0} for photo_id in photo_ids[:PHOTOS_MAX]],
    }
    return {"item": item, "feedback_id": None, "push_up": False, "parcel": None}


def _brand(product: ProductSnapshot, mappings: PlatformMappings) -> tuple[int | None, str]:
    """Return `(brand_id, brand)`: Vinted's id with an empty text, or no id and the brand's name."""
    fields = mapping_entry(mappings, PLATFORM, "brand", product.brand)
    brand_id = fields.get("brand_id")
    if isinstance(brand_id, int) and not isinstance(brand_id, bool) and brand_id > 0:
        return brand_id, ""
    title = fields.get("brand_title")
    if isinstance(title, str) and title.strip():
        return None, title.strip()
    raise MappingMissing("brand", PLATFORM, product.brand, "its mapping has neither brand_id nor brand_title")


def _size_id(product: ProductSnapshot, mappings: PlatformMappings) -> int | None:
    """Pick the size id of the size group the product's catalogue uses."""
    if product.size is None:
        return None
    # The category was mapped before this is called, so its entry exists.
    category = mapping_entry(mappings, PLATFORM, "category", product.category)
    group = category.get("size_group")
    if not isinstance(group, int) or isinstance(group, bool):
        raise MappingMissing(
            "size", PLATFORM, product.size, f"Vinted asks no size for category {product.category!r}"
        )
    size_ids = mapping_entry(mappings, PLATFORM, "size", product.size).get("size_ids")
    size_id = size_ids.get(str(group)) if isinstance(size_ids, Mapping) else None
    if not isinstance(size_id, int) or isinstance(size_id, bool):
        raise MappingMissing(
            "size",
            PLATFORM,
            product.size,
            f"Vinted's size group {group}, used by category {product.category!r}, has no such size",
        )
    return size_id


def _color_ids(product: ProductSnapshot, mappings: PlatformMappings) -> list[int]:
    """List the colour ids, at most two; the product model carries a single colour."""
    color_id = optional_mapped_field(mappings, PLATFORM, "color", product.color, "color_id", int)
    return [] if color_id is None else [color_id][:COLORS_MAX]


def _package_size_id(product: ProductSnapshot, mappings: PlatformMappings) -> int:
    fields = mappings.lookup(PLATFORM, "categories", product.category or "")
    package_size_id = fields.get("package_size_id") if fields is not None else None
    if isinstance(package_size_id, int) and not isinstance(package_size_id, bool) and package_size_id > 0:
        return package_size_id
    return PACKAGE_SIZE_SMALL


def vinted_listing_from(item: Mapping[str, Any]) -> ForeignListing:
    """Read an item of a member's wardrobe page (as Vinted's web app receives it) as a foreign listing."""
    values: dict[str, ForeignValue] = {}
    catalog_id = item.get("catalog_id")
    if isinstance(catalog_id, int):
        values["category"] = ForeignValue("catalog_id", catalog_id, f"Vinted catalogue {catalog_id}")
    brand_id, brand_title = item.get("brand_id"), str(item.get("brand_title") or "").strip()
    if isinstance(brand_id, int) or brand_title:
        # A brand Vinted has no id for (typed by the member) can only be reviewed by its text.
        key: str | int = brand_id if isinstance(brand_id, int) else f"text:{brand_title}"
        values["brand"] = ForeignValue("brand_id", key, brand_title or f"Vinted brand {brand_id}")
    size_id = item.get("size_id")
    if isinstance(size_id, int):
        size_title = str(item.get("size_title") or "").strip()
        values["size"] = ForeignValue("size_ids", size_id, size_title or f"Vinted size {size_id}")
    status_id = item.get("status_id")
    if isinstance(status_id, int):
        values["condition"] = ForeignValue("status_id", status_id, f"Vinted condition {status_id}")
    color_ids = [color for color in item.get("color_ids") or [] if isinstance(color, int)]
    if color_ids:
        # A product has one colour: the item's first; a second one is left for review, never dropped.
        values["color"] = ForeignValue("color_id", color_ids[0], f"Vinted colour {color_ids[0]}")
    price = item.get("price")
    amount = price.get("amount") if isinstance(price, Mapping) else price
    currency = price.get("currency_code") if isinstance(price, Mapping) else item.get("currency")
    photos = [photo for photo in item.get("photos") or [] if isinstance(photo, Mapping)]
    try:
        parsed_price = Decimal(str(amount))
    except ArithmeticError:
        parsed_price = Decimal(0)
    return ForeignListing(
        platform=PLATFORM,
        external_id=str(item.get("id")),
        url=str(item["url"]) if isinstance(item.get("url"), str) else None,
        title=str(item.get("title") or ""),
        description=str(item.get("description") or ""),
        price=parsed_price,
        currency=str(currency or "EUR"),
        quantity=1,
        values=values,
        image_urls=tuple(str(photo.get("url")) for photo in photos if photo.get("url")),
        data={"photo_ids": [photo["id"] for photo in photos if isinstance(photo.get("id"), int)]},
        extra_review={"colors": ", ".join(f"Vinted colour {c}" for c in color_ids[1:])}
        if len(color_ids) > 1
        else {},
    )
