"""GET /ops: the operator console, server-rendered (Jinja2) and refreshed by htmx.

The page logs in with an operator account through the same login as `POST /api/auth/login`; the access
token then lives in an HttpOnly, SameSite=Strict cookie scoped to /ops (never in a URL, never readable by
script). Commands (retry, log out) are POSTs that must carry htmx's `HX-Request` header or come from the
page's own form: a cross-site page can send neither that header nor the cookie. Assets are served by the
app itself; the Content-Security-Policy allows scripts and styles from this origin only.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from domain.errors import DomainError
from gateway.console.charts import budget_bar, sparkline
from gateway.console.figures import read_budgets, read_overview
from gateway.console.jobs import recent_failures, retry_as_operator
from gateway.dependencies import PublicSession, Services, UnitOfWorkRoute, claims_of
from gateway.problems import ProblemError
from gateway.routers.auth import login as api_login
from gateway.schemas.auth import LoginRequest
from gateway.services import GatewayServices
from gateway.tokens import OPERATOR_ROLE, AccessClaims
from persistence import accounts

router = APIRouter(prefix="/ops", tags=["console"], route_class=UnitOfWorkRoute, include_in_schema=False)

COOKIE = "stoflow_ops"
#: Seconds between two refreshes of the live panel.
REFRESH_SECONDS = 2
#: Failures shown on the page.
FAILURES_SHOWN = 20
_PACKAGE = resources.files("gateway.console")
templates = Jinja2Templates(directory=str(Path(str(_PACKAGE)) / "templates"))
_ASSETS = {"htmx.min.js": "text/javascript", "ops.css": "text/css"}


def _token(request: Request) -> str | None:
    cookie = request.cookies.get(COOKIE)
    if cookie:
        return cookie
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def _operator(
    request: Request, services: GatewayServices, session: PublicSession
) -> AccessClaims | None:
    """The signed-in operator, None without a (valid) session; 403 `forbidden` for a tenant's token."""
    token = _token(request)
    if token is None:
        return None
    try:
        claims = await claims_of(token, services, session)
    except ProblemError:
        return None
    if claims.role != OPERATOR_ROLE:
        raise ProblemError(403, "forbidden", "The console is for operators.")
    return claims


def _ago(moment: float, now: float) -> str:
    seconds = max(int(now - moment), 0)
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h ago"


async def _panel_context(services: GatewayServices, session: PublicSession) -> dict[str, Any]:
    now = time.time()
    overview = await read_overview(services.redis)
    budgets = await read_budgets(session, services.redis, services.settings)
    failures = await recent_failures(services, session, limit=FAILURES_SHOWN)
    return {
        "pools": [
            {
                "figures": pool,
                "depth": sparkline(pool.depth_history),
                "throughput": sparkline(pool.throughput_history),
            }
            for pool in overview.pools
        ],
        "counted_at": overview.counted_at,
        "workers": [{"beat": beat, "ago": _ago(beat.last_beat, now)} for beat in overview.workers],
        "budgets": [{"budget": budget, "bar": budget_bar(budget.used, budget.limit)} for budget in budgets],
        "failures": failures,
        "now": datetime.fromtimestamp(now, UTC),
    }


def _page(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    return templates.TemplateResponse(
        request, name, {"refresh_seconds": REFRESH_SECONDS, **context}, status_code=status_code
    )


@router.get("", response_class=HTMLResponse)
async def console(request: Request, services: Services, session: PublicSession) -> HTMLResponse:
    """The console, or its login form without an operator's session."""
    if await _operator(request, services, session) is None:
        return _page(request, "login.html", {"error": None})
    return _page(request, "console.html", await _panel_context(services, session))


@router.get("/panel", response_class=HTMLResponse)
async def panel(request: Request, services: Services, session: PublicSession) -> HTMLResponse:
    """The live part of the page, fetched by htmx every few seconds."""
    if await _operator(request, services, session) is None:
        # The session ended (logged out, expired): have htmx reload the page, which shows the login form.
        return HTMLResponse("", status_code=401, headers={"HX-Refresh": "true"})
    return _page(request, "panel.html", await _panel_context(services, session))


@router.post("/login", response_class=HTMLResponse)
async def log_in(
    request: Request,
    services: Services,
    session: PublicSession,
    email: Annotated[str, Form(max_length=320)],
    password: Annotated[str, Form(max_length=200)],
) -> Response:
    """Log an operator in through the API's own login, then keep its token in an HttpOnly cookie."""
    try:
        tokens = await api_login(
            LoginRequest(email=email, password=password), request, services, session, "web"
        )
        claims = await claims_of(tokens.access_token, services, session)
    except (DomainError, ProblemError, ValueError) as error:
        message = error.detail if isinstance(error, ProblemError) else "The email or the password is wrong."
        return _page(request, "login.html", {"error": message}, status_code=401)
    if claims.role != OPERATOR_ROLE:
        # Rolled back with the answer: no login session is left behind for a reseller.
        return _page(
            request, "login.html", {"error": "The console is for operator accounts."}, status_code=403
        )
    response = RedirectResponse("/ops", status_code=303)
    response.set_cookie(
        COOKIE,
        tokens.access_token,
        max_age=tokens.expires_in,
        path="/ops",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


def _require_htmx(request: Request) -> None:
    if request.headers.get("HX-Request") != "true":
        raise ProblemError(403, "forbidden", "Console commands come from the console page.")


@router.post("/logout")
async def log_out(request: Request, services: Services, session: PublicSession) -> Response:
    """End the console's login (its token dies with it) and clear the cookie."""
    token = _token(request)
    if token is not None:
        try:
            claims = await claims_of(token, services, session)
        except ProblemError:
            claims = None
        if claims is not None:
            await accounts.revoke_login_chain(session, claims.session_id)
    response = RedirectResponse("/ops", status_code=303)
    response.delete_cookie(COOKIE, path="/ops")
    return response


@router.post("/jobs/{tenant_id}/{job_id}/retry", response_class=HTMLResponse)
async def retry(
    request: Request, services: Services, session: PublicSession, tenant_id: int, job_id: str
) -> HTMLResponse:
    """The retry button: the tenant's own retry, then a short note in place of the button."""
    _require_htmx(request)
    operator = await _operator(request, services, session)
    if operator is None:
        raise ProblemError(401, "not_authenticated", "Log in to the console first.")
    try:
        job = await retry_as_operator(services, session, operator.user_id, tenant_id, job_id)
    except (DomainError, ProblemError) as error:
        message = error.detail if isinstance(error, ProblemError) else str(error)
        # 200 with the reason (htmx swaps only successful answers), and nothing of the attempt kept.
        await session.rollback()
        return _page(request, "retry_note.html", {"ok": False, "message": message})
    return _page(request, "retry_note.html", {"ok": True, "message": f"Retrying: {job.status}."})


@router.get("/static/{name}")
async def asset(name: str) -> Response:
    """The console's own assets (vendored htmx, the stylesheet)."""
    media_type = _ASSETS.get(name)
    if media_type is None:
        raise ProblemError(404, "not_found", "No such asset.")
    body = (_PACKAGE / "static" / name).read_bytes()
    return Response(body, media_type=media_type, headers={"Cache-Control": "public, max-age=3600"})
