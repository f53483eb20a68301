"""Assemble the sandbox: the three fake marketplaces behind the fault middleware, plus the control API.

The control API (`/_sandbox/...`) is how tests drive the sandbox: reset it, create accounts and sessions,
inspect what each marketplace holds and how often it was called, move its clock, and arm faults. It is
never counted nor faulted itself.
"""

from __future__ import annotations

from collections import Counter

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from ops.tools.sandbox import ebay, etsy, sales, seller_actions, vinted
from ops.tools.sandbox.faults import FaultBook, FaultMiddleware, FaultSpec, platform_of
from ops.tools.sandbox.state import JsonDict, Platform, RequestRecord, SandboxState

CONTROL = "/_sandbox"


class ClockAdvance(BaseModel):
    """Body of `POST /_sandbox/clock/advance`."""

    seconds: float = Field(gt=0)


class EbayAccountRequest(BaseModel):
    """Body of `POST /_sandbox/ebay/accounts`."""

    account_id: str | None = None


class EtsyAccountRequest(BaseModel):
    """Body of `POST /_sandbox/etsy/accounts`."""

    user_id: int | None = None
    shop_id: int | None = None
    #: The shop's country: outside the EU its physical listings need a return policy to go live.
    country_iso: str = Field("FR", pattern=r"^[A-Z]{2}$")


class StrictnessRequest(BaseModel):
    """Body of `PUT /_sandbox/strictness`."""

    strict: bool


class VintedSessionRequest(BaseModel):
    """Body of `POST /_sandbox/vinted/sessions`."""

    user_id: int | None = None


class RevokeRequest(BaseModel):
    """Body of the refresh-token revocation endpoints."""

    refresh_token: str


def _select(
    records: list[RequestRecord],
    platform: Platform | None,
    account: str | None,
    method: str | None,
    path_prefix: str | None,
    since: float | None,
    until: float | None,
) -> list[RequestRecord]:
    """Filter the request log; `since` is inclusive and `until` exclusive, both sandbox epoch seconds."""
    return [
        r
        for r in records
        if (platform is None or r.platform == platform)
        and (account is None or r.account == account)
        and (method is None or r.method == method.upper())
        and (path_prefix is None or r.path.startswith(path_prefix))
        and (since is None or r.at >= since)
        and (until is None or r.at < until)
    ]


