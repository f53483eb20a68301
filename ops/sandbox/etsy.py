"""Fake Etsy Open API v3: OAuth refresh, shop listings, listing images and inventory.

Shapes follow Etsy's v3 reference and the etsy/open-api issue tracker: errors are `{"error": "..."}`; token
errors add `error_description` (`invalid_token` / "access token is expired", `invalid_grant` / "refresh_token
is revoked"); access and refresh tokens are `<user_id>.<secret>`; listings carry `listing_id`, `state`,
`url`, `price: {amount, divisor, currency_code}`, `skus`. Bodies may be form-encoded (what Etsy documents)
or JSON (what Etsy also accepts).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers, UploadFile

from ops.sandbox.faults import PlatformHooks
from ops.sandbox.state import AccessToken, EtsyListing, JsonDict, SandboxState, state_of

router = APIRouter(tags=["etsy"])

ACCESS_TOKEN_SECONDS = 3600  # Etsy access tokens live one hour; refresh tokens 90 days
APPLICATION = "/v3/application"

WHO_MADE = frozenset({"i_did", "someone_else", "collective"})
# Etsy rewrites the recent ranges every year and refuses stale ones with a 400; both the 2025 and the 2026
# spellings are accepted so the sandbox does not go stale before the clients do.
WHEN_MADE = frozenset(
    {"made_to_order", "2020_2025", "2020_2026", "2010_2019", "2006_2009", "2007_2009", "before_2006"}
    | {"before_2007", "2000_2005", "2000_2006", "1990s", "1980s", "1970s", "1960s", "1950s", "1940s"}
    | {"1930s", "1920s", "1910s", "1900s", "1800s", "1700s", "before_1700"}
)
LISTING_STATES = frozenset({"active", "inactive", "sold_out", "draft", "expired"})
SETTABLE_STATES = frozenset({"active", "inactive"})
TITLE_MAX = 140
IMAGES_MAX = 10
REQUIRED_ON_CREATE = ("quantity", "title", "description", "price", "who_made", "when_made", "taxonomy_id")


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


# --- request bodies -------------------------------------------------------------------------------------


async def read_params(request: Request) -> tuple[JsonDict, list[bytes]]:
    """Read a JSON, urlencoded or multipart body into one dict (repeated or `x[]` keys become lists).

    Uploaded files are read here and returned as bytes, so the form's temporary files are closed at once.
    """
    content_type = request.headers.get("content-type", "")
    if "json" in content_type:
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            raise EtsyApiError(400, "Invalid JSON body") from None
        if not isinstance(body, dict):
            raise EtsyApiError(400, "Invalid JSON body")
        return body, []
    params: JsonDict = {}
    files: list[bytes] = []
    async with request.form() as form:
        for key in form:
            values = form.getlist(key)
            for value in values:
                if isinstance(value, UploadFile):
                    files.append(await value.read())
            texts = [v for v in values if isinstance(v, str)]
            if not texts:
                continue
            name = key.removesuffix("[]")
            params[name] = texts if key.endswith("[]") or len(texts) > 1 else texts[0]
    return params, files


def _as_int(name: str, value: Any, minimum: int = 0) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise EtsyApiError(400, f"{name} must be an integer") from None
    if isinstance(value, bool) or number < minimum:
        raise EtsyApiError(400, f"{name} must be greater than or equal to {minimum}")
    return number


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in {"true", "1", "false", "0"}:
        return value.lower() in {"true", "1"}
    raise EtsyApiError(400, f"{name} must be a boolean")


def _as_str_list(name: str, value: Any) -> list[str]:
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise EtsyApiError(400, f"{name} must be an array of strings")
    return list(value)


def _clean_fields(params: JsonDict) -> JsonDict:
    """Validate and normalise the listing fields present in a create/update body."""
    fields: JsonDict = {}
    if "title" in params:
        title = params["title"]
        if not isinstance(title, str) or not title.strip():
            raise EtsyApiError(400, "title cannot be empty")
        if len(title) > TITLE_MAX:
            raise EtsyApiError(400, f"title cannot be longer than {TITLE_MAX} characters")
        fields["title"] = title
    if "description" in params:
        if not isinstance(params["description"], str):
            raise EtsyApiError(400, "description must be a string")
        fields["description"] = params["description"]
    if "quantity" in params:
        fields["quantity"] = _as_int("quantity", params["quantity"], minimum=0)
        if fields["quantity"] > 999:
            raise EtsyApiError(400, "quantity must be less than or equal to 999")
    if "price" in params:
        try:
            price = float(params["price"])
        except (TypeError, ValueError):
            raise EtsyApiError(400, "price must be a number") from None
        if price < 0.2 or price > 50000:
            raise EtsyApiError(400, "price must be between 0.20 and 50000.00")
        fields["price"] = round(price, 2)
    if "who_made" in params:
        if params["who_made"] not in WHO_MADE:
            raise EtsyApiError(400, f"who_made must be one of: {', '.join(sorted(WHO_MADE))}")
        fields["who_made"] = params["who_made"]
    if "when_made" in params:
        if params["when_made"] not in WHEN_MADE:
            raise EtsyApiError(400, f"when_made has an invalid value: {params['when_made']}")
        fields["when_made"] = params["when_made"]
    if "is_supply" in params:
        fields["is_supply"] = _as_bool("is_supply", params["is_supply"])
    for name in ("taxonomy_id", "shipping_profile_id", "return_policy_id"):
        if name in params and params[name] is not None:
            fields[name] = _as_int(name, params[name], minimum=1)
    for name in ("tags", "materials", "skus"):
        if name in params:
            fields[name] = _as_str_list(name, params[name])
    if "should_auto_renew" in params:
        fields["should_auto_renew"] = _as_bool("should_auto_renew", params["should_auto_renew"])
    if "state" in params:
        fields["state"] = params["state"]
    return fields


# --- OAuth ----------------------------------------------------------------------------------------------


def _user_of_refresh_token(refresh_token: str) -> int:
    prefix = refresh_token.split(".", 1)[0]
    if prefix.isdigit():
        return int(prefix)
    return int(hashlib.sha256(refresh_token.encode()).hexdigest()[:8], 16)


def issue_tokens(state: SandboxState, user_id: int) -> tuple[str, str]:
    """Mint an access token and a rotated refresh token for a user."""
    access_token = f"{user_id}.{state.new_secret()}"
    refresh_token = f"{user_id}.{state.new_secret()}"
    state.etsy.access_tokens[access_token] = AccessToken(
        account=str(user_id), expires_at=state.clock.now() + ACCESS_TOKEN_SECONDS
    )
    state.etsy.refresh_tokens[refresh_token] = str(user_id)
    return access_token, refresh_token


def create_account(state: SandboxState, user_id: int | None, shop_id: int | None) -> JsonDict:
    """Create a user and shop with live tokens (control API helper)."""
    user_id = user_id or state.new_id(70_000_000)
    access_token, refresh_token = issue_tokens(state, user_id)
    return {
        "user_id": user_id,
        "shop_id": shop_id or user_id + 1_000_000,
        "access_token": access_token,
        "refresh_token": refresh_token,
        "expires_in": ACCESS_TOKEN_SECONDS,
    }


@router.post("/v3/public/oauth/token")
async def issue_token(request: Request) -> JSONResponse:
    """Exchange a refresh token for a new access token and a new refresh token."""
    params, _ = await read_params(request)
    if not params.get("client_id"):
        return JSONResponse(
            {"error": "invalid_request", "error_description": "client_id is required"}, status_code=400
        )
    if params.get("grant_type") != "refresh_token":
        return JSONResponse(
            {"error": "unsupported_grant_type", "error_description": "grant_type must be refresh_token"},
            status_code=400,
        )
    refresh_token = params.get("refresh_token")
    if not isinstance(refresh_token, str) or not refresh_token:
        return JSONResponse(
            {"error": "invalid_request", "error_description": "refresh_token is required"}, status_code=400
        )
    state = state_of(request)
    async with state.lock:
        if refresh_token in state.etsy.revoked_refresh_tokens:
            return JSONResponse(
                {"error": "invalid_grant", "error_description": "refresh_token is revoked"}, status_code=400
            )
        known = state.etsy.refresh_tokens.get(refresh_token)
        user_id = int(known) if known is not None else _user_of_refresh_token(refresh_token)
        access_token, new_refresh_token = issue_tokens(state, user_id)
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
    """Check the API key and the bearer token like Etsy; return the user id."""
    if not request.headers.get("x-api-key"):
        raise EtsyApiError(403, "Missing API key. Provide your keystring in the x-api-key header.")
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


def listing_view(listing: EtsyListing, with_images: bool = False) -> JsonDict:
    """Render a listing like getListing does."""
    f = listing.fields
    price = f.get("price", 0.0)
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
        "is_taxable": True,
        "is_customizable": False,
        "is_personalizable": False,
        "listing_type": "physical",
        "tags": f.get("tags", []),
        "materials": f.get("materials", []),
        "shipping_profile_id": f.get("shipping_profile_id"),
        "return_policy_id": f.get("return_policy_id"),
        "processing_min": None,
        "processing_max": None,
        "who_made": f.get("who_made"),
        "when_made": f.get("when_made"),
        "is_supply": f.get("is_supply"),
        "should_auto_renew": f.get("should_auto_renew", False),
        "language": "en-US",
        "price": {
            "amount": round(price * 100),
            "divisor": 100,
            "currency_code": f.get("currency_code", "EUR"),
        },
        "taxonomy_id": f.get("taxonomy_id"),
        "views": 0,
        "has_variations": False,
        "skus": f.get("skus", []),
    }
    if with_images:
        view["images"] = list(listing.images)
    return view


def _find_listing(state: SandboxState, listing_id: int, shop_id: int | None = None) -> EtsyListing:
    listing = state.etsy.listings.get(listing_id)
    if listing is None or listing.deleted or (shop_id is not None and listing.shop_id != shop_id):
        raise EtsyApiError(404, f"Could not find a Listing with listing_id = {listing_id}")
    return listing


def _wants_images(request: Request) -> bool:
    return "images" in request.query_params.get("includes", "").lower()


@router.post(APPLICATION + "/shops/{shop_id}/listings", status_code=201)
async def create_draft_listing(shop_id: int, request: Request, user_id: EtsyUser) -> JSONResponse:
    """Create a draft listing (201); required fields and enums are checked like Etsy."""
    params, _ = await read_params(request)
    missing = [name for name in REQUIRED_ON_CREATE if params.get(name) in (None, "")]
    if missing:
        raise EtsyApiError(400, f"Missing required parameter(s): {', '.join(missing)}")
    fields = _clean_fields(params)
    fields.pop("state", None)  # createDraftListing always creates a draft
    if "is_supply" not in fields:
        # Etsy: once who_made and when_made are given, is_supply must be given too.
        raise EtsyApiError(400, "is_supply is required when who_made and when_made are provided")
    if "shipping_profile_id" not in fields:
        raise EtsyApiError(400, "shipping_profile_id is required for physical listings")
    state = state_of(request)
    async with state.lock:
        now = int(state.clock.now())
        listing_id = state.new_id(1_500_000_000)
        fields.update(state="draft", created=now, updated=now)
        listing = EtsyListing(listing_id, shop_id, user_id, fields)
        state.etsy.listings[listing_id] = listing
        view = listing_view(listing)
    return JSONResponse(view, status_code=201)


@router.get(APPLICATION + "/shops/{shop_id}/listings")
async def get_listings_by_shop(
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
async def update_listing(shop_id: int, listing_id: int, request: Request, user_id: EtsyUser) -> JsonDict:
    """Change a listing's fields or state; activating needs an image and stock, as on Etsy."""
    params, _ = await read_params(request)
    fields = _clean_fields(params)
    state = state_of(request)
    async with state.lock:
        listing = _find_listing(state, listing_id, shop_id)
        target = fields.get("state")
        if target is not None:
            if target not in SETTABLE_STATES:
                raise EtsyApiError(400, "state must be one of: active, inactive")
            if target == "active":
                if not listing.images:
                    raise EtsyApiError(400, "Cannot activate a listing without at least one image.")
                quantity = fields["quantity"] if "quantity" in fields else listing.fields.get("quantity")
                if not isinstance(quantity, int) or quantity <= 0:
                    raise EtsyApiError(400, "Cannot activate a listing with a quantity of 0.")
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


