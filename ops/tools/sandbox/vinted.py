"""Fake Vinted: the private web API the browser plugin calls with the member's session.

Shapes follow what public Vinted clients and scrapers record: a request without a session gets
`401 {"code": 100, "message": ..., "message_code": "invalid_authentication_token"}`; a refused item gets
`400 {"code": 99, "message_code": "validation_error", "errors": [{"field", "value"}]}` where `value` is the
human message; item bodies are `{"item": {...}}` with `catalog_id`, `brand_id`, `size_id`, `status_id`,
`package_size_id`, `color_ids`, `price`, `currency` and `assigned_photos: [{"id", "orientation"}]`;
successful answers carry `"code": 0`. The session is the `_vinted_fr_session` cookie (`access_token_web`
is accepted too); writes also need the `x-csrf-token` and `x-anon-id` headers the web app sends, and a
write whose `Origin` is not the site itself (an extension's service worker, another site) is refused
`403 invalid_origin`: only requests sent from a Vinted page pass. Each request's `Origin` is recorded.
"""

from __future__ import annotations

import json
import re
import secrets
import uuid
from http.cookies import CookieError, SimpleCookie
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.datastructures import Headers, UploadFile

from ops.tools.sandbox.faults import PlatformHooks
from ops.tools.sandbox.state import JsonDict, SandboxState, VintedItem, VintedSession, state_of

router = APIRouter(tags=["vinted"])

SESSION_COOKIES = ("_vinted_fr_session", "access_token_web")
STATUS_IDS = frozenset({1, 2, 3, 4, 5, 6})  # 6 new with tags, 1 new without, 2 very good, 3 good, 4 fair
COLORS_MAX = 2
PHOTOS_MAX = 20
TITLE_MAX = 100
DESCRIPTION_MAX = 2000
PER_PAGE_MAX = 96
MIN_PRICE = 1.0


