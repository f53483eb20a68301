"""One Vinted account as a browser holds it: a cookie jar, the CSRF token of the page, and a steady pace.

The session is bootstrapped like the web app does it: `GET /` sets the session and `anon_id` cookies and
carries the CSRF token in `<meta name="csrf-token">`; writes then send `x-csrf-token` and `x-anon-id`.
Against the sandbox, `sandbox_login` first logs the member in through `/_sandbox/vinted/sessions` (in a real
browser the member is already logged in; `cookies` plays that part for real Vinted).
"""

from __future__ import annotations

import asyncio
import random
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import structlog

from ops.tools.plugin_client.rules import (
    NETWORK_FAILURE,
    GapRange,
    Penalty,
    is_write,
    penalty_of,
    response_body,
    retry_after_seconds,
    seconds_until_send,
)

log = structlog.get_logger(__name__)

_CSRF_META = re.compile(r"""<meta\s+name=["']csrf-token["']\s+content=["']([^"']+)["']""", re.IGNORECASE)
_SESSION_REFUSALS = frozenset({"invalid_authentication_token", "invalid_csrf_token", "invalid_anon_id"})
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) StoflowPlugin/1.0"


@dataclass(frozen=True)
class Exchange:
    """One request's answer as the plugin reports it, plus what the runner needs to pace itself."""

    http_status: int
    body: Any
    penalty: Penalty | None = None
    retry_after: float | None = None

    def reported(self) -> dict[str, Any]:
        return {"http_status": self.http_status, "body": self.body}


class SendGate(Protocol):
    """Who decides when a request may leave for Vinted and counts it (the account's sliding window)."""

    async def before_send(self) -> float:
        """Wait until the request may leave, note it, and return the moment it was noted."""

    def after_send(self, started: float) -> None:
        """The answer to the request noted at `started` arrived (or the request failed)."""


@dataclass(frozen=True)
class Pacing:
    write_gap: GapRange
    read_gap: GapRange


@dataclass(frozen=True)
class Upload:
    """A multipart photo upload: form fields plus one file."""

    fields: list[tuple[str, str]]
    file_field: str
    filename: str
    content: bytes
    content_type: str


class VintedAccountSession:
    """Requests to Vinted on behalf of one account, spaced like a person's."""

    def __init__(
        self,
        *,
        base_url: str,
        vinted_user_id: str | None,
        pacing: Pacing,
        timeout: float,
        sandbox_login: bool,
        cookies: Mapping[str, str] | None = None,
        rng: random.Random | None = None,
        gate: SendGate | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._vinted_user_id = vinted_user_id
        self._pacing = pacing
        self._sandbox_login = sandbox_login
        self._initial_cookies = dict(cookies or {})
        self._rng = rng or random.SystemRandom()
        self._gate = gate
        self._http = httpx.AsyncClient(
            base_url=self._base_url,
            timeout=timeout,
            headers={"User-Agent": USER_AGENT, "Accept-Language": "fr-FR,fr;q=0.9,en;q=0.8"},
        )
        self._csrf_token: str | None = None
        self._anon_id: str | None = None
        self._last_request_end: float | None = None

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _pace(self, method: str) -> None:
        """Wait out the account's minimum gap since its previous request."""
        gap = (self._pacing.write_gap if is_write(method) else self._pacing.read_gap).pick(self._rng)
        wait = seconds_until_send(self._last_request_end, gap, time.monotonic())
        if wait > 0:
            await asyncio.sleep(wait)

    async def _exchange(self, method: str, path: str, **kwargs: Any) -> Exchange:
        await self._pace(method)
        started = await self._gate.before_send() if self._gate is not None else None
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            return Exchange(NETWORK_FAILURE, {"error": f"{type(exc).__name__}: {exc}"[:500]})
        finally:
            self._last_request_end = time.monotonic()
            if self._gate is not None and started is not None:
                self._gate.after_send(started)
        body = response_body(response.content, response.headers.get("content-type", ""))
        return Exchange(
            response.status_code,
            body,
            penalty_of(response.status_code, response.headers, body),
            retry_after_seconds(response.headers.get("retry-after")),
        )

    async def bootstrap(self) -> Exchange | None:
        """Open the session like a browser; None when ready, else the failed answer (to report)."""
        self._http.cookies.clear()
        self._csrf_token = None
        for name, value in self._initial_cookies.items():
            self._http.cookies.set(name, value)
        if self._sandbox_login:
            failed = await self._sandbox_session()
            if failed is not None:
                return failed
        home = await self._exchange("GET", "/", headers={"Accept": "text/html"})
        if not 200 <= home.http_status < 300:
            return home
        match = _CSRF_META.search(home.body) if isinstance(home.body, str) else None
        if match:
            self._csrf_token = match.group(1)
        self._anon_id = self._http.cookies.get("anon_id") or self._anon_id or str(uuid.uuid4())
        log.info("vinted_session_ready", csrf=self._csrf_token is not None)
        return None

    async def _sandbox_session(self) -> Exchange | None:
        member = self._vinted_user_id or ""
        user_id = int(member) if member.isdigit() else None
        try:
            response = await self._http.post("/_sandbox/vinted/sessions", json={"user_id": user_id})
        except httpx.HTTPError as exc:
            return Exchange(NETWORK_FAILURE, {"error": f"{type(exc).__name__}: {exc}"[:500]})
        if response.status_code >= 300:
            return Exchange(response.status_code, response_body(response.content, "json"))
        session = response.json()
        for name, value in session.get("cookies", {}).items():
            self._http.cookies.set(name, value)
        headers = session.get("headers", {})
        self._csrf_token = headers.get("x-csrf-token")
        self._anon_id = headers.get("x-anon-id")
        return None

    @property
    def ready(self) -> bool:
        return self._anon_id is not None

    def _headers(self, method: str) -> dict[str, str]:
        headers = {"Accept": "application/json, text/plain, */*"}
        if is_write(method):
            # What a Vinted page's own requests carry; Vinted refuses writes from any other origin.
            headers["Origin"] = self._base_url
            if self._csrf_token:
                headers["x-csrf-token"] = self._csrf_token
            if self._anon_id:
                headers["x-anon-id"] = self._anon_id
        return headers

    async def send(self, method: str, path: str, body: Any = None, upload: Upload | None = None) -> Exchange:
        """Send one task request; a refused session (401, stale CSRF) is reopened and the request resent once.

        Vinted refuses those before doing anything, so sending again cannot do the work twice.
        """
        exchange = await self._send_once(method, path, body, upload)
        if _session_refused(exchange):
            log.info("vinted_session_refused", http_status=exchange.http_status)
            failed = await self.bootstrap()
            if failed is not None:
                return failed
            exchange = await self._send_once(method, path, body, upload)
        return exchange

    async def _send_once(self, method: str, path: str, body: Any, upload: Upload | None) -> Exchange:
        headers = self._headers(method)
        if upload is not None:
            form: dict[str, list[str]] = {}
            for name, value in upload.fields:
                form.setdefault(name, []).append(value)
            files = {upload.file_field: (upload.filename, upload.content, upload.content_type)}
            return await self._exchange(method, path, headers=headers, data=form, files=files)
        if body is None or method.upper() in {"GET", "HEAD"}:
            return await self._exchange(method, path, headers=headers)
        return await self._exchange(method, path, headers=headers, json=body)


def _session_refused(exchange: Exchange) -> bool:
    if exchange.penalty is not None or exchange.http_status not in {401, 403}:
        return False
    body = exchange.body
    return exchange.http_status == 401 or (
        isinstance(body, dict) and body.get("message_code") in _SESSION_REFUSALS
    )
