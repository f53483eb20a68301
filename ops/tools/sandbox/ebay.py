"""Fake eBay: the OAuth token endpoint and the Sell Inventory API (inventory items, offers, publish).

Shapes follow eBay's Sell Inventory v1 reference: every error is `{"errors": [{"errorId", "domain",
"subdomain", "category", "message", "longMessage", "parameters"}]}`, OAuth failures use `domain: "OAuth"` with
errorId 1001 (invalid token) and 1002 (missing token), and the token endpoint answers in RFC 6749's `{"error",
"error_description"}` form. Where eBay accepts a partial inventory item and only complains at publish time,
the sandbox already refuses it at PUT: Stoflow always sends complete items, so an incomplete one is a client
bug we want to see at once.

Every request is first checked against its endpoint's contract (`ebay_contract.py`, from eBay's
published OpenAPI file): JSON bodies with no unknown field, `Content-Language` on writes, HTTPS pictures
(plain http only from loopback hosts), `updateOffer` without the offer's keys. Beyond the schema the fake
knows which category ids exist and which conditions they take (`catalogue.py`), and which currency
each marketplace lists in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers

from ops.tools.sandbox import ebay_contract
from ops.tools.sandbox.catalogue import ebay_categories
from ops.tools.sandbox.contract import ParsedRequest, Violation, checked_request
from ops.tools.sandbox.ebay_aspects import missing_aspect_errors
from ops.tools.sandbox.faults import PlatformHooks
from ops.tools.sandbox.state import AccessToken, EbayAccount, EbayOffer, JsonDict, SandboxState, state_of

router = APIRouter(tags=["ebay"])

ACCESS_TOKEN_SECONDS = 7200  # eBay user access tokens live two hours
INVENTORY = "/sell/inventory/v1"

CONTENT_LANGUAGES = ebay_contract.CONTENT_LANGUAGES
MARKETPLACES = frozenset(
    {"EBAY_US", "EBAY_GB", "EBAY_FR", "EBAY_DE", "EBAY_IT", "EBAY_ES", "EBAY_NL", "EBAY_BE", "EBAY_AT"}
    | {"EBAY_CH", "EBAY_IE", "EBAY_PL", "EBAY_CA", "EBAY_AU"}
)
FORMATS = frozenset({"FIXED_PRICE", "AUCTION"})
CONDITIONS = frozenset(
    {"NEW", "LIKE_NEW", "NEW_OTHER", "NEW_WITH_DEFECTS", "MANUFACTURER_REFURBISHED", "CERTIFIED_REFURBISHED"}
    | {"EXCELLENT_REFURBISHED", "VERY_GOOD_REFURBISHED", "GOOD_REFURBISHED", "SELLER_REFURBISHED"}
    | {"USED_EXCELLENT", "USED_VERY_GOOD", "USED_GOOD", "USED_ACCEPTABLE", "FOR_PARTS_OR_NOT_WORKING"}
    | {"PRE_OWNED_EXCELLENT", "PRE_OWNED_FAIR"}
)
SKU_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]{1,50}$")
TITLE_MAX = 80
IMAGES_MAX = 24
#: The one currency each marketplace lists in.
MARKETPLACE_CURRENCIES = {
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


class EbayApiError(Exception):
    """An error answer in eBay's `{"errors": [...]}` shape."""

    def __init__(self, status: int, errors: list[JsonDict]) -> None:
        super().__init__(errors[0].get("message", "eBay error") if errors else "eBay error")
        self.status = status
        self.errors = errors

    def response(self) -> JSONResponse:
        """Render the error as eBay would."""
        return JSONResponse({"errors": self.errors}, status_code=self.status)


def error_entry(
    error_id: int,
    message: str,
    *,
    domain: str = "API_INVENTORY",
    category: str = "REQUEST",
    long_message: str | None = None,
    parameters: list[JsonDict] | None = None,
) -> JsonDict:
    """Build one entry of an eBay `errors` array."""
    entry: JsonDict = {"errorId": error_id, "domain": domain, "category": category, "message": message}
    if domain == "API_INVENTORY":
        entry["subdomain"] = "Selling"
    entry["longMessage"] = long_message or message
    if parameters:
        entry["parameters"] = parameters
    return entry