class VintedApiError(Exception):
    """An error answer in Vinted's `{"code", "message", "message_code"}` shape."""

    def __init__(
        self, status: int, code: int, message: str, message_code: str, errors: list[JsonDict] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.message_code = message_code
        self.errors = errors

    def response(self) -> JSONResponse:
        """Render the error as Vinted would."""
        body: JsonDict = {"code": self.code, "message": self.message, "message_code": self.message_code}
        if self.errors is not None:
            body["errors"] = self.errors
            body["payload"] = {}
        return JSONResponse(body, status_code=self.status)


async def error_handler(request: Request, exc: Exception) -> Response:
    """Translate `VintedApiError` into its JSON answer."""
    assert isinstance(exc, VintedApiError)
    return exc.response()


def not_authenticated() -> VintedApiError:
    """The 401 Vinted gives to a request without a valid session."""
    return VintedApiError(401, 100, "Invalid authentication token", "invalid_authentication_token")


def validation_failed(errors: list[JsonDict]) -> VintedApiError:
    """The 400 Vinted gives to an item it refuses, one entry per field."""
    return VintedApiError(400, 99, "Validation error", "validation_error", errors)


def not_found(what: str) -> VintedApiError:
    """The 404 for an unknown, deleted or foreign item."""
    return VintedApiError(404, 404, f"{what} not found", "not_found")


# --- sessions -------------------------------------------------------------------------------------------


def _cookies(headers: Headers) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(headers.get("cookie", ""))
    except CookieError:
        return {}
    return {name: morsel.value for name, morsel in jar.items()}


def _session_cookie(headers: Headers) -> str | None:
    cookies = _cookies(headers)
    for name in SESSION_COOKIES:
        if cookies.get(name):
            return cookies[name]
    return None


def session_for(state: SandboxState, cookie: str) -> VintedSession:
    """Look a session cookie up; an unseen non-empty value logs in a new member (the sandbox is lenient)."""
    session = state.vinted.sessions.get(cookie)
    if session is None:
        session = VintedSession(user_id=state.new_member_id())
        state.vinted.sessions[cookie] = session
    return session


def create_session(state: SandboxState, user_id: int | None) -> JsonDict:
    """Log a member in: a session cookie, the CSRF token bound to it and an anon id (control API helper)."""
    cookie = secrets.token_urlsafe(32)
    csrf_token = str(uuid.uuid4())
    member = user_id or state.new_member_id()
    state.vinted.sessions[cookie] = VintedSession(user_id=member, csrf_token=csrf_token)
    return {
        "user_id": member,
        "cookies": {"_vinted_fr_session": cookie},
        "headers": {"x-csrf-token": csrf_token, "x-anon-id": str(uuid.uuid4())},
    }


def own_origin(request: Request) -> str:
    """The origin of the site as the browser addressed it: what a page of this site sends as `Origin`."""
    return f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"


async def current_member(request: Request) -> int:
    """Resolve the member from the session cookie; writes also need the CSRF and anon-id headers."""
    state = state_of(request)
    cookie = _session_cookie(request.headers)
    if cookie is None:
        raise not_authenticated()
    async with state.lock:
        session = session_for(state, cookie)
    if session.user_id is None:
        raise not_authenticated()
    if request.method not in {"GET", "HEAD"}:
        origin = request.headers.get("origin")
        if origin is not None and origin != own_origin(request):
            # A write from an extension's background (chrome-extension://...) or another site.
            raise VintedApiError(403, 106, "Invalid origin", "invalid_origin")
        csrf = request.headers.get("x-csrf-token")
        if not csrf or (session.csrf_token is not None and csrf != session.csrf_token):
            raise VintedApiError(403, 106, "Invalid CSRF token", "invalid_csrf_token")
        if not request.headers.get("x-anon-id"):
            raise VintedApiError(403, 106, "Missing anonymous id", "invalid_anon_id")
    return session.user_id


@router.get("/", response_class=HTMLResponse)
async def home(request: Request) -> HTMLResponse:
    """Serve the home page: it sets the session and anon_id cookies and carries the CSRF token."""
    state = state_of(request)
    cookie = _session_cookie(request.headers)
    async with state.lock:
        session = state.vinted.sessions.get(cookie or "")
        if cookie is None or session is None:
            cookie = secrets.token_urlsafe(32)
            session = VintedSession(user_id=None, csrf_token=str(uuid.uuid4()))
            state.vinted.sessions[cookie] = session
        if session.csrf_token is None:
            session.csrf_token = str(uuid.uuid4())
        csrf = session.csrf_token
    page = (
        "<!doctype html><html><head>"
        f'<meta name="csrf-token" content="{csrf}"><title>Vinted (sandbox)</title>'
        "</head><body></body></html>"
    )
    response = HTMLResponse(page)
    response.set_cookie("_vinted_fr_session", cookie, httponly=True, samesite="lax")
    response.set_cookie("anon_id", str(uuid.uuid4()), samesite="lax")
    return response


Member = Annotated[int, Depends(current_member)]


# --- photos ---------------------------------------------------------------------------------------------


@router.post("/api/v2/photos")
async def upload_photo(request: Request, user_id: Member) -> JsonDict:
    """Store a photo (multipart `photo[file]`, or a JSON body for clients that cannot send files)."""
    content_type = request.headers.get("content-type", "")
    temp_uuid: str | None = None
    size = 0
    if content_type.startswith("multipart/"):
        async with request.form() as form:
            upload = form.get("photo[file]") or form.get("file")
            if not isinstance(upload, UploadFile):
                raise validation_failed([{"field": "photo[file]", "value": "Photo is required"}])
            size = len(await upload.read())
            raw_uuid = form.get("photo[temp_uuid]")
            temp_uuid = raw_uuid if isinstance(raw_uuid, str) and raw_uuid else None
    else:
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            raise validation_failed([{"field": "photo", "value": "Invalid body"}]) from None
        photo = body.get("photo") if isinstance(body, dict) else None
        temp_uuid = photo.get("temp_uuid") if isinstance(photo, dict) else None
    if size == 0 and content_type.startswith("multipart/"):
        raise validation_failed([{"field": "photo[file]", "value": "Photo is empty"}])
    state = state_of(request)
    async with state.lock:
        photo_id = state.new_id(8_000_000_000)
        url = f"https://images1.vinted.net/sandbox/{photo_id}/f800/photo.jpeg"
        record: JsonDict = {
            "id": photo_id,
            "image_no": 1,
            "width": 600,
            "height": 800,
            "dominant_color": "#888888",
            "url": url,
            "full_size_url": url.replace("/f800/", "/full/"),
            "is_main": False,
            "thumbnails": [],
            "temp_uuid": temp_uuid,
            "is_suspicious": False,
            "orientation": None,
            "byte_size": size,
        }
        state.vinted.photos[photo_id] = record
        state.vinted.photo_owner[photo_id] = user_id
    return record


# --- items ----------------------------------------------------------------------------------------------


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _item_fields(state: SandboxState, user_id: int, body: Any) -> JsonDict:
    """Validate an item body like Vinted: collect every bad field, then refuse them all at once."""
    item = body.get("item") if isinstance(body, dict) else None
    if not isinstance(item, dict):
        raise validation_failed([{"field": "item", "value": "Item is required"}])
    errors: list[JsonDict] = []

    def bad(field: str, message: str) -> None:
        errors.append({"field": field, "value": message})

    title = item.get("title")
    if not isinstance(title, str) or not title.strip():
        bad("title", "Add a title")
    elif len(title) > TITLE_MAX:
        bad("title", f"The title must be at most {TITLE_MAX} characters")
    description = item.get("description")
    if not isinstance(description, str) or not description.strip():
        bad("description", "Add a description")
    elif len(description) > DESCRIPTION_MAX:
        bad("description", f"The description must be at most {DESCRIPTION_MAX} characters")
    catalog_id = _int_or_none(item.get("catalog_id"))
    if catalog_id is None or catalog_id <= 0:
        bad("catalog_id", "Select a category")
    status_id = _int_or_none(item.get("status_id"))
    if status_id not in STATUS_IDS:
        bad("status_id", "Select a condition")
    package_size_id = _int_or_none(item.get("package_size_id"))
    if package_size_id is None or package_size_id <= 0:
        bad("package_size_id", "Select a parcel size")
    brand_id = item.get("brand_id")
    if brand_id is not None and _int_or_none(brand_id) is None:
        bad("brand_id", "Select a brand")
    size_id = item.get("size_id")
    if size_id is not None and _int_or_none(size_id) is None:
        bad("size_id", "Select a size")
    color_ids = item.get("color_ids", [])
    if not isinstance(color_ids, list) or not all(_int_or_none(c) is not None for c in color_ids):
        bad("color_ids", "Select a colour")
    elif len(color_ids) > COLORS_MAX:
        bad("color_ids", f"Select at most {COLORS_MAX} colours")
    try:
        price = float(item.get("price"))  # type: ignore[arg-type]  # refused below when not numeric
    except (TypeError, ValueError):
        price = -1.0
    if price < MIN_PRICE:
        bad("price", f"The price must be at least {MIN_PRICE:.2f}")
    currency = item.get("currency", "EUR")
    if not isinstance(currency, str) or len(currency) != 3:
        bad("currency", "Invalid currency")
    photos = item.get("assigned_photos", item.get("photos"))
    photo_ids: list[int] = []
    if not isinstance(photos, list) or not photos:
        bad("assigned_photos", "Add at least one photo")
    elif len(photos) > PHOTOS_MAX:
        bad("assigned_photos", f"Add at most {PHOTOS_MAX} photos")
    else:
        for photo in photos:
            photo_id = _int_or_none(photo.get("id")) if isinstance(photo, dict) else None
            if photo_id is None or state.vinted.photo_owner.get(photo_id) != user_id:
                bad("assigned_photos", f"Photo {photo_id} does not exist")
                break
            photo_ids.append(photo_id)
    if errors:
        raise validation_failed(errors)
    return {
        "title": title,
        "description": description,
        "catalog_id": catalog_id,
        "brand_id": _int_or_none(brand_id),
        "brand": item.get("brand"),
        "size_id": _int_or_none(size_id),
        "status_id": status_id,
        "package_size_id": package_size_id,
        "color_ids": [int(c) for c in color_ids],
        "price": round(price, 2),
        "currency": currency,
        "photo_ids": photo_ids,
        "is_unisex": bool(item.get("is_unisex", False)),
        "item_attributes": item.get("item_attributes", []),
        "measurement_length": item.get("measurement_length"),
        "measurement_width": item.get("measurement_width"),
    }


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60] or "item"


