"""Etsy Open API v3: the request schemas of every endpoint Stoflow calls, from Etsy's published OpenAPI file.

Facts and their sources are listed in docs/marketplaces.md. In short: listing writes (`createDraftListing`,
`updateListing`) are `application/x-www-form-urlencoded` and know neither `skus` nor (for updates) `price` and
`quantity`; SKU, price and stock live in the inventory (`updateListingInventory`, JSON, each offering naming
`price`, `quantity`, `is_enabled` and `readiness_state_id`); images are `multipart/form-data`; every
application call carries `x-api-key: <keystring>:<shared secret>`, while the token endpoint takes the bare
keystring as `client_id`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ops.tools.sandbox.contract import EndpointContract

APPLICATION = "/v3/application"

WhoMade = Literal["i_did", "someone_else", "collective"]
#: Etsy rewrites the two most recent ranges each year; this is the enum of the current definition.
WhenMade = Literal[
    "made_to_order",
    "2020_2026",
    "2010_2019",
    "2007_2009",
    "before_2007",
    "2000_2006",
    "1990s",
    "1980s",
    "1970s",
    "1960s",
    "1950s",
    "1940s",
    "1930s",
    "1920s",
    "1910s",
    "1900s",
    "1800s",
    "1700s",
    "before_1700",
]
ListingType = Literal["physical", "download", "both"]
WeightUnit = Literal["oz", "lb", "g", "kg"]
DimensionsUnit = Literal["in", "ft", "mm", "cm", "m", "yd", "inches"]
ListingState = Literal["active", "inactive", "sold_out", "draft", "removed", "expired"]

MAX_ID = 9007199254740991


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _ListingFields(_Strict):
    """Fields createDraftListing and updateListing share."""

    title: str | None = None
    description: str | None = None
    who_made: WhoMade | None = None
    when_made: WhenMade | None = None
    taxonomy_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    shipping_profile_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    return_policy_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    readiness_state_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    materials: list[str] | None = Field(default=None, max_length=13)
    tags: list[str] | None = Field(default=None, max_length=13)
    styles: list[str] | None = Field(default=None, max_length=2)
    shop_section_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    processing_min: int | None = None
    processing_max: int | None = None
    item_weight: float | None = Field(default=None, ge=0)
    item_length: float | None = Field(default=None, ge=0)
    item_width: float | None = Field(default=None, ge=0)
    item_height: float | None = Field(default=None, ge=0)
    item_weight_unit: WeightUnit | None = None
    item_dimensions_unit: DimensionsUnit | None = None
    is_supply: bool | None = None
    is_customizable: bool | None = None
    should_auto_renew: bool | None = None
    is_taxable: bool | None = None
    type: ListingType | None = None
    image_ids: list[int] | None = None
    production_partner_ids: list[int] | None = None


class CreateDraftListing(_ListingFields):
    """Body of `POST /v3/application/shops/{shop_id}/listings` (form)."""

    quantity: int
    title: str
    description: str
    price: float
    who_made: WhoMade
    when_made: WhenMade
    taxonomy_id: int = Field(ge=1, le=MAX_ID)


class UpdateListing(_ListingFields):
    """Body of `PATCH /v3/application/shops/{shop_id}/listings/{listing_id}` (form): no price, no stock."""

    state: Literal["active", "inactive"] | None = None
    featured_rank: int | None = None
    is_personalizable: bool | None = None


class Offering(_Strict):
    price: float
    quantity: int
    is_enabled: bool
    #: Required, although it may be null (the listing's processing profile then applies).
    readiness_state_id: int | None = Field(ge=1)


class PropertyValue(_Strict):
    property_id: int = Field(ge=1, le=MAX_ID)
    value_ids: list[int] = Field(max_length=10)
    scale_id: int | None = None
    property_name: str | None = None
    values: list[str] = Field(max_length=10)


class InventoryProduct(_Strict):
    sku: str | None = None
    property_values: list[PropertyValue] = Field(default_factory=list, max_length=10)
    offerings: list[Offering] = Field(min_length=1, max_length=10)


class UpdateListingInventory(_Strict):
    """Body of `PUT /v3/application/listings/{listing_id}/inventory` (JSON)."""

    products: list[InventoryProduct] = Field(min_length=1)
    price_on_property: list[int] = Field(default_factory=list)
    quantity_on_property: list[int] = Field(default_factory=list)
    sku_on_property: list[int] = Field(default_factory=list)
    readiness_state_on_property: list[int] | None = None


class UploadListingImage(_Strict):
    """Text fields of `POST .../listings/{listing_id}/images` (multipart; the file goes as `image`)."""

    listing_image_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    rank: int | None = Field(default=None, ge=0)
    overwrite: bool | None = None
    is_watermarked: bool | None = None
    alt_text: str | None = Field(default=None, max_length=500)


class GetListingsByShopQuery(_Strict):
    state: ListingState = "active"
    limit: int = Field(25, ge=1, le=100)
    offset: int = Field(0, ge=0)
    sort_on: Literal["created", "price", "updated", "score"] | None = None
    sort_order: Literal["asc", "ascending", "desc", "descending", "up", "down"] | None = None
    includes: str | list[str] | None = None


class GetListingInventoryQuery(_Strict):
    show_deleted: bool | None = None
    includes: Literal["Listing"] | None = None


class NoQuery(_Strict):
    pass


class RefreshTokenGrant(_Strict):
    """Body of `POST /v3/public/oauth/token` for a refresh (form)."""

    grant_type: Literal["refresh_token"]
    client_id: str = Field(min_length=1, pattern=r"^[^:]+$")
    refresh_token: str = Field(min_length=1)


SHARED_SECRET_MISSING = "Shared secret is required in x-api-key header."  # noqa: S105 - a message


def api_key_problem(value: str | None) -> str | None:
    """Etsy refuses an application call unless `x-api-key` is `<keystring>:<shared secret>`."""
    keystring, colon, secret = (value or "").partition(":")
    if not keystring.strip() or not colon or not secret.strip():
        return SHARED_SECRET_MISSING
    return None


_KEY = {"x-api-key": api_key_problem}

#: (method, route template) -> contract, for every Etsy endpoint the Stoflow client calls.
CONTRACTS: dict[tuple[str, str], EndpointContract] = {
    ("POST", "/v3/public/oauth/token"): EndpointContract(body_kind="form", body=RefreshTokenGrant),
    ("POST", APPLICATION + "/shops/{shop_id}/listings"): EndpointContract(
        body_kind="form", body=CreateDraftListing, headers=_KEY
    ),
    ("GET", APPLICATION + "/shops/{shop_id}/listings"): EndpointContract(
        query=GetListingsByShopQuery, headers=_KEY
    ),
    ("PATCH", APPLICATION + "/shops/{shop_id}/listings/{listing_id}"): EndpointContract(
        body_kind="form", body=UpdateListing, headers=_KEY
    ),
    ("GET", APPLICATION + "/listings/{listing_id}/inventory"): EndpointContract(
        query=GetListingInventoryQuery, headers=_KEY
    ),
    ("PUT", APPLICATION + "/listings/{listing_id}/inventory"): EndpointContract(
        body_kind="json", body=UpdateListingInventory, query=NoQuery, headers=_KEY
    ),
    ("GET", APPLICATION + "/listings/{listing_id}/images"): EndpointContract(headers=_KEY),
    ("POST", APPLICATION + "/shops/{shop_id}/listings/{listing_id}/images"): EndpointContract(
        body_kind="multipart", body=UploadListingImage, headers=_KEY
    ),
    ("DELETE", APPLICATION + "/shops/{shop_id}/listings/{listing_id}/images/{listing_image_id}"): (
        EndpointContract(headers=_KEY)
    ),
    ("GET", APPLICATION + "/shops/{shop_id}/policies/return"): EndpointContract(headers=_KEY),
    ("GET", APPLICATION + "/shops/{shop_id}/readiness-state-definitions"): EndpointContract(headers=_KEY),
}