def fail(status: int, error_id: int, message: str, **kwargs: Any) -> EbayApiError:
    """Build a single-error eBay failure."""
    return EbayApiError(status, [error_entry(error_id, message, **kwargs)])


def user_error(detail: str, *parameters: tuple[str, str]) -> JsonDict:
    # 25002 is eBay's catch-all "user error" id; the detail goes after its fixed prefix like eBay's.
    return error_entry(
        25002,
        f"A user error has occurred. {detail}",
        parameters=[{"name": name, "value": value} for name, value in parameters] or None,
    )


def invalid_request(reason: str) -> EbayApiError:
    """The answer eBay gives to a body it cannot parse."""
    return fail(
        400,
        2004,
        "Invalid request",
        domain="ACCESS",
        long_message="The request has errors. For help, see the documentation for this API.",
        parameters=[{"name": "reason", "value": reason}],
    )


async def error_handler(request: Request, exc: Exception) -> Response:
    """Translate `EbayApiError` into its JSON answer."""
    assert isinstance(exc, EbayApiError)
    return exc.response()


def _refusal(violations: list[Violation]) -> EbayApiError:
    """eBay's answer to a request that breaks the contract: one `errors[]` entry per problem."""
    errors: list[JsonDict] = []
    for violation in violations:
        if violation.location == "header.Content-Language":
            errors.append(
                error_entry(
                    25709,
                    "Invalid value for header Content-Language.",
                    long_message="Invalid value for header Content-Language. Accepted values: "
                    + ", ".join(sorted(CONTENT_LANGUAGES)),
                )
            )
        elif violation.location.startswith("body.product.imageUrls"):
            errors.append(user_error(violation.message, ("field", "product.imageUrls")))
        else:
            errors.append(
                error_entry(
                    2004,
                    "Invalid request",
                    domain="ACCESS",
                    long_message="The request has errors. For help, see the documentation for this API.",
                    parameters=[{"name": "reason", "value": str(violation)}],
                )
            )
    return EbayApiError(400, errors)


async def ebay_request(request: Request) -> ParsedRequest:
    """The request's parameters, once checked against its endpoint's contract."""
    return await checked_request(request, ebay_contract.CONTRACTS, _refusal)


Params = Annotated[ParsedRequest, Depends(ebay_request)]


# --- OAuth ----------------------------------------------------------------------------------------------


def oauth_error(status: int, error: str, description: str) -> JSONResponse:
    """Render a token-endpoint error."""
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


def _basic_client(header: str | None) -> str | None:
    """Return the client id of a `Basic base64(id:secret)` header, or None when it is unusable."""
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, secret = decoded.partition(":")
    return client_id if sep and client_id and secret else None


def account_for_refresh_token(state: SandboxState, refresh_token: str) -> str:
    """Name the seller a refresh token belongs to; an unseen token becomes a new seller."""
    account_id = state.ebay.refresh_tokens.get(refresh_token)
    if account_id is None:
        account_id = "ebay-" + hashlib.sha256(refresh_token.encode()).hexdigest()[:10]
        state.ebay.refresh_tokens[refresh_token] = account_id
    state.ebay.account(account_id)
    return account_id


def issue_access_token(state: SandboxState, account_id: str, kind: str = "user") -> str:
    """Mint an access token for a seller (or for the application)."""
    token = state.new_secret("v^1.1#i^1#sandbox#")
    state.ebay.access_tokens[token] = AccessToken(
        account=account_id,
        expires_at=state.clock.now() + ACCESS_TOKEN_SECONDS,
        kind="application" if kind == "application" else "user",
    )
    return token


def create_account(state: SandboxState, account_id: str | None) -> JsonDict:
    """Create a seller with a refresh token and a live access token (control API helper)."""
    refresh_token = state.new_secret("v^1.1#r^1#sandbox#")
    account_id = account_id or f"ebay-{state.new_id(0)}"
    state.ebay.refresh_tokens[refresh_token] = account_id
    state.ebay.account(account_id)
    access_token = issue_access_token(state, account_id)
    return {
        "account_id": account_id,
        "refresh_token": refresh_token,
        "access_token": access_token,
        "expires_in": ACCESS_TOKEN_SECONDS,
    }