def item_view(state: SandboxState, item: VintedItem) -> JsonDict:
    """Render an item as the item_upload and wardrobe endpoints return it."""
    f = item.fields
    path = f"/items/{item.item_id}-{_slug(f['title'])}"
    photos = [state.vinted.photos[p] for p in f["photo_ids"] if p in state.vinted.photos]
    return {
        "id": item.item_id,
        "user_id": item.user_id,
        "title": f["title"],
        "description": f["description"],
        "catalog_id": f["catalog_id"],
        "brand_id": f["brand_id"],
        "brand_title": f.get("brand") or "",
        "size_id": f["size_id"],
        "size_title": f.get("size_title") or "",
        "status_id": f["status_id"],
        "package_size_id": f["package_size_id"],
        "color_ids": f["color_ids"],
        "is_unisex": f["is_unisex"],
        "price": {"amount": f"{f['price']:.2f}", "currency_code": f["currency"]},
        "currency": f["currency"],
        "photos": photos,
        "photo": photos[0] if photos else None,
        "path": path,
        "url": f"https://www.vinted.fr{path}",
        "is_draft": False,
        "is_closed": item.deleted,
        "is_hidden": False,
        "is_reserved": False,
        "item_closing_action": "deleted" if item.deleted else None,
        "view_count": 0,
        "favourite_count": 0,
        "created_at_ts": int(item.created_at),
        "updated_at_ts": int(item.updated_at),
    }