def _control_router(state: SandboxState, faults: FaultBook) -> APIRouter:
    router = APIRouter(prefix=CONTROL, tags=["sandbox control"])

    @router.post("/reset")
    async def reset() -> JsonDict:
        """Forget all marketplace state, request records, faults and clock offset."""
        async with state.lock:
            state.reset()
            faults.clear()
        return {"ok": True}

    @router.get("/state")
    async def whole_state() -> JsonDict:
        """Everything each fake marketplace holds."""
        async with state.lock:
            return {
                "ebay": ebay.inspect(state),
                "etsy": etsy.inspect(state),
                "vinted": vinted.inspect(state),
                "orders": sales.inspect(state),
            }

    @router.get("/ebay/listings")
    async def ebay_listings(account: str | None = None) -> JsonDict:
        """eBay inventory items, offers and listings per seller and SKU."""
        async with state.lock:
            return ebay.inspect(state, account)

    @router.get("/etsy/listings")
    async def etsy_listings(shop_id: int | None = None) -> JsonDict:
        """Etsy listings per shop, also grouped by SKU."""
        async with state.lock:
            return etsy.inspect(state, shop_id)

    @router.get("/vinted/items")
    async def vinted_items(user_id: int | None = None) -> JsonDict:
        """Vinted items per member."""
        async with state.lock:
            return vinted.inspect(state, user_id)

    @router.get("/requests")
    async def requests(
        platform: Platform | None = None,
        account: str | None = None,
        method: str | None = None,
        path_prefix: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> JsonDict:
        """The request log, oldest first, filtered."""
        async with state.lock:
            chosen = _select(state.requests, platform, account, method, path_prefix, since, until)
            return {"count": len(chosen), "requests": [r.to_json() for r in chosen]}

    @router.get("/requests/counts")
    async def request_counts(
        platform: Platform | None = None,
        account: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> JsonDict:
        """Request counts per platform, per endpoint and per account."""
        async with state.lock:
            chosen = _select(state.requests, platform, account, None, None, since, until)
        by_endpoint: dict[str, Counter[str]] = {}
        by_account: dict[str, Counter[str]] = {}
        for r in chosen:
            by_endpoint.setdefault(r.platform, Counter())[r.endpoint or f"{r.method} {r.path}"] += 1
            by_account.setdefault(r.platform, Counter())[r.account or "anonymous"] += 1
        return {
            "total": len(chosen),
            "by_platform": dict(Counter(r.platform for r in chosen)),
            "by_endpoint": {p: dict(c) for p, c in by_endpoint.items()},
            "by_account": {p: dict(c) for p, c in by_account.items()},
        }

    @router.post("/faults", status_code=201)
    async def add_fault(spec: FaultSpec) -> JsonDict:
        """Arm a fault; it fires on the next matching requests."""
        async with state.lock:
            return faults.add(spec).to_json()

    @router.get("/faults")
    async def list_faults() -> JsonDict:
        """The armed faults with what is left of them."""
        async with state.lock:
            return {"faults": [rule.to_json() for rule in faults.rules]}

    @router.delete("/faults", status_code=204)
    async def clear_faults(platform: Platform | None = None) -> Response:
        """Disarm every fault, or those of one platform."""
        async with state.lock:
            faults.clear(platform)
        return Response(status_code=204)

    @router.get("/clock")
    async def clock() -> JsonDict:
        """The sandbox's current time (epoch seconds), the reference for `since`/`until`."""
        return {"now": state.clock.now(), "offset_seconds": state.clock.offset_seconds}

    @router.post("/clock/advance")
    async def advance_clock(body: ClockAdvance) -> JsonDict:
        """Move the sandbox clock forward, e.g. past a token's expiry."""
        async with state.lock:
            state.clock.advance(body.seconds)
        return {"now": state.clock.now(), "offset_seconds": state.clock.offset_seconds}

    @router.post("/ebay/accounts", status_code=201)
    async def new_ebay_account(body: EbayAccountRequest) -> JsonDict:
        """Create an eBay seller with a refresh token and a live access token."""
        async with state.lock:
            return ebay.create_account(state, body.account_id)

    @router.post("/ebay/revoke")
    async def revoke_ebay(body: RevokeRequest) -> JsonDict:
        """Make a refresh token fail with invalid_grant, and end the access tokens of its seller."""
        async with state.lock:
            state.ebay.revoked_refresh_tokens.add(body.refresh_token)
            account = state.ebay.refresh_tokens.get(body.refresh_token)
            for token in state.ebay.access_tokens.values():
                if account is not None and token.account == account:
                    token.revoked = True
        return {"ok": True}

    @router.post("/etsy/accounts", status_code=201)
    async def new_etsy_account(body: EtsyAccountRequest) -> JsonDict:
        """Create an Etsy user and shop with live tokens."""
        async with state.lock:
            return etsy.create_account(state, body.user_id, body.shop_id, body.country_iso)

    @router.get("/etsy/refreshes")
    async def etsy_refreshes() -> JsonDict:
        """How many refresh-token grants Etsy served (each one rotated the refresh token)."""
        async with state.lock:
            return {"count": state.etsy.refreshes}

    @router.put("/strictness")
    async def set_strictness(body: StrictnessRequest) -> JsonDict:
        """Strict (the default): contract violations are refused. Lenient: they are only logged."""
        async with state.lock:
            state.strict = body.strict
        return {"strict": state.strict}

    @router.post("/etsy/revoke")
    async def revoke_etsy(body: RevokeRequest) -> JsonDict:
        """Make an Etsy refresh token fail with invalid_grant."""
        async with state.lock:
            state.etsy.revoked_refresh_tokens.add(body.refresh_token)
        return {"ok": True}

    @router.post("/vinted/sessions", status_code=201)
    async def new_vinted_session(body: VintedSessionRequest) -> JsonDict:
        """Log a Vinted member in: the cookies and headers a plugin request must carry."""
        async with state.lock:
            return vinted.create_session(state, body.user_id)

    return router


async def _validation_error(request: Request, exc: Exception) -> Response:
    """Answer FastAPI's own parameter errors in the shape of the platform that was called."""
    assert isinstance(exc, RequestValidationError)
    problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
    platform = platform_of(request.url.path)
    if platform == "ebay":
        return ebay.invalid_request("; ".join(problems)).response()
    if platform == "etsy":
        return etsy.EtsyApiError(400, "; ".join(problems)).response()
    if platform == "vinted":
        return vinted.validation_failed([{"field": "request", "value": p} for p in problems]).response()
    return JSONResponse({"detail": jsonable_encoder(exc.errors())}, status_code=422)


def create_sandbox_app(
    *,
    strict: bool = True,
    allow_http_images: bool = False,
    webhook_url: str | None = None,
    etsy_webhook_secret: str | None = None,
) -> FastAPI:
    """Build a fresh sandbox with empty state and no faults; `strict=False` only logs contract violations.

    `allow_http_images` accepts plain-http picture URLs from any host (only loopback ones otherwise).
    `webhook_url`: where the sandbox sends marketplace webhooks (the gateway's base URL; None: none sent).
    """
    state = SandboxState(strict=strict, allow_http_images=allow_http_images)
    faults = FaultBook()
    app = FastAPI(
        title="Stoflow marketplace sandbox",
        docs_url=f"{CONTROL}/docs",
        openapi_url=f"{CONTROL}/openapi.json",
        redoc_url=None,
    )
    app.state.sandbox = state
    app.state.faults = faults
    app.state.webhooks = sales.WebhookConfig(url=webhook_url)
    if etsy_webhook_secret:
        app.state.webhooks.etsy_secret = etsy_webhook_secret
    app.include_router(_control_router(state, faults))
    app.include_router(seller_actions.router)
    app.include_router(sales.control)
    app.include_router(sales.router)
    app.include_router(ebay.router)
    app.include_router(etsy.router)
    app.include_router(vinted.router)
    app.add_exception_handler(ebay.EbayApiError, ebay.error_handler)
    app.add_exception_handler(ebay.OAuthRefusal, ebay.oauth_refusal_handler)
    app.add_exception_handler(etsy.EtsyApiError, etsy.error_handler)
    app.add_exception_handler(vinted.VintedApiError, vinted.error_handler)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_middleware(
        FaultMiddleware,
        state=state,
        faults=faults,
        hooks={"ebay": ebay.HOOKS, "etsy": etsy.HOOKS, "vinted": vinted.HOOKS},
        # The platform routers carry full paths and no prefix, so their routes can be matched directly.
        routes=[*ebay.router.routes, *etsy.router.routes, *vinted.router.routes, *sales.router.routes],
    )
    return app