class OAuthRefusal(Exception):
    """A token request refused in RFC 6749's shape."""

    def __init__(self, violations: list[Violation]) -> None:
        super().__init__(str(violations))
        self.violations = violations

    def response(self) -> JSONResponse:
        """401 invalid_client for the application's credentials, else 400 invalid_request."""
        if any(v.location == "header.Authorization" for v in self.violations):
            return oauth_error(401, "invalid_client", "client authentication failed")
        return oauth_error(400, "invalid_request", "request is missing a required parameter or malformed.")


async def oauth_refusal_handler(request: Request, exc: Exception) -> Response:
    """Translate `OAuthRefusal` into its JSON answer."""
    assert isinstance(exc, OAuthRefusal)
    return exc.response()


async def _token_request(request: Request) -> ParsedRequest:
    return await checked_request(request, ebay_contract.CONTRACTS, OAuthRefusal)


@router.post("/identity/v1/oauth2/token")
async def issue_token(
    params: Annotated[ParsedRequest, Depends(_token_request)], request: Request
) -> JSONResponse:
    """Exchange a refresh token (or client credentials) for an access token."""
    if _basic_client(request.headers.get("authorization")) is None:
        return oauth_error(401, "invalid_client", "client authentication failed")
    grant_type = params.body.get("grant_type")
    refresh_token = params.body.get("refresh_token")
    state = state_of(request)
    if grant_type == "client_credentials":
        async with state.lock:
            token = issue_access_token(state, "application", kind="application")
        return JSONResponse(
            {
                "access_token": token,
                "expires_in": ACCESS_TOKEN_SECONDS,
                "token_type": "Application Access Token",
            }
        )
    if grant_type != "refresh_token":
        return oauth_error(
            400,
            "unsupported_grant_type",
            "grant type in request is not supported by the authorization server",
        )
    if not isinstance(refresh_token, str) or not refresh_token:
        return oauth_error(400, "invalid_request", "request is missing a required parameter or malformed.")
    async with state.lock:
        if refresh_token in state.ebay.revoked_refresh_tokens:
            return oauth_error(
                400,
                "invalid_grant",
                "the provided authorization refresh token is invalid or was issued to another client",
            )
        token = issue_access_token(state, account_for_refresh_token(state, refresh_token))
    return JSONResponse(
        {"access_token": token, "expires_in": ACCESS_TOKEN_SECONDS, "token_type": "User Access Token"}
    )


# --- authentication of API calls ------------------------------------------------------------------------


