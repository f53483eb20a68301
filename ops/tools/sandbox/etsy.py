"""Fake Etsy Open API v3: OAuth refresh, shop listings, listing images, inventory and shop policies.

Every request is checked against its endpoint's contract (`etsy_contract.py` here, from Etsy's published
OpenAPI file) before the route runs: `x-api-key` must be `<keystring>:<shared secret>`, listing writes are
form-encoded and know no `skus` (nor `price`/`quantity` on update), the inventory takes JSON offerings.
Shapes follow Etsy's v3 reference and the etsy/open-api issue tracker: errors are `{"error": "..."}`; token
errors add `error_description` (`invalid_token` / "access token is expired", `invalid_grant` / "refresh_token
is revoked"); access and refresh tokens are `<user_id>.<secret>`, and a refresh rotates the refresh token
(the one used is dead from then on); listings carry `listing_id`, `state`, `url`, `price: {amount, divisor,
currency_code}` and the `skus` of their inventory.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers

from ops.tools.sandbox import etsy_contract
from ops.tools.sandbox.contract import ParsedRequest, Violation, checked_request
from ops.tools.sandbox.faults import PlatformHooks
from ops.tools.sandbox.state import AccessToken, EtsyListing, EtsyShop, JsonDict, SandboxState, state_of

router = APIRouter(tags=["etsy"])

ACCESS_TOKEN_SECONDS = 3600  # Etsy access tokens live one hour; refresh tokens 90 days
APPLICATION = etsy_contract.APPLICATION

LISTING_STATES = frozenset({"active", "inactive", "sold_out", "draft", "removed", "expired"})
TITLE_MAX = 140
IMAGES_MAX = 10
MIN_PRICE = 0.20
MAX_PRICE = 50000.0
MAX_QUANTITY = 999
#: The EU member states: there a physical listing may go live without a return policy.
EU_COUNTRIES = frozenset(
    {"AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT", "LV"}
    | {"LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE"}
)
#: Title characters Etsy takes: letters, digits, punctuation, math symbols, spaces, and these three.
TITLE_EXTRA = frozenset("\u2122\u00a9\u00ae")
TITLE_ONCE = "%:&+"


class EtsyApiError(Exception):
    """An error answer in Etsy's `{"error": ...}` shape."""

    def __init__(self, status: int, error: str, description: str | None = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.description = description

    def response(self) -> JSONResponse:
        """Render the error as Etsy would."""
        body: JsonDict = {"error": self.error}
        if self.description is not None:
            body["error_description"] = self.description
        return JSONResponse(body, status_code=self.status)


async def error_handler(request: Request, exc: Exception) -> Response:
    """Translate `EtsyApiError` into its JSON answer."""
    assert isinstance(exc, EtsyApiError)
    return exc.response()


def _refusal(violations: list[Violation]) -> EtsyApiError:
    """Etsy's answer to a request that breaks the contract: 403 for the key, 400 for the rest."""
    for violation in violations:
        if violation.location == "header.x-api-key":
            return EtsyApiError(403, violation.message)
    return EtsyApiError(400, "; ".join(str(v) for v in violations))


async def etsy_request(request: Request) -> ParsedRequest:
    """The request's parameters, once checked against its endpoint's contract."""
    return await checked_request(request, etsy_contract.CONTRACTS, _refusal)


Params = Annotated[ParsedRequest, Depends(etsy_request)]


# --- listing rules beyond the schema ---------------------------------------------------------------------


def title_problem(title: str) -> str | None:
    """What Etsy's title rule refuses in `title`, or None."""
    if not title.strip():
        return "title cannot be empty"
    if len(title) > TITLE_MAX:
        return f"title cannot be longer than {TITLE_MAX} characters"
    for char in title:
        category = unicodedata.category(char)
        if not (category[0] in "LP" or category in ("Nd", "Sm", "Zs") or char in TITLE_EXTRA):
            return f"title contains a character that is not allowed: {char!r}"
    for char in TITLE_ONCE:
        if title.count(char) > 1:
            return f"title may use the {char} character only once"
    return None


def _check_listing_fields(state: SandboxState, shop: EtsyShop, fields: JsonDict) -> None:
    """Refuse what Etsy refuses once the body has the right shape: titles, ranges, the shop's own ids."""
    if "title" in fields:
        problem = title_problem(fields["title"])
        if problem is not None:
            raise EtsyApiError(400, problem)
    if "quantity" in fields and not 1 <= int(fields["quantity"]) <= MAX_QUANTITY:
        raise EtsyApiError(400, f"quantity must be between 1 and {MAX_QUANTITY}")
    if "price" in fields and not MIN_PRICE <= float(fields["price"]) <= MAX_PRICE:
        raise EtsyApiError(400, "price must be between 0.20 and 50000.00")
    if "taxonomy_id" in fields and int(fields["taxonomy_id"]) not in state.etsy.taxonomy_ids:
        raise EtsyApiError(400, f"taxonomy_id {fields['taxonomy_id']} is not a valid seller taxonomy id")
    if fields.get("return_policy_id") is not None and int(fields["return_policy_id"]) not in (
        shop.return_policy_ids
    ):
        raise EtsyApiError(404, f"Could not find a return policy with id = {fields['return_policy_id']}")
    if fields.get("readiness_state_id") is not None and int(fields["readiness_state_id"]) not in (
        shop.readiness_state_ids
    ):
        raise EtsyApiError(
            404, f"Could not find a processing profile with id = {fields['readiness_state_id']}"
        )


_INTS = ("quantity", "taxonomy_id", "shipping_profile_id", "return_policy_id", "readiness_state_id")
_BOOLS = ("is_supply", "should_auto_renew", "is_taxable", "is_customizable")


def _normalised(params: JsonDict) -> JsonDict:
    """Form values (all text) as the types the listing stores."""
    fields: JsonDict = {}
    for name, value in params.items():
        if value is None:
            continue
        if name in _INTS:
            fields[name] = int(value)
        elif name == "price":
            fields[name] = round(float(value), 2)
        elif name in _BOOLS:
            fields[name] = value if isinstance(value, bool) else str(value).lower() in {"true", "1"}
        elif name in ("tags", "materials", "styles") and isinstance(value, str):
            fields[name] = [part.strip() for part in value.split(",") if part.strip()]
        else:
            fields[name] = value
    return fields


def _lenient_fields(params: JsonDict) -> JsonDict:
    """In lenient mode a malformed body still gets in; keep only what can be typed."""
    try:
        return _normalised(params)
    except (TypeError, ValueError):
        raise EtsyApiError(400, "Invalid parameter value") from None


# --- OAuth ----------------------------------------------------------------------------------------------


def issue_tokens(state: SandboxState, user_id: int) -> tuple[str, str]:
    """Mint an access token and a fresh refresh token for a user."""
    access_token = f"{user_id}.{state.new_secret()}"
    refresh_token = f"{user_id}.{state.new_secret()}"
    state.etsy.access_tokens[access_token] = AccessToken(
        account=str(user_id), expires_at=state.clock.now() + ACCESS_TOKEN_SECONDS
    )
    state.etsy.refresh_tokens[refresh_token] = str(user_id)
    return access_token, refresh_token


def create_account(
    state: SandboxState, user_id: int | None, shop_id: int | None, country_iso: str = "FR"
) -> JsonDict:
    """Create a user and a shop (one return policy, one processing profile) with live tokens."""
    user_id = user_id or state.new_id(70_000_000)
    shop_id = shop_id or user_id + 1_000_000
    shop = EtsyShop(
        shop_id,
        user_id,
        country_iso=country_iso,
        return_policy_ids=[state.new_id(2_000_000_000)],
        readiness_state_ids=[state.new_id(3_000_000_000)],
    )
    state.etsy.shops[shop_id] = shop
    access_token, refresh_token = issue_tokens(state, user_id)
    return {
        "user_id": user_id,
        "shop_id": shop_id,
        "country_iso": country_iso,
        "return_policy_id": shop.return_policy_ids[0],
        "readiness_state_id": shop.readiness_state_ids[0],
        "access_token": access_token,
        "refresh_token": refresh_token,
        "expires_in": ACCESS_TOKEN_SECONDS,
    }


def _token_error(error: str, description: str) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=400)


