"""eBay Sell Inventory v1: the request schemas of every endpoint Stoflow calls, from eBay's OpenAPI file.

Facts and their sources are listed in docs/marketplaces.md. In short: writes are JSON and need a
`Content-Language` header naming the language of the texts; an inventory item's title is at most 80
characters, its description 4,000, each aspect name and value 65, its pictures 1 to 24 HTTPS URLs;
`createOffer` takes `EbayOfferDetailsWithKeys` (with `sku`, `marketplaceId`, `format`), `updateOffer` takes
`EbayOfferDetailsWithId`, which has none of the three (the offer's keys never change).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo

from ops.tools.sandbox.contract import EndpointContract

INVENTORY = "/sell/inventory/v1"

CONTENT_LANGUAGES = frozenset(
    {"en-US", "en-GB", "en-AU", "en-CA", "fr-FR", "fr-BE", "fr-CA", "de-DE", "de-AT", "de-CH", "it-IT"}
    | {"es-ES", "nl-NL", "nl-BE", "pl-PL", "zh-HK"}
)
MarketplaceId = Literal[
    "EBAY_US",
    "EBAY_GB",
    "EBAY_FR",
    "EBAY_DE",
    "EBAY_IT",
    "EBAY_ES",
    "EBAY_NL",
    "EBAY_BE",
    "EBAY_AT",
    "EBAY_CH",
    "EBAY_IE",
    "EBAY_PL",
    "EBAY_CA",
    "EBAY_AU",
]
ConditionEnum = Literal[
    "NEW",
    "LIKE_NEW",
    "NEW_OTHER",
    "NEW_WITH_DEFECTS",
    "MANUFACTURER_REFURBISHED",
    "CERTIFIED_REFURBISHED",
    "EXCELLENT_REFURBISHED",
    "VERY_GOOD_REFURBISHED",
    "GOOD_REFURBISHED",
    "SELLER_REFURBISHED",
    "USED_EXCELLENT",
    "USED_VERY_GOOD",
    "USED_GOOD",
    "USED_ACCEPTABLE",
    "FOR_PARTS_OR_NOT_WORKING",
    "PRE_OWNED_EXCELLENT",
    "PRE_OWNED_FAIR",
]
ListingDuration = Literal["GTC", "DAYS_1", "DAYS_3", "DAYS_5", "DAYS_7", "DAYS_10", "DAYS_21", "DAYS_30"]
#: Hosts where a plain-http picture URL is tolerated: the sandbox's own machine (tests and `stoflow up`).
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def _https_picture(url: str, info: ValidationInfo) -> str:
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    host = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
    if scheme == "https" and host:
        return url
    if scheme == "http" and host in LOOPBACK_HOSTS:
        return url  # the sandbox's leniency for pictures served by the machine it runs on
    if scheme == "http" and host and (info.context or {}).get("allow_http_images"):
        return url  # a sandbox started with SANDBOX_ALLOW_HTTP_IMAGES (compose: the gateway is another host)
    raise ValueError("picture URLs must use HTTPS")


PictureUrl = Annotated[str, Field(max_length=500), AfterValidator(_https_picture)]
AspectText = Annotated[str, Field(min_length=1, max_length=65)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ShipToLocationAvailability(_Strict):
    quantity: int = Field(ge=0)


class Availability(_Strict):
    shipToLocationAvailability: ShipToLocationAvailability


class Product(_Strict):
    title: str = Field(min_length=1, max_length=80)
    description: str = Field(max_length=4000)
    aspects: dict[AspectText, list[AspectText]] = Field(default_factory=dict)
    imageUrls: list[PictureUrl] = Field(min_length=1, max_length=24)
    brand: str | None = Field(default=None, max_length=65)
    mpn: str | None = Field(default=None, max_length=65)
    subtitle: str | None = Field(default=None, max_length=55)


class InventoryItem(_Strict):
    """Body of `PUT /sell/inventory/v1/inventory_item/{sku}` (the parts Stoflow sends, all checked)."""

    availability: Availability
    condition: ConditionEnum
    conditionDescription: str | None = Field(default=None, max_length=1000)
    product: Product


class Amount(_Strict):
    value: str = Field(pattern=r"^\d+(\.\d{1,2})?$")
    currency: str = Field(pattern=r"^[A-Z]{3}$")


class PricingSummary(_Strict):
    price: Amount


class ListingPolicies(_Strict):
    fulfillmentPolicyId: str = Field(min_length=1)
    paymentPolicyId: str = Field(min_length=1)
    returnPolicyId: str = Field(min_length=1)


class OfferDetailsWithId(_Strict):
    """Body of `PUT /sell/inventory/v1/offer/{offerId}` (EbayOfferDetailsWithId): the keys are not in it."""

    availableQuantity: int | None = Field(default=None, ge=0)
    categoryId: str | None = Field(default=None, pattern=r"^\d{1,10}$")
    listingDescription: str | None = Field(default=None, max_length=500_000)
    listingDuration: ListingDuration | None = None
    listingPolicies: ListingPolicies | None = None
    merchantLocationKey: str | None = Field(default=None, max_length=36)
    pricingSummary: PricingSummary | None = None
    quantityLimitPerBuyer: int | None = Field(default=None, ge=1)
    includeCatalogProductDetails: bool | None = None


class OfferDetailsWithKeys(OfferDetailsWithId):
    """Body of `POST /sell/inventory/v1/offer` (EbayOfferDetailsWithKeys)."""

    sku: str = Field(min_length=1, max_length=50)
    marketplaceId: MarketplaceId
    format: Literal["FIXED_PRICE", "AUCTION"]


class GetOffersQuery(_Strict):
    sku: str = Field(min_length=1, max_length=50)
    marketplace_id: MarketplaceId | None = None
    format: Literal["FIXED_PRICE", "AUCTION"] | None = None
    limit: int | None = Field(default=None, ge=1, le=200)
    offset: int | None = Field(default=None, ge=0)


class GetInventoryItemsQuery(_Strict):
    limit: int | None = Field(default=None, ge=1, le=200)
    offset: int | None = Field(default=None, ge=0)


class RefreshTokenGrant(_Strict):
    """Body of `POST /identity/v1/oauth2/token` for a refresh (form)."""

    grant_type: Literal["refresh_token", "client_credentials"]
    refresh_token: str | None = Field(default=None, min_length=1)
    scope: str | None = None


def content_language_problem(value: str | None) -> str | None:
    """eBay refuses a write whose texts' language it is not told, or told in a form it does not know."""
    if value in CONTENT_LANGUAGES:
        return None
    return "Invalid value for header Content-Language."


