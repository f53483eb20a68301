"""Pure ASGI middleware: request context + summary log + metrics, security headers, body size limit."""

from __future__ import annotations

import time
import uuid

import structlog
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import metrics
from gateway.problems import problem_response

log = structlog.get_logger("stoflow.request")

_SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]
# The API serves JSON only; the interactive docs page needs the CDN assets FastAPI links to.
_API_CSP = b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
_DOCS_CSP = (
    b"default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    b"style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    b"img-src 'self' data: https://fastapi.tiangolo.com; "
    b"frame-ancestors 'none'"
)
# The operator console: its own scripts and styles only, no inline code, forms and fetches to itself.
_CONSOLE_CSP = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HSTS = (b"strict-transport-security", b"max-age=63072000; includeSubDomains")


class RequestContextMiddleware:
    """Bind a request id, then log one summary line and count the request when it ends."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if 0 < len(incoming) <= 64 and incoming.isprintable() else uuid.uuid4().hex
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            metrics.record_http_request(scope["method"], template, status, elapsed)
            log.info(
                "request",
                method=scope["method"],
                path=scope["path"],
                route=template,
                status=status,
                duration_ms=round(elapsed * 1000, 1),
            )


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        is_docs = scope["path"] in {"/docs", "/redoc"}
        is_console = scope["path"] == "/ops" or scope["path"].startswith("/ops/")
        policy = _DOCS_CSP if is_docs else _CONSOLE_CSP if is_console else _API_CSP
        behind_https = scope.get("scheme") == "https" or (
            dict(scope["headers"]).get(b"x-forwarded-proto") == b"https"
        )

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(name, value) for name, value in _SECURITY_HEADERS if name not in present]
                headers.append((b"content-security-policy", policy))
                if behind_https:
                    headers.append(_HSTS)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


class ErrorBoundaryMiddleware:
    """Answer an unhandled exception with a 500 problem document inside the other middleware.

    Starlette's own last-resort handler sits outside every middleware, so its answer would lack the
    request id and the security headers.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        response_started = False

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as error:
            if response_started:
                raise
            log.error("unhandled_error", exc_info=error)
            response = problem_response(500, "internal_error", "Something went wrong on our side.")
            await response(scope, receive, send)


class _BodyTooLarge(HTTPException):
    # An HTTPException, so FastAPI re-raises it from its body reader instead of answering 400.
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"The request body is larger than {limit} bytes.")


class BodyLimitMiddleware:
    """Refuse bodies over the limit with 413 `too_large`, whether Content-Length says so or not."""

    def __init__(self, app: ASGIApp, *, json_limit: int, multipart_limit: int) -> None:
        self.app = app
        self.json_limit = json_limit
        self.multipart_limit = multipart_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        is_multipart = headers.get(b"content-type", b"").startswith(b"multipart/form-data")
        limit = self.multipart_limit if is_multipart else self.json_limit
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(scope, receive, send, limit)
            return
        received = 0
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            if response_started:
                raise
            await self._refuse(scope, receive, send, limit)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        response = problem_response(413, "too_large", f"The request body is larger than {limit} bytes.")
        await response(scope, receive, send)