@router.post(APPLICATION + "/shops/{shop_id}/listings/{listing_id}/images", status_code=201)
async def upload_listing_image(
    shop_id: int, listing_id: int, request: Request, user_id: EtsyUser
) -> JSONResponse:
    """Attach an uploaded file (multipart `image`) or an existing `listing_image_id` to a listing."""
    params, files = await read_params(request)
    data = files[0] if files else b""
    state = state_of(request)
    async with state.lock:
        listing = _find_listing(state, listing_id, shop_id)
        existing_id = params.get("listing_image_id")
        if existing_id is not None:
            for known in listing.images:
                if str(known["listing_image_id"]) == str(existing_id):
                    return JSONResponse(known, status_code=201)
        if not data:
            raise EtsyApiError(400, "Either a valid image file or a listing_image_id must be provided.")
        if len(listing.images) >= IMAGES_MAX:
            raise EtsyApiError(
                400,
                "Listings are only allowed 10 images. "
                "Please delete a ListingImage before trying to upload another.",
            )
        image_id = state.new_id(4_000_000_000)
        base = f"https://i.etsystatic.com/sandbox/{image_id}"
        image: JsonDict = {
            "listing_id": listing_id,
            "listing_image_id": image_id,
            "hex_code": None,
            "created_timestamp": int(state.clock.now()),
            "rank": len(listing.images) + 1,
            "url_75x75": f"{base}/il_75x75.jpg",
            "url_170x135": f"{base}/il_170x135.jpg",
            "url_570xN": f"{base}/il_570xN.jpg",
            "url_fullxfull": f"{base}/il_fullxfull.jpg",
            "full_height": None,
            "full_width": None,
            "alt_text": params.get("alt_text"),
            "byte_size": len(data),
        }
        listing.images.append(image)
    return JSONResponse(image, status_code=201)