async def _token_refusal(request: Request) -> ParsedRequest:
    def refuse(violations: list[Violation]) -> EtsyApiError:
        return EtsyApiError(400, "invalid_request", "; ".join(str(v) for v in violations))

    return await checked_request(request, etsy_contract.CONTRACTS, refuse)


@router.post("/v3/public/oauth/token")
async def issue_token(
    params: Annotated[ParsedRequest, Depends(_token_refusal)], request: Request
) -> JSONResponse:
    """Exchange a refresh token for a new access token and a new refresh token; the old one dies."""
    body = params.body
    if body.get("grant_type") != "refresh_token":
        return _token_error("unsupported_grant_type", "grant_type must be refresh_token")
    refresh_token = body.get("refresh_token")
    if not isinstance(refresh_token, str) or not refresh_token:
        return _token_error("invalid_request", "refresh_token is required")
    state = state_of(request)
    async with state.lock:
        user = state.etsy.refresh_tokens.get(refresh_token)
        if refresh_token in state.etsy.revoked_refresh_tokens or user is None:
            return _token_error("invalid_grant", "refresh_token is revoked")
        # Etsy rotates refresh tokens: the one just used can never be used again.
        state.etsy.revoked_refresh_tokens.add(refresh_token)
        del state.etsy.refresh_tokens[refresh_token]
        access_token, new_refresh_token = issue_tokens(state, int(user))
        state.etsy.refreshes += 1
    return JSONResponse(
        {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": ACCESS_TOKEN_SECONDS,
            "refresh_token": new_refresh_token,
        }
    )