async def _json(request: Request) -> Any:
    try:
        return json.loads(await request.body() or b"null")
    except ValueError:
        raise validation_failed([{"field": "item", "value": "Invalid JSON body"}]) from None


def _own_item(state: SandboxState, item_id: int, user_id: int) -> VintedItem:
    item = state.vinted.items.get(item_id)
    if item is None or item.deleted or item.user_id != user_id:
        raise not_found("Item")
    return item


@router.post("/api/v2/item_upload/items")
async def create_item(request: Request, user_id: Member) -> JsonDict:
    """List a new item; the answer is `{"item": {...id, url...}, "code": 0}`."""
    body = await _json(request)
    state = state_of(request)
    async with state.lock:
        fields = _item_fields(state, user_id, body)
        now = state.clock.now()
        item = VintedItem(state.new_id(4_000_000_000), user_id, fields, created_at=now, updated_at=now)
        state.vinted.items[item.item_id] = item
        return {"item": item_view(state, item), "code": 0}


@router.get("/api/v2/item_upload/items/{item_id}")
async def get_item(item_id: int, request: Request, user_id: Member) -> JsonDict:
    """Return one of the member's items."""
    state = state_of(request)
    return {"item": item_view(state, _own_item(state, item_id, user_id)), "code": 0}


@router.put("/api/v2/item_upload/items/{item_id}")
async def update_item(item_id: int, request: Request, user_id: Member) -> JsonDict:
    """Replace an item with a full payload, as the edit form does."""
    body = await _json(request)
    state = state_of(request)
    async with state.lock:
        item = _own_item(state, item_id, user_id)
        item.fields = _item_fields(state, user_id, body)
        item.updated_at = state.clock.now()
        return {"item": item_view(state, item), "code": 0}