def _bearer(headers: Headers) -> str | None:
    scheme, _, token = (headers.get("authorization") or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _invalid_token() -> EbayApiError:
    return fail(
        401,
        1001,
        "Invalid access token",
        domain="OAuth",
        long_message="Invalid access token. Check the value of the Authorization HTTP request header.",
    )


async def current_seller(request: Request) -> EbayAccount:
    """Resolve the seller from the bearer token, failing the way eBay does."""
    if not request.headers.get("authorization"):
        raise fail(
            401,
            1002,
            "Missing access token",
            domain="OAuth",
            long_message="Access token is missing in the Authorization HTTP request header.",
        )
    token = _bearer(request.headers)
    state = state_of(request)
    issued = state.ebay.access_tokens.get(token or "")
    if issued is None or issued.revoked or issued.expires_at <= state.clock.now():
        raise _invalid_token()
    if issued.kind == "application":
        # Application tokens cannot act for a seller: Sell APIs need a user token.
        raise fail(403, 1100, "Insufficient permissions to fulfill the request.", domain="API_INVENTORY")
    return state.ebay.account(issued.account)


Seller = Annotated[EbayAccount, Depends(current_seller)]


# --- inventory items ------------------------------------------------------------------------------------


def _validate_sku(sku: str) -> None:
    if not SKU_PATTERN.match(sku):
        raise fail(
            400,
            25707,
            "This is an invalid value for a SKU. Only alphanumeric characters can be used for SKUs, "
            "and their length must not exceed 50 characters",
            parameters=[{"name": "sku", "value": sku}],
        )


def _inventory_item_problems(body: JsonDict) -> list[JsonDict]:
    """List what keeps an inventory item from being publishable, in eBay's error shape."""
    problems: list[JsonDict] = []
    availability = body.get("availability")
    ship = availability.get("shipToLocationAvailability") if isinstance(availability, dict) else None
    quantity = ship.get("quantity") if isinstance(ship, dict) else None
    if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity < 0:
        problems.append(
            user_error(
                "The quantity is missing or invalid.",
                ("field", "availability.shipToLocationAvailability.quantity"),
            )
        )
    condition = body.get("condition")
    if condition is None:
        problems.append(user_error("The item condition is missing.", ("field", "condition")))
    elif condition not in CONDITIONS:
        raise invalid_request("Could not serialize field [condition]")
    product = body.get("product")
    if not isinstance(product, dict):
        problems.append(user_error("The product details are missing.", ("field", "product")))
        return problems
    title = product.get("title")
    if not isinstance(title, str) or not title.strip():
        problems.append(user_error("The title is missing.", ("field", "product.title")))
    elif len(title) > TITLE_MAX:
        problems.append(
            user_error(
                f"The title may not be longer than {TITLE_MAX} characters.", ("field", "product.title")
            )
        )
    images = product.get("imageUrls")
    if not isinstance(images, list) or not images:
        problems.append(user_error("At least one picture is required.", ("field", "product.imageUrls")))
    elif len(images) > IMAGES_MAX or not all(
        isinstance(u, str) and u.startswith(("http://", "https://")) for u in images
    ):
        problems.append(
            user_error(
                f"Pictures must be 1 to {IMAGES_MAX} absolute http(s) URLs.", ("field", "product.imageUrls")
            )
        )
    aspects = product.get("aspects")
    if aspects is not None and not (
        isinstance(aspects, dict) and all(isinstance(v, list) for v in aspects.values())
    ):
        raise invalid_request("Could not serialize field [product.aspects]")
    return problems


def _item_view(sku: str, item: JsonDict) -> JsonDict:
    return {"sku": sku, **item}


@router.put(INVENTORY + "/inventory_item/{sku}", status_code=204)
async def create_or_replace_inventory_item(
    sku: str, request: Request, seller: Seller, params: Params
) -> Response:
    """Create or replace the inventory item of a SKU (204, no body, like eBay)."""
    language = request.headers.get("content-language") or "en-US"
    _validate_sku(sku)
    body = dict(params.body)
    problems = _inventory_item_problems(body)
    if problems:
        raise EbayApiError(400, problems)
    body.pop("sku", None)
    body["locale"] = language.replace("-", "_")
    async with state_of(request).lock:
        seller.inventory[sku] = body
    return Response(status_code=204)


@router.get(INVENTORY + "/inventory_item")
async def get_inventory_items(
    request: Request, seller: Seller, params: Params, limit: int = 25, offset: int = 0
) -> JsonDict:
    """getInventoryItems: the seller's inventory items by SKU, a page at a time (`limit` 1..200)."""
    skus = sorted(seller.inventory)
    page = skus[offset : offset + limit]
    answer: JsonDict = {
        "href": str(request.url),
        "limit": limit,
        "size": len(page),
        "total": len(skus),
        "inventoryItems": [_item_view(sku, seller.inventory[sku]) for sku in page],
    }
    if offset + limit < len(skus):
        answer["next"] = f"{INVENTORY}/inventory_item?limit={limit}&offset={offset + limit}"
    return answer


@router.get(INVENTORY + "/inventory_item/{sku}")
async def get_inventory_item(sku: str, seller: Seller) -> JsonDict:
    """Return an inventory item, or eBay's 25710 when the SKU is unknown."""
    item = seller.inventory.get(sku)
    if item is None:
        raise fail(404, 25710, "We didn't find the entity you are requesting. Please verify the request")
    return _item_view(sku, item)


@router.delete(INVENTORY + "/inventory_item/{sku}", status_code=204)
async def delete_inventory_item(sku: str, request: Request, seller: Seller) -> Response:
    """Delete an inventory item with its offers, ending their listings."""
    async with state_of(request).lock:
        if seller.inventory.pop(sku, None) is None:
            raise fail(404, 25710, "We didn't find the entity you are requesting. Please verify the request")
        for offer_id in [o.offer_id for o in seller.offers.values() if o.sku == sku]:
            end_listing(seller.offers.pop(offer_id))
    return Response(status_code=204)


# --- offers ---------------------------------------------------------------------------------------------


def _offer_not_available(offer_id: str = "") -> EbayApiError:
    parameters = [{"name": "offerId", "value": offer_id}] if offer_id else None
    return fail(404, 25713, "This Offer is not available.", parameters=parameters)


def offer_view(offer: EbayOffer) -> JsonDict:
    """Render an offer as getOffer returns it."""
    view: JsonDict = {
        **offer.body,
        "offerId": offer.offer_id,
        "sku": offer.sku,
        "marketplaceId": offer.marketplace_id,
        "format": offer.format,
        "status": offer.status,
    }
    if offer.listing_id is not None:
        view["listing"] = {
            "listingId": offer.listing_id,
            "listingStatus": offer.listing_status,
            "soldQuantity": 0,
        }
    return view


def end_listing(offer: EbayOffer) -> None:
    if offer.listing_id is not None:
        offer.ended_listing_ids.append(offer.listing_id)
    offer.status = "UNPUBLISHED"
    offer.listing_id = None
    offer.listing_status = None


def _offer_body_problems(body: JsonDict, marketplace_id: str, *, strict: bool) -> list[JsonDict]:
    """Check the offer fields eBay checks at create/update time (values, not completeness)."""
    problems: list[JsonDict] = []
    pricing = body.get("pricingSummary")
    if pricing is not None:
        price = pricing.get("price") if isinstance(pricing, dict) else None
        value = price.get("value") if isinstance(price, dict) else None
        currency = price.get("currency") if isinstance(price, dict) else None
        wanted = MARKETPLACE_CURRENCIES.get(marketplace_id)
        if strict and wanted is not None and currency != wanted:
            problems.append(
                user_error(
                    f"The currency {currency} is not valid for marketplace {marketplace_id}; "
                    f"listings there are priced in {wanted}.",
                    ("field", "pricingSummary.price.currency"),
                )
            )
        try:
            ok = value is not None and float(value) > 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            problems.append(
                error_entry(
                    25006,
                    "The price is invalid.",
                    parameters=[{"name": "field", "value": "pricingSummary.price.value"}],
                )
            )
    quantity = body.get("availableQuantity")
    if quantity is not None and (not isinstance(quantity, int) or isinstance(quantity, bool) or quantity < 0):
        problems.append(
            error_entry(
                25004,
                "The quantity is invalid.",
                parameters=[{"name": "field", "value": "availableQuantity"}],
            )
        )
    return problems


@router.post(INVENTORY + "/offer", status_code=201)
async def create_offer(request: Request, seller: Seller, params: Params) -> JSONResponse:
    """Create an unpublished offer; a second one for the same SKU, marketplace and format is refused."""
    body = dict(params.body)
    sku, marketplace_id, listing_format = body.get("sku"), body.get("marketplaceId"), body.get("format")
    if not isinstance(sku, str) or not sku:
        raise EbayApiError(400, [user_error("The SKU is missing.", ("field", "sku"))])
    if marketplace_id not in MARKETPLACES:
        raise invalid_request("Could not serialize field [marketplaceId]")
    if listing_format not in FORMATS:
        raise invalid_request("Could not serialize field [format]")
    problems = _offer_body_problems(body, str(marketplace_id), strict=state_of(request).strict)
    if problems:
        raise EbayApiError(400, problems)
    state = state_of(request)
    async with state.lock:
        if sku not in seller.inventory:
            raise fail(
                400,
                25702,
                f"The SKU {sku} is not available in the system.",
                parameters=[{"name": "sku", "value": sku}],
            )
        for offer in seller.offers.values():
            if (offer.sku, offer.marketplace_id, offer.format) == (sku, marketplace_id, listing_format):
                raise EbayApiError(
                    400, [user_error("Offer entity already exists.", ("offerId", offer.offer_id))]
                )
        offer_id = str(state.new_id(5_000_000_000))
        rest = {k: v for k, v in body.items() if k not in {"sku", "marketplaceId", "format", "offerId"}}
        seller.offers[offer_id] = EbayOffer(offer_id, sku, str(marketplace_id), str(listing_format), rest)
    return JSONResponse({"offerId": offer_id}, status_code=201)


@router.get(INVENTORY + "/offer")
async def get_offers(
    request: Request,
    seller: Seller,
    params: Params,
    sku: str | None = None,
    marketplace_id: str | None = None,
    format: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> JsonDict:
    """List the offers of a SKU; eBay answers 404/25713 when there are none."""
    if not sku:
        raise fail(
            400, 25707, "This is an invalid value for a SKU.", parameters=[{"name": "sku", "value": ""}]
        )
    offers = [
        o
        for o in seller.offers.values()
        if o.sku == sku
        and (marketplace_id is None or o.marketplace_id == marketplace_id)
        and (format is None or o.format == format)
    ]
    if not offers:
        raise _offer_not_available()
    page = offers[offset : offset + limit]
    return {
        "href": str(request.url),
        "limit": limit,
        "offers": [offer_view(o) for o in page],
        "size": len(page),
        "total": len(offers),
    }


def _seller_offer(seller: EbayAccount, offer_id: str) -> EbayOffer:
    offer = seller.offers.get(offer_id)
    if offer is None:
        raise _offer_not_available(offer_id)
    return offer


@router.get(INVENTORY + "/offer/{offer_id}")
async def get_offer(offer_id: str, seller: Seller) -> JsonDict:
    """Return one offer."""
    return offer_view(_seller_offer(seller, offer_id))


@router.put(INVENTORY + "/offer/{offer_id}", status_code=204)
async def update_offer(offer_id: str, request: Request, seller: Seller, params: Params) -> Response:
    """Replace an offer's fields; a published offer's listing follows (eBay revises it in place)."""
    body = dict(params.body)
    state = state_of(request)
    async with state.lock:
        offer = _seller_offer(seller, offer_id)
        problems = _offer_body_problems(body, offer.marketplace_id, strict=state.strict)
        if problems:
            raise EbayApiError(400, problems)
        offer.body = {k: v for k, v in body.items() if k not in {"sku", "marketplaceId", "format", "offerId"}}
    return Response(status_code=204)


def _publish_problems(seller: EbayAccount, offer: EbayOffer, *, strict: bool) -> list[JsonDict]:
    """What eBay would refuse at publish: an incomplete item, or an offer without price/policies/place."""
    item = seller.inventory.get(offer.sku)
    if item is None:
        return [user_error(f"No inventory item exists for SKU {offer.sku}.", ("sku", offer.sku))]
    problems = _inventory_item_problems(item)
    body = offer.body
    problems.extend(missing_aspect_errors(item, body.get("categoryId")))
    if not isinstance(body.get("pricingSummary"), dict):
        problems.append(
            error_entry(
                25006,
                "The price is missing.",
                parameters=[{"name": "field", "value": "pricingSummary.price"}],
            )
        )
    policies = body.get("listingPolicies")
    for policy, error_id in (
        ("fulfillmentPolicyId", 25007),
        ("paymentPolicyId", 25008),
        ("returnPolicyId", 25009),
    ):
        if not isinstance(policies, dict) or not policies.get(policy):
            problems.append(
                error_entry(
                    error_id,
                    f"Invalid or missing {policy}.",
                    parameters=[{"name": "field", "value": f"listingPolicies.{policy}"}],
                )
            )
    category_id = body.get("categoryId")
    conditions = ebay_categories().get(str(category_id)) if category_id else None
    if not category_id or (strict and conditions is None):
        problems.append(
            error_entry(
                25005,
                "The category ID is missing or invalid.",
                parameters=[{"name": "field", "value": "categoryId"}],
            )
        )
    elif strict and conditions is not None and item.get("condition") not in conditions:
        problems.append(
            error_entry(
                25021,
                "Invalid item condition information.",
                long_message=f"The condition {item.get('condition')} is not valid in category {category_id}.",
                parameters=[{"name": "field", "value": "condition"}],
            )
        )
    if not body.get("merchantLocationKey"):
        problems.append(
            user_error(
                "No <Item.Country> exists or <Item.Country> is specified as an empty tag in the request.",
                ("field", "merchantLocationKey"),
            )
        )
    ship = item.get("availability", {}).get("shipToLocationAvailability", {})
    quantity = body.get("availableQuantity", ship.get("quantity") if isinstance(ship, dict) else None)
    if isinstance(quantity, int) and quantity <= 0:
        problems.append(
            error_entry(
                25004,
                "The quantity must be greater than zero to publish.",
                parameters=[{"name": "field", "value": "availableQuantity"}],
            )
        )
    return problems


@router.post(INVENTORY + "/offer/{offer_id}/publish")
async def publish_offer(offer_id: str, request: Request, seller: Seller, params: Params) -> JsonDict:
    """Turn an offer into a live listing; publishing a published offer returns the same listing id."""
    state = state_of(request)
    async with state.lock:
        offer = _seller_offer(seller, offer_id)
        if offer.status == "PUBLISHED" and offer.listing_id is not None:
            return {"listingId": offer.listing_id, "warnings": []}
        problems = _publish_problems(seller, offer, strict=state.strict)
        if problems:
            raise EbayApiError(400, problems)
        offer.listing_id = str(state.new_id(110_000_000_000))
        offer.listing_status = "ACTIVE"
        offer.status = "PUBLISHED"
        return {"listingId": offer.listing_id, "warnings": []}


@router.post(INVENTORY + "/offer/{offer_id}/withdraw")
async def withdraw_offer(offer_id: str, request: Request, seller: Seller, params: Params) -> JsonDict:
    """End the listing of a published offer; the offer stays, unpublished, and may be published again."""
    async with state_of(request).lock:
        offer = _seller_offer(seller, offer_id)
        if offer.status != "PUBLISHED" or offer.listing_id is None:
            raise EbayApiError(400, [user_error("The offer is not published.", ("offerId", offer_id))])
        listing_id = offer.listing_id
        end_listing(offer)
    return {"listingId": listing_id, "warnings": []}


# --- inspection and fault hooks -------------------------------------------------------------------------


def inspect(state: SandboxState, account_id: str | None = None) -> JsonDict:
    """Describe each seller's inventory: per SKU, the item and its offers with their listings."""
    accounts: JsonDict = {}
    for account in state.ebay.accounts.values():
        if account_id is not None and account.account_id != account_id:
            continue
        skus: JsonDict = {}
        for sku in sorted({*account.inventory, *(o.sku for o in account.offers.values())}):
            offers = [o for o in account.offers.values() if o.sku == sku]
            skus[sku] = {
                "inventory_item": account.inventory.get(sku),
                "offers": [{**offer_view(o), "ended_listing_ids": list(o.ended_listing_ids)} for o in offers],
                "live_listing_ids": [o.listing_id for o in offers if o.listing_id is not None],
            }
        accounts[account.account_id] = {"skus": skus}
    return {"accounts": accounts}


def _account_of(state: SandboxState, headers: Headers) -> str | None:
    issued = state.ebay.access_tokens.get(_bearer(headers) or "")
    return issued.account if issued is not None else None


def _expire_token(state: SandboxState, headers: Headers) -> bool:
    issued = state.ebay.access_tokens.get(_bearer(headers) or "")
    if issued is None:
        return False
    issued.expires_at = state.clock.now()
    return True


def _rate_limited(retry_after: int) -> Response:
    response = EbayApiError(
        429,
        [
            error_entry(
                2001,
                "Too many requests.",
                domain="ACCESS",
                long_message="The request limit has been reached for the resource.",
            )
        ],
    ).response()
    response.headers["Retry-After"] = str(retry_after)
    return response


def _server_error(status: int) -> Response:
    return EbayApiError(
        status,
        [
            error_entry(
                25001,
                "A system error has occurred.",
                category="APPLICATION",
                long_message="A system error has occurred. Please try again later.",
            )
        ],
    ).response()


HOOKS = PlatformHooks(
    account_of=_account_of,
    rate_limited=_rate_limited,
    server_error=_server_error,
    expire_token=_expire_token,
    token_expired=lambda: _invalid_token().response(),
)