def _bearer(headers: Headers) -> str | None:
    scheme, _, token = (headers.get("authorization") or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def current_user(request: Request) -> int:
    """Check the bearer token like Etsy (the API key was checked with the contract); return the user id."""
    if not request.headers.get("x-api-key"):
        raise EtsyApiError(403, etsy_contract.SHARED_SECRET_MISSING)
    token = _bearer(request.headers)
    if token is None:
        raise EtsyApiError(401, "invalid_token", "access token is missing")
    state = state_of(request)
    issued = state.etsy.access_tokens.get(token)
    if issued is None or issued.revoked:
        raise EtsyApiError(401, "invalid_token", "access token is invalid")
    if issued.expires_at <= state.clock.now():
        raise EtsyApiError(401, "invalid_token", "access token is expired")
    return int(issued.account)


EtsyUser = Annotated[int, Depends(current_user)]


# --- listings -------------------------------------------------------------------------------------------


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60] or "listing"


def _money(amount: float, currency: str) -> JsonDict:
    return {"amount": round(amount * 100), "divisor": 100, "currency_code": currency}


def listing_view(listing: EtsyListing, with_images: bool = False) -> JsonDict:
    """Render a listing like getListing does (price and quantity come from its inventory)."""
    f = listing.fields
    view: JsonDict = {
        "listing_id": listing.listing_id,
        "user_id": listing.user_id,
        "shop_id": listing.shop_id,
        "title": f.get("title", ""),
        "description": f.get("description", ""),
        "state": f.get("state", "draft"),
        "creation_timestamp": f["created"],
        "created_timestamp": f["created"],
        "original_creation_timestamp": f["created"],
        "last_modified_timestamp": f["updated"],
        "updated_timestamp": f["updated"],
        "state_timestamp": f["updated"],
        "ending_timestamp": f["created"] + 120 * 86400,
        "quantity": f.get("quantity", 0),
        "shop_section_id": None,
        "featured_rank": -1,
        "url": f"https://www.etsy.com/listing/{listing.listing_id}/{_slug(f.get('title', ''))}",
        "num_favorers": 0,
        "non_taxable": False,
        "is_taxable": f.get("is_taxable", True),
        "is_customizable": False,
        "is_personalizable": False,
        "listing_type": f.get("type", "physical"),
        "tags": f.get("tags", []),
        "materials": f.get("materials", []),
        "shipping_profile_id": f.get("shipping_profile_id"),
        "return_policy_id": f.get("return_policy_id"),
        "readiness_state_id": f.get("readiness_state_id"),
        "processing_min": None,
        "processing_max": None,
        "who_made": f.get("who_made"),
        "when_made": f.get("when_made"),
        "is_supply": f.get("is_supply"),
        "should_auto_renew": f.get("should_auto_renew", False),
        "language": "en-US",
        "price": _money(f.get("price", 0.0), f.get("currency_code", "EUR")),
        "taxonomy_id": f.get("taxonomy_id"),
        "views": 0,
        "has_variations": False,
        "skus": [sku for sku in f.get("skus", []) if sku],
    }
    if with_images:
        view["images"] = list(listing.images)
    return view