@router.post("/api/v2/items/{item_id}/delete")
async def delete_item(item_id: int, request: Request, user_id: Member) -> JsonDict:
    """Delete an item; deleting it again is a 404."""
    state = state_of(request)
    async with state.lock:
        item = _own_item(state, item_id, user_id)
        item.deleted = True
        item.updated_at = state.clock.now()
    return {"code": 0}


@router.get("/api/v2/wardrobe/{member_id}/items")
async def wardrobe(
    member_id: int,
    request: Request,
    user_id: Member,
    page: int = 1,
    per_page: int = 20,
    order: str = "relevance",
) -> JsonDict:
    """Page through a member's live items, newest first."""
    per_page = max(1, min(per_page, PER_PAGE_MAX))
    page = max(1, page)
    state = state_of(request)
    items = sorted(
        (i for i in state.vinted.items.values() if i.user_id == member_id and not i.deleted),
        key=lambda i: (i.created_at, i.item_id),
        reverse=True,
    )
    chunk = items[(page - 1) * per_page : page * per_page]
    total_pages = max(1, -(-len(items) // per_page))
    return {
        "items": [item_view(state, i) for i in chunk],
        "pagination": {
            "current_page": page,
            "total_pages": total_pages,
            "total_entries": len(items),
            "per_page": per_page,
            "time": int(state.clock.now()),
        },
        "code": 0,
    }


# --- inspection and fault hooks -------------------------------------------------------------------------


def inspect(state: SandboxState, user_id: int | None = None) -> JsonDict:
    """Describe each member's items (deleted ones included, flagged by `is_closed`)."""
    users: dict[str, JsonDict] = {}
    for item in state.vinted.items.values():
        if user_id is not None and item.user_id != user_id:
            continue
        users.setdefault(str(item.user_id), {"items": []})["items"].append(item_view(state, item))
    return {"users": users}


def _account_of(state: SandboxState, headers: Headers) -> str | None:
    cookie = _session_cookie(headers)
    session = state.vinted.sessions.get(cookie or "")
    if session is None and cookie is not None:
        session = session_for(state, cookie)  # so that even a refused first request is counted for its member
    return str(session.user_id) if session is not None and session.user_id is not None else None


def _rate_limited(retry_after: int) -> Response:
    response = VintedApiError(429, 429, "Too many requests", "too_many_requests").response()
    response.headers["Retry-After"] = str(retry_after)
    return response


def _server_error(status: int) -> Response:
    if status == 500:
        return VintedApiError(500, 500, "Internal server error", "internal_server_error").response()
    # Gateway errors come from the CDN in front of Vinted, as HTML rather than JSON.
    return HTMLResponse(
        f"<html><head><title>{status}</title></head><body>Error {status}</body></html>", status
    )


def _antibot(mode: str) -> Response:
    if mode == "cloudflare":
        page = (
            '<!DOCTYPE html><html lang="en-US"><head><title>Just a moment...</title></head>'
            "<body><noscript>Enable JavaScript and cookies to continue</noscript>"
            '<script src="/cdn-cgi/challenge-platform/h/g/orchestrate/chl_page/v1"></script></body></html>'
        )
        return HTMLResponse(page, 403, headers={"cf-mitigated": "challenge", "server": "cloudflare"})
    cid = secrets.token_urlsafe(24)
    captcha = (
        "https://geo.captcha-delivery.com/captcha/?initialCid="
        f"{secrets.token_urlsafe(16)}&cid={cid}&referer=https%3A%2F%2Fwww.vinted.fr%2F&t=fe&s=35585"
    )
    return JSONResponse(
        {"url": captcha},
        403,
        headers={"x-datadome": "protected", "x-dd-b": "1", "set-cookie": f"datadome={cid}; Path=/; Secure"},
    )


HOOKS = PlatformHooks(
    account_of=_account_of,
    rate_limited=_rate_limited,
    server_error=_server_error,
    expire_token=lambda state, headers: False,
    token_expired=lambda: not_authenticated().response(),
    antibot=_antibot,
)