@router.get(APPLICATION + "/listings/{listing_id}/images")
async def get_listing_images(listing_id: int, request: Request, user_id: EtsyUser) -> JsonDict:
    """List a listing's images."""
    images = _find_listing(state_of(request), listing_id).images
    return {"count": len(images), "results": list(images)}


# --- inventory (where real Etsy keeps SKU, price and quantity) -------------------------------------------


def _inventory_view(listing: EtsyListing) -> JsonDict:
    f = listing.fields
    skus = f.get("skus") or [""]
    price = f.get("price", 0.0)
    return {
        "products": [
            {
                "sku": sku,
                "is_deleted": False,
                "offerings": [
                    {
                        "quantity": f.get("quantity", 0),
                        "is_enabled": True,
                        "is_deleted": False,
                        "price": {"amount": round(price * 100), "divisor": 100, "currency_code": "EUR"},
                    }
                ],
                "property_values": [],
            }
            for sku in skus
        ],
        "price_on_property": [],
        "quantity_on_property": [],
        "sku_on_property": [],
        "listing": listing_view(listing),
    }


@router.get(APPLICATION + "/listings/{listing_id}/inventory")
async def get_listing_inventory(listing_id: int, request: Request, user_id: EtsyUser) -> JsonDict:
    """Return a listing's inventory (one product per SKU)."""
    return _inventory_view(_find_listing(state_of(request), listing_id))


@router.put(APPLICATION + "/listings/{listing_id}/inventory")
async def update_listing_inventory(listing_id: int, request: Request, user_id: EtsyUser) -> JsonDict:
    """Set SKU, price and quantity from `products[].offerings[]` (variations are not modelled)."""
    params, _ = await read_params(request)
    products = params.get("products")
    if not isinstance(products, list) or not products or not all(isinstance(p, dict) for p in products):
        raise EtsyApiError(400, "products must be a non-empty array")
    first_offerings = products[0].get("offerings")
    if (
        not isinstance(first_offerings, list)
        or not first_offerings
        or not isinstance(first_offerings[0], dict)
    ):
        raise EtsyApiError(400, "products[0].offerings must be a non-empty array")
    fields = _clean_fields(
        {"price": first_offerings[0].get("price"), "quantity": first_offerings[0].get("quantity")}
    )
    fields["skus"] = [str(p.get("sku")) for p in products if p.get("sku")]
    state = state_of(request)
    async with state.lock:
        listing = _find_listing(state, listing_id)
        listing.fields.update(fields)
        listing.fields["updated"] = int(state.clock.now())
        return _inventory_view(listing)


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