def _find_listing(state: SandboxState, listing_id: int, shop_id: int | None = None) -> EtsyListing:
    listing = state.etsy.listings.get(listing_id)
    if listing is None or listing.deleted or (shop_id is not None and listing.shop_id != shop_id):
        raise EtsyApiError(404, f"Could not find a Listing with listing_id = {listing_id}")
    return listing


def _shop(state: SandboxState, shop_id: int, user_id: int) -> EtsyShop:
    shop = state.etsy.shops.get(shop_id)
    if shop is None:
        # A shop the control API never made (older tests): the user's, with no policies of its own.
        shop = state.etsy.shops.setdefault(shop_id, EtsyShop(shop_id, user_id))
    if shop.user_id != user_id:
        raise EtsyApiError(403, "The shop does not belong to the authenticated user")
    return shop


def _wants_images(request: Request) -> bool:
    return "images" in request.query_params.get("includes", "").lower()


def _listing_fields(state: SandboxState, params: JsonDict) -> JsonDict:
    return _lenient_fields(params) if not state.strict else _normalised(params)


@router.post(APPLICATION + "/shops/{shop_id}/listings", status_code=201)
async def create_draft_listing(
    params: Params, shop_id: int, request: Request, user_id: EtsyUser
) -> JSONResponse:
    """Create a draft listing (201): no SKU, no state; the inventory gets its SKU, price and stock later."""
    state = state_of(request)
    fields = _listing_fields(state, params.body)
    missing = [n for n in etsy_contract.CreateDraftListing.model_fields if n not in fields]
    missing = [n for n in missing if etsy_contract.CreateDraftListing.model_fields[n].is_required()]
    if missing:
        raise EtsyApiError(400, f"Missing required parameter(s): {', '.join(missing)}")
    if "is_supply" not in fields:
        # Etsy: once who_made and when_made are given, is_supply must be given too.
        raise EtsyApiError(400, "is_supply is required when who_made and when_made are provided")
    if fields.get("type", "physical") == "physical":
        if "shipping_profile_id" not in fields:
            raise EtsyApiError(400, "shipping_profile_id is required for physical listings")
        if state.strict and "readiness_state_id" not in fields:
            raise EtsyApiError(400, "readiness_state_id is required for physical listings")
    async with state.lock:
        shop = _shop(state, shop_id, user_id)
        if state.strict:
            _check_listing_fields(state, shop, fields)
        for lenient_only in ("skus", "state"):
            fields.pop(lenient_only, None)
        now = int(state.clock.now())
        listing_id = state.new_id(1_500_000_000)
        fields.update(state="draft", created=now, updated=now, skus=[])
        listing = EtsyListing(listing_id, shop_id, user_id, fields)
        state.etsy.listings[listing_id] = listing
        view = listing_view(listing)
    return JSONResponse(view, status_code=201)


@router.get(APPLICATION + "/shops/{shop_id}/listings")
async def get_listings_by_shop(
    params: Params,
    shop_id: int,
    request: Request,
    user_id: EtsyUser,
    wanted: str = Query("active", alias="state"),
    limit: int = 25,
    offset: int = 0,
) -> JsonDict:
    """Page through a shop's listings in one state (Etsy's default is `active`)."""
    if wanted not in LISTING_STATES:
        raise EtsyApiError(400, f"state must be one of: {', '.join(sorted(LISTING_STATES))}")
    if not 1 <= limit <= 100 or offset < 0:
        raise EtsyApiError(400, "limit must be between 1 and 100 and offset at least 0")
    state = state_of(request)
    matching = [
        listing
        for listing in state.etsy.listings.values()
        if listing.shop_id == shop_id and not listing.deleted and listing.fields.get("state") == wanted
    ]
    page = matching[offset : offset + limit]
    with_images = _wants_images(request)
    return {"count": len(matching), "results": [listing_view(x, with_images) for x in page]}