def basic_auth_problem(value: str | None) -> str | None:
    """The token endpoint authenticates the application with HTTP Basic (client id and secret)."""
    if value and value.lower().startswith("basic "):
        return None
    return "client authentication failed"


_WRITE = {"Content-Language": content_language_problem}

#: (method, route template) -> contract, for every eBay endpoint the Stoflow client calls.
CONTRACTS: dict[tuple[str, str], EndpointContract] = {
    ("POST", "/identity/v1/oauth2/token"): EndpointContract(
        body_kind="form", body=RefreshTokenGrant, headers={"Authorization": basic_auth_problem}
    ),
    ("PUT", INVENTORY + "/inventory_item/{sku}"): EndpointContract(
        body_kind="json", body=InventoryItem, headers=_WRITE
    ),
    ("GET", INVENTORY + "/inventory_item"): EndpointContract(query=GetInventoryItemsQuery),
    ("GET", INVENTORY + "/offer"): EndpointContract(query=GetOffersQuery),
    ("POST", INVENTORY + "/offer"): EndpointContract(
        body_kind="json", body=OfferDetailsWithKeys, headers=_WRITE
    ),
    ("PUT", INVENTORY + "/offer/{offer_id}"): EndpointContract(
        body_kind="json", body=OfferDetailsWithId, headers=_WRITE
    ),
    ("POST", INVENTORY + "/offer/{offer_id}/publish"): EndpointContract(),
    ("POST", INVENTORY + "/offer/{offer_id}/withdraw"): EndpointContract(),
}
