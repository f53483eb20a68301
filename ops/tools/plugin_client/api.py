"""The plugin's side of the Stoflow API: log in as `source=plugin`, refresh on 401, call the queue routes."""

from __future__ import annotations

from typing import Any

import httpx
import structlog

from ops.tools.plugin_client.errors import LoginFailed

log = structlog.get_logger(__name__)


class StoflowApi:
    """Authenticated calls to one Stoflow gateway; tokens stay in memory and out of every log line."""

    def __init__(self, base_url: str, email: str, password: str, *, timeout: float = 30.0) -> None:
        self._email = email
        self._password = password
        self._http = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout)
        self._access_token: str | None = None
        self._refresh_token: str | None = None

    async def aclose(self) -> None:
        await self._http.aclose()

    def _keep(self, tokens: dict[str, Any]) -> None:
        self._access_token = str(tokens["access_token"])
        self._refresh_token = str(tokens["refresh_token"])

    async def login(self) -> None:
        """Log in with `source=plugin`; LoginFailed for refused credentials or too many attempts."""
        response = await self._http.post(
            "/api/auth/login",
            params={"source": "plugin"},
            json={"email": self._email, "password": self._password},
        )
        if response.status_code != 200:
            raise LoginFailed(f"Stoflow refused the login ({response.status_code} {_code(response)}).")
        self._keep(response.json())
        log.info("plugin_logged_in")

    async def _refresh(self) -> None:
        """Trade the refresh token for a new pair; log in again when the chain is spent or revoked."""
        if self._refresh_token is not None:
            response = await self._http.post("/api/auth/refresh", json={"refresh_token": self._refresh_token})
            if response.status_code == 200:
                self._keep(response.json())
                log.info("plugin_token_refreshed")
                return
            log.warning("plugin_refresh_refused", http_status=response.status_code, code=_code(response))
        await self.login()

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - a per-request httpx timeout, not a deadline
    ) -> httpx.Response:
        """One authenticated call; a 401 refreshes the tokens and sends it once more."""
        if self._access_token is None:
            await self.login()
        for attempt in range(2):
            response = await self._http.request(
                method,
                path,
                json=json,
                params=params,
                headers={"Authorization": f"Bearer {self._access_token}"},
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
            if response.status_code != 401 or attempt == 1:
                return response
            await self._refresh()
        raise AssertionError("unreachable")  # pragma: no cover


def _code(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("code", "")) if isinstance(body, dict) else ""


def problem_code(response: httpx.Response) -> str:
    """The `code` of a problem document, or an empty string."""
    return _code(response)