@router.get(APPLICATION + "/listings/{listing_id}")
async def get_listing(listing_id: int, request: Request, user_id: EtsyUser) -> JsonDict:
    """Return one listing (`includes=Images` adds its images)."""
    return listing_view(_find_listing(state_of(request), listing_id), _wants_images(request))


@router.patch(APPLICATION + "/shops/{shop_id}/listings/{listing_id}")
async def update_listing(
    params: Params, shop_id: int, listing_id: int, request: Request, user_id: EtsyUser
) -> JsonDict:
    """Change a listing's fields or state; activating needs an image, stock and (outside the EU) a return
    policy, as on Etsy. Price and quantity are not fields of this endpoint: only the inventory sets them."""
    state = state_of(request)
    fields = _listing_fields(state, params.body)
    async with state.lock:
        listing = _find_listing(state, listing_id, shop_id)
        shop = _shop(state, shop_id, user_id)
        if state.strict:
            _check_listing_fields(state, shop, fields)
        target = fields.get("state")
        if target is not None:
            if target not in ("active", "inactive"):
                raise EtsyApiError(400, "state must be one of: active, inactive")
            merged = {**listing.fields, **fields}
            if target == "active":
                if not listing.images:
                    raise EtsyApiError(400, "Cannot activate a listing without at least one image.")
                quantity = merged.get("quantity")
                if not isinstance(quantity, int) or quantity <= 0:
                    raise EtsyApiError(400, "Cannot activate a listing with a quantity of 0.")
                physical = merged.get("type", "physical") == "physical"
                if physical and shop.country_iso not in EU_COUNTRIES and not merged.get("return_policy_id"):
                    raise EtsyApiError(
                        400, "A return policy is required to activate a physical listing in this shop."
                    )
        listing.fields.update(fields)
        listing.fields["updated"] = int(state.clock.now())
        return listing_view(listing)


@router.delete(APPLICATION + "/listings/{listing_id}", status_code=204)
async def delete_listing(listing_id: int, request: Request, user_id: EtsyUser) -> Response:
    """Delete a listing; deleting it again is a 404."""
    state = state_of(request)
    async with state.lock:
        _find_listing(state, listing_id).deleted = True
    return Response(status_code=204)


# --- images ---------------------------------------------------------------------------------------------

#: The smallest image Etsy would take: anything shorter is not a picture (a truncated or empty upload).
MIN_IMAGE_BYTES = 32


def _image_record(state: SandboxState, listing_id: int, params: JsonDict, data: bytes) -> JsonDict:
    image_id = state.new_id(4_000_000_000)
    base = f"https://i.etsystatic.com/sandbox/{image_id}"
    return {
        "listing_id": listing_id,
        "listing_image_id": image_id,
        "hex_code": None,
        "created_timestamp": int(state.clock.now()),
        "rank": 0,
        "url_75x75": f"{base}/il_75x75.jpg",
        "url_170x135": f"{base}/il_170x135.jpg",
        "url_570xN": f"{base}/il_570xN.jpg",
        "url_fullxfull": f"{base}/il_fullxfull.jpg",
        "full_height": None,
        "full_width": None,
        "alt_text": params.get("alt_text"),
        "byte_size": len(data),
    }


def _rerank(images: list[JsonDict]) -> None:
    for position, image in enumerate(images, start=1):
        image["rank"] = position


