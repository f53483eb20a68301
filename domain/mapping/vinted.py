"""Stoflow product -> body of Vinted's `POST /api/v2/item_upload/items` (and `PUT .../items/{id}`).

Vinted has no public API; the shape is the one the web app sends and public clients record:
`{"item": {...}, "feedback_id": null, "push_up": false, "parcel": null}`.

Required attributes (MappingMissing when unset or unmapped):
- `category` -> `catalog_id` (vinted.json `categories.catalog_id`);
- `condition` -> `status_id` (`conditions.status_id`);
- `brand` -> `brand_id` (`brands.brand_id`). Captured payloads carry a free-text `brand` only as `""`
  beside an id, and nothing shows Vinted taking a name without an id, so a brand with no Vinted id is
  mapping_missing rather than a guess; the fix is to add its id from Vinted's brand search.

Optional attributes, which must map when set:
- `size` -> `size_id`. Vinted's size ids depend on the catalogue's gender, so the id is chosen by the
  category's root: `women` -> the mapping's `size_id`, `men` -> its `size_id_men`. Kids' size ids are
  not in the data yet, so a sized kids' product is mapping_missing. Unset: `size_id` is null
  (bags and most accessories have no size).
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

from collections.abc import Sequence
from decimal import Decimal

from domain.catalogue import PlatformMappings, ProductSnapshot
from domain.mapping.common import (
    MappingMissing,
    category_root,
    listing_description,
    mapped_field,
    optional_mapped_field,
    price_number,
    truncate_title,
)
from domain.mapping.policy import ListingPolicy, check_images, check_listing_policy, check_text_length
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

# Category root -> the size mapping field holding that catalogue's size id.
_SIZE_FIELDS: dict[str, str] = {"women": "size_id", "men": "size_id_men"}


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
    catalog_id = mapped_field(mappings, PLATFORM, "category", product.category, "catalog_id", int)
    status_id = mapped_field(mappings, PLATFORM, "condition", product.condition, "status_id", int)
    brand_id = mapped_field(mappings, PLATFORM, "brand", product.brand, "brand_id", int)
    item: dict[str, object] = {
        "id": item_id,
        "currency": product.currency,
        "title": truncate_title(product.title, TITLE_MAX),
        "description": description,
        "brand_id": brand_id,
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


def _size_id(product: ProductSnapshot, mappings: PlatformMappings) -> int | None:
    """Pick the size id of the catalogue (women's or men's) the category belongs to."""
    if product.size is None:
        return None
    # The category was mapped before this is called, so it is set.
    root = category_root(product.category or "")
    size_field = _SIZE_FIELDS.get(root or "")
    if size_field is None:
        raise MappingMissing("size", PLATFORM, product.size, f"no {root or 'unknown'} size ids in the data")
    return mapped_field(mappings, PLATFORM, "size", product.size, size_field, int)


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
