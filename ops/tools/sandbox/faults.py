"""Fault rules and the ASGI middleware that sits in front of every fake marketplace.

The middleware does two things for each marketplace request, in this order: it writes the request to the
log (so counts include requests that were then failed on purpose, as a real rate limiter would), then it
applies the first matching fault rule. Fault responses use each platform's own error body, supplied by the
platform module through `PlatformHooks`, so a client sees what it would see from the real service.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import httpx
from pydantic import BaseModel, Field, model_validator
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ops.tools.sandbox.state import Platform, RequestRecord, SandboxState

FaultKind = Literal[
    "latency",  # delay every matching request (fixed, or uniform between delay and max_delay)
    "rate_limit",  # answer 429 with Retry-After
    "server_error",  # answer a 5xx in the platform's shape
    "timeout",  # hold the request `delay_seconds`, then 504 without doing the work
    "antibot",  # Vinted only: a 403 Datadome/Cloudflare challenge instead of JSON
    "response_lost",  # do the write, then hide the answer (502, dropped connection, or hang then 504)
    "token_expired",  # eBay/Etsy: expire the presented access token and answer 401
]

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class FaultSpec(BaseModel):
    """A fault as the control API accepts it."""

    platform: Platform
    kind: FaultKind
    path_prefix: str = ""
    methods: list[str] | None = None
    #: how many matching requests to fail; None means until the fault is cleared
    count: int | None = Field(default=1, ge=1)
    delay_seconds: float = Field(default=0.0, ge=0)
    max_delay_seconds: float | None = Field(default=None, ge=0)
    status: int = Field(default=503, ge=500, le=599)
    retry_after: int = Field(default=1, ge=0)
    #: response_lost: "502" | "drop" | "hang"; antibot: "datadome" | "cloudflare"
    mode: str | None = None

    @model_validator(mode="after")
    def _check_platform_and_mode(self) -> FaultSpec:
        if self.kind == "antibot" and self.platform != "vinted":
            raise ValueError("antibot challenges exist only on vinted")
        if self.kind == "token_expired" and self.platform == "vinted":
            raise ValueError("token_expired applies to ebay and etsy bearer tokens")
        allowed_modes = {
            "response_lost": {None, "502", "drop", "hang"},
            "antibot": {None, "datadome", "cloudflare"},
        }.get(self.kind, {None})
        if self.mode not in allowed_modes:
            raise ValueError(f"mode {self.mode!r} is not valid for {self.kind}")
        if self.max_delay_seconds is not None and self.max_delay_seconds < self.delay_seconds:
            raise ValueError("max_delay_seconds must be at least delay_seconds")
        return self


@dataclass
class FaultRule:
    """An active fault; `remaining` counts down as matching requests are failed."""

    rule_id: int
    spec: FaultSpec
    remaining: int | None
    fired: int = 0

    def matches(self, platform: Platform, method: str, path: str) -> bool:
        """Tell whether this rule applies to a request."""
        spec = self.spec
        if spec.platform != platform or not path.startswith(spec.path_prefix):
            return False
        methods = {m.upper() for m in spec.methods} if spec.methods else None
        if methods is None and spec.kind == "response_lost":
            # Losing the answer to a read proves nothing; by default only writes lose theirs.
            methods = set(WRITE_METHODS)
        return methods is None or method in methods

    def to_json(self) -> dict[str, object]:
        """Render the rule for the control API."""
        return {
            "id": self.rule_id,
            "remaining": self.remaining,
            "fired": self.fired,
            **self.spec.model_dump(),
        }


@dataclass
class FaultBook:
    """The active fault rules, in the order they were added."""

    rules: list[FaultRule] = field(default_factory=list)
    _next_id: int = 1

    def add(self, spec: FaultSpec) -> FaultRule:
        """Activate a fault."""
        rule = FaultRule(self._next_id, spec, spec.count)
        self._next_id += 1
        self.rules.append(rule)
        return rule

    def clear(self, platform: Platform | None = None) -> None:
        """Remove every fault, or those of one platform."""
        self.rules = [r for r in self.rules if platform is not None and r.spec.platform != platform]

    def consume(self, rule: FaultRule) -> None:
        """Count one firing and retire the rule when it is used up."""
        rule.fired += 1
        if rule.remaining is not None:
            rule.remaining -= 1
            if rule.remaining <= 0:
                self.rules.remove(rule)


@dataclass(frozen=True)
class PlatformHooks:
    """What the middleware needs from a platform module to attribute requests and shape fault answers."""

    #: the account a request acts for (eBay account id, Etsy user id, Vinted user id), or None
    account_of: Callable[[SandboxState, Headers], str | None]
    rate_limited: Callable[[int], Response]
    server_error: Callable[[int], Response]
    #: expire the bearer token presented in the headers; False when the request carries none
    expire_token: Callable[[SandboxState, Headers], bool]
    token_expired: Callable[[], Response]
    antibot: Callable[[str], Response] | None = None


def platform_of(path: str) -> Platform | None:
    """Name the fake marketplace a path belongs to; None for the control API and unknown paths."""
    if path.startswith(("/identity/", "/sell/")):
        return "ebay"
    if path.startswith("/v3/"):
        return "etsy"
    if path == "/" or path.startswith("/api/v2/"):
        return "vinted"
    return None


class ResponseLostError(httpx.RemoteProtocolError):
    """Raised after the response started so the connection ends mid-answer.

    Under uvicorn this aborts the connection; through `httpx.ASGITransport` the client receives this
    exception, which is the same type httpx raises when a real server drops the connection.
    """


class FaultMiddleware:
    """Record each marketplace request, then apply the first matching fault rule."""

    def __init__(
        self,
        app: ASGIApp,
        state: SandboxState,
        faults: FaultBook,
        hooks: dict[Platform, PlatformHooks],
        routes: Sequence[BaseRoute],
    ) -> None:
        self.app = app
        self.state = state
        self.faults = faults
        self.hooks = hooks
        # The app's live route list, so faulted requests are still counted under their route template.
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        platform = platform_of(path)
        if platform is None:
            await self.app(scope, receive, send)
            return
        hooks = self.hooks[platform]
        headers = Headers(scope=scope)
        method: str = scope["method"]
        async with self.state.lock:
            record = self.state.record(
                RequestRecord(
                    platform=platform,
                    method=method,
                    path=path,
                    account=hooks.account_of(self.state, headers),
                    at=self.state.clock.now(),
                    endpoint=self._endpoint(scope),
                    origin=headers.get("origin"),
                )
            )
            latencies, rule = self._pick_rules(platform, method, path, headers, hooks)
        # The route notes contract violations on the record (ops/tools/sandbox/contract.py).
        scope.setdefault("state", {})["sandbox_record"] = record
        for delay in latencies:
            await asyncio.sleep(delay)
        if rule is not None:
            record.fault = rule.spec.kind
        await self._answer(scope, receive, send, record, hooks, rule)

    def _endpoint(self, scope: Scope) -> str | None:
        """Name the route a request will reach, as `METHOD /template/{param}`."""
        for route in self.routes:
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return f"{scope['method']} {getattr(route, 'path', scope['path'])}"
        return None

    def _pick_rules(
        self, platform: Platform, method: str, path: str, headers: Headers, hooks: PlatformHooks
    ) -> tuple[list[float], FaultRule | None]:
        """Consume the latency rules and the first terminal rule that apply to this request."""
        latencies: list[float] = []
        chosen: FaultRule | None = None
        for rule in list(self.faults.rules):
            if not rule.matches(platform, method, path):
                continue
            spec = rule.spec
            if spec.kind == "latency":
                high = spec.max_delay_seconds
                low = spec.delay_seconds
                # Jitter for a test double, not a secret: the standard generator is right here.
                latencies.append(low if high is None else random.uniform(low, high))  # noqa: S311
                self.faults.consume(rule)
                continue
            if chosen is not None:
                continue
            if spec.kind == "token_expired" and not hooks.expire_token(self.state, headers):
                continue  # token endpoints and unauthenticated calls have no token to expire
            chosen = rule
            self.faults.consume(rule)
        return latencies, chosen

    async def _answer(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        record: RequestRecord,
        hooks: PlatformHooks,
        rule: FaultRule | None,
    ) -> None:
        async def send_and_note(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = int(message["status"])
            await send(message)

        async def reply(response: Response) -> None:
            await response(scope, receive, send_and_note)

        if rule is None:
            await self._run_app(scope, receive, send_and_note)
            return
        spec = rule.spec
        if spec.kind == "rate_limit":
            await reply(hooks.rate_limited(spec.retry_after))
        elif spec.kind == "server_error":
            await reply(hooks.server_error(spec.status))
        elif spec.kind == "timeout":
            await asyncio.sleep(spec.delay_seconds or 30.0)
            await reply(hooks.server_error(504))
        elif spec.kind == "antibot" and hooks.antibot is not None:
            await reply(hooks.antibot(spec.mode or "datadome"))
        elif spec.kind == "token_expired":
            await reply(hooks.token_expired())
        elif spec.kind == "response_lost":
            await self._lose_response(scope, receive, send_and_note, record, hooks, spec)
        else:
            await self._run_app(scope, receive, send_and_note)

    async def _lose_response(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        record: RequestRecord,
        hooks: PlatformHooks,
        spec: FaultSpec,
    ) -> None:
        """Let the handler perform the write, throw its answer away, and fail the exchange instead."""

        async def discard(message: Message) -> None:
            return None

        await self._run_app(scope, receive, discard)
        if spec.mode == "drop":
            # Start a response that promises a body, then abort: the client sees a broken connection.
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1024")]}
            )
            record.status = None  # the client never receives a status
            raise ResponseLostError("peer closed connection without sending complete message body")
        if spec.mode == "hang":
            await asyncio.sleep(spec.delay_seconds or 30.0)
            await hooks.server_error(504)(scope, _empty_receive, send)
            return
        await hooks.server_error(502)(scope, _empty_receive, send)

    async def _run_app(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


async def _empty_receive() -> Message:
    # The request body was consumed by the handler already; a fault response never reads it.
    return {"type": "http.request", "body": b"", "more_body": False}