@router.post(APPLICATION + "/shops/{shop_id}/listings/{listing_id}/images", status_code=201)
async def upload_listing_image(
    params: Params, shop_id: int, listing_id: int, request: Request, user_id: EtsyUser
) -> JSONResponse:
    """Attach an uploaded file (multipart `image`) or an existing `listing_image_id` to a listing.

    `rank` places the image (1 is first); with `overwrite=true` it replaces the image at that rank.
    """
    body = params.body
    data = params.files.get("image", b"")
    state = state_of(request)
    async with state.lock:
        listing = _find_listing(state, listing_id, shop_id)
        existing_id = body.get("listing_image_id")
        if existing_id is not None:
            for known in listing.images:
                if str(known["listing_image_id"]) == str(existing_id):
                    return JSONResponse(known, status_code=201)
        if not data:
            raise EtsyApiError(400, "Either a valid image file or a listing_image_id must be provided.")
        if state.strict and len(data) < MIN_IMAGE_BYTES:
            raise EtsyApiError(400, "The image file is not a valid image.")
        rank = int(body.get("rank") or len(listing.images) + 1)
        overwrite = str(body.get("overwrite", "")).lower() in {"true", "1"}
        image = _image_record(state, listing_id, body, data)
        index = max(0, min(rank, len(listing.images) + 1) - 1)
        if overwrite and index < len(listing.images):
            listing.images[index] = image
        else:
            if len(listing.images) >= IMAGES_MAX:
                raise EtsyApiError(
                    400,
                    "Listings are only allowed 10 images. "
                    "Please delete a ListingImage before trying to upload another.",
                )
            listing.images.insert(index, image)
        _rerank(listing.images)
    return JSONResponse(image, status_code=201)


@router.delete(
    APPLICATION + "/shops/{shop_id}/listings/{listing_id}/images/{listing_image_id}", status_code=204
)
async def delete_listing_image(
    params: Params, shop_id: int, listing_id: int, listing_image_id: int, request: Request, user_id: EtsyUser
) -> Response:
    """Remove an image from a listing (the rest close ranks)."""
    state = state_of(request)
    async with state.lock:
        listing = _find_listing(state, listing_id, shop_id)
        kept = [i for i in listing.images if i["listing_image_id"] != listing_image_id]
        if len(kept) == len(listing.images):
            raise EtsyApiError(404, f"Could not find a ListingImage with id = {listing_image_id}")
        listing.images = kept
        _rerank(listing.images)
    return Response(status_code=204)


@router.get(APPLICATION + "/listings/{listing_id}/images")
async def get_listing_images(
    params: Params, listing_id: int, request: Request, user_id: EtsyUser
) -> JsonDict:
    """List a listing's images."""
    images = _find_listing(state_of(request), listing_id).images
    return {"count": len(images), "results": list(images)}


# --- inventory (where Etsy keeps SKU, price and quantity) ------------------------------------------------


def _inventory_view(listing: EtsyListing) -> JsonDict:
    f = listing.fields
    products = f.get("inventory") or [
        {
            "sku": "",
            "price": f.get("price", 0.0),
            "quantity": f.get("quantity", 0),
            "readiness_state_id": None,
        }
    ]
    currency = f.get("currency_code", "EUR")
    return {
        "products": [
            {
                "product_id": listing.listing_id * 10 + position,
                "sku": product["sku"],
                "is_deleted": False,
                "offerings": [
                    {
                        "offering_id": listing.listing_id * 100 + position,
                        "quantity": product["quantity"],
                        "is_enabled": True,
                        "is_deleted": False,
                        "price": _money(product["price"], currency),
                        "readiness_state_id": product["readiness_state_id"],
                    }
                ],
                "property_values": [],
            }
            for position, product in enumerate(products)
        ],
        "price_on_property": [],
        "quantity_on_property": [],
        "sku_on_property": [],
        "readiness_state_on_property": [],
        "listing": listing_view(listing),
    }


@router.get(APPLICATION + "/listings/{listing_id}/inventory")
async def get_listing_inventory(
    params: Params, listing_id: int, request: Request, user_id: EtsyUser
) -> JsonDict:
    """Return a listing's inventory (one product per SKU)."""
    return _inventory_view(_find_listing(state_of(request), listing_id))


@router.put(APPLICATION + "/listings/{listing_id}/inventory")
async def update_listing_inventory(
    params: Params, listing_id: int, request: Request, user_id: EtsyUser
) -> JsonDict:
    """Replace the inventory: SKUs, prices and quantities (variations by property are not modelled)."""
    state = state_of(request)
    try:
        inventory = etsy_contract.UpdateListingInventory.model_validate(params.body)
    except ValueError:
        raise EtsyApiError(400, "products must be a non-empty array of products with offerings") from None
    products: list[JsonDict] = []
    for product in inventory.products:
        offering = product.offerings[0]
        if not MIN_PRICE <= offering.price <= MAX_PRICE:
            raise EtsyApiError(400, "price must be between 0.20 and 50000.00")
        if not 0 <= offering.quantity <= MAX_QUANTITY:
            raise EtsyApiError(400, f"quantity must be between 0 and {MAX_QUANTITY}")
        products.append(
            {
                "sku": product.sku or "",
                "price": round(offering.price, 2),
                "quantity": offering.quantity if offering.is_enabled else 0,
                "readiness_state_id": offering.readiness_state_id,
            }
        )
    async with state.lock:
        listing = _find_listing(state, listing_id)
        shop = _shop(state, listing.shop_id, user_id)
        for stored in products:
            readiness = stored["readiness_state_id"]
            if state.strict and readiness is not None and readiness not in shop.readiness_state_ids:
                raise EtsyApiError(404, f"Could not find a processing profile with id = {readiness}")
        listing.fields["inventory"] = products
        listing.fields["skus"] = [p["sku"] for p in products if p["sku"]]
        listing.fields["price"] = min(p["price"] for p in products)
        listing.fields["quantity"] = sum(p["quantity"] for p in products)
        listing.fields["updated"] = int(state.clock.now())
        return _inventory_view(listing)


# --- shop policies --------------------------------------------------------------------------------------


@router.get(APPLICATION + "/shops/{shop_id}/policies/return")
async def get_shop_return_policies(
    params: Params, shop_id: int, request: Request, user_id: EtsyUser
) -> JsonDict:
    """The shop's return policies."""
    shop = _shop(state_of(request), shop_id, user_id)
    results = [
        {
            "return_policy_id": policy_id,
            "shop_id": shop_id,
            "accepts_returns": True,
            "accepts_exchanges": True,
            "return_deadline": 30,
        }
        for policy_id in shop.return_policy_ids
    ]
    return {"count": len(results), "results": results}


@router.get(APPLICATION + "/shops/{shop_id}/readiness-state-definitions")
async def get_shop_readiness_states(
    params: Params, shop_id: int, request: Request, user_id: EtsyUser
) -> JsonDict:
    """The shop's processing profiles."""
    shop = _shop(state_of(request), shop_id, user_id)
    results = [
        {
            "readiness_state_id": readiness_id,
            "shop_id": shop_id,
            "readiness_state": "ready_to_ship",
            "min_processing_time": 1,
            "max_processing_time": 3,
            "processing_time_unit": "days",
        }
        for readiness_id in shop.readiness_state_ids
    ]
    return {"count": len(results), "results": results}


# --- inspection and fault hooks -------------------------------------------------------------------------


def inspect(state: SandboxState, shop_id: int | None = None) -> JsonDict:
    """Describe listings per shop and per SKU (deleted ones included, flagged)."""
    shops: dict[str, JsonDict] = {}
    for listing in state.etsy.listings.values():
        if shop_id is not None and listing.shop_id != shop_id:
            continue
        shop = shops.setdefault(str(listing.shop_id), {"listings": [], "skus": {}})
        view = {**listing_view(listing, with_images=True), "deleted": listing.deleted}
        shop["listings"].append(view)
        for sku in listing.fields.get("skus", []):
            shop["skus"].setdefault(sku, []).append(view)
    return {"shops": shops}


def _account_of(state: SandboxState, headers: Headers) -> str | None:
    issued = state.etsy.access_tokens.get(_bearer(headers) or "")
    return issued.account if issued is not None else None


def _expire_token(state: SandboxState, headers: Headers) -> bool:
    issued = state.etsy.access_tokens.get(_bearer(headers) or "")
    if issued is None:
        return False
    issued.expires_at = state.clock.now()
    return True


def _rate_limited(retry_after: int) -> Response:
    response = EtsyApiError(429, "You have exceeded your quota of: 10 requests per 1 second(s).").response()
    response.headers.update(
        {"Retry-After": str(retry_after), "x-limit-per-second": "10", "x-remaining-this-second": "0"}
    )
    return response


HOOKS = PlatformHooks(
    account_of=_account_of,
    rate_limited=_rate_limited,
    server_error=lambda status: EtsyApiError(status, "Server Error").response(),
    expire_token=_expire_token,
    token_expired=lambda: EtsyApiError(401, "invalid_token", "access token is expired").response(),
)
