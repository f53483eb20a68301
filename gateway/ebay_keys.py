"""eBay's notification public keys, fetched by `kid` and kept: a webhook is verified without a round trip.

The only marketplace call the gateway makes: eBay signs notifications with keys it rotates, served at
`/commerce/notification/v1/public_key/{kid}` to an application token. The sandbox serves its own key there.
"""

from __future__ import annotations

import asyncio
import base64
import time

import httpx

from ops.config.settings import Settings

KEY_TTL_SECONDS = 3600
#: How long a kid eBay does not know is refused without asking again.
UNKNOWN_KID_SECONDS = 300
PUBLIC_KEY_PATH = "/commerce/notification/v1/public_key/"
DEFAULT_EBAY_API = "https://api.ebay.com"


class KeyUnavailable(Exception):
    """eBay could not be asked for the key now (down, timeout)."""


class KeyUnknown(Exception):
    """eBay has no key of that kid: the signature cannot be genuine."""


class EbayKeyring:
    """Public keys by kid, fetched once an hour at most."""

    def __init__(self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._settings = settings
        self._base = (settings.ebay_api_base or DEFAULT_EBAY_API).rstrip("/")
        self._transport = transport
        self._keys: dict[str, tuple[float, str]] = {}
        self._unknown: dict[str, float] = {}
        self._lock = asyncio.Lock()

    async def public_key(self, kid: str) -> str:
        """The PEM of the key named `kid`."""
        cached = self._keys.get(kid)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        async with self._lock:
            cached = self._keys.get(kid)
            if cached is not None and cached[0] > time.monotonic():
                return cached[1]
            unknown_until = self._unknown.get(kid, 0.0)
            if unknown_until > time.monotonic():
                raise KeyUnknown(f"eBay has no key {kid}")
            try:
                pem = await self._fetch(kid)
            except KeyUnknown:
                # Forged notifications naming made-up kids must not make us call eBay each time.
                if len(self._unknown) >= 1000:
                    self._unknown.clear()  # bounded: a flood of made-up kids cannot grow it
                self._unknown[kid] = time.monotonic() + UNKNOWN_KID_SECONDS
                raise
            self._keys[kid] = (time.monotonic() + KEY_TTL_SECONDS, pem)
            return pem

    async def _fetch(self, kid: str) -> str:
        client_id = self._settings.ebay_client_id
        secret = self._settings.ebay_client_secret.get_secret_value()
        basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
        async with httpx.AsyncClient(base_url=self._base, timeout=5, transport=self._transport) as http:
            try:
                token = await http.post(
                    "/identity/v1/oauth2/token",
                    data={
                        "grant_type": "client_credentials",
                        "scope": "https://api.ebay.com/oauth/api_scope",
                    },
                    headers={"Authorization": f"Basic {basic}"},
                )
                token.raise_for_status()
                answer = await http.get(
                    PUBLIC_KEY_PATH + kid,
                    headers={"Authorization": f"Bearer {token.json()['access_token']}"},
                )
            except (httpx.HTTPError, KeyError, ValueError) as error:
                raise KeyUnavailable(str(error)) from error
        if answer.status_code == 404:
            raise KeyUnknown(f"eBay has no key {kid}")
        if answer.status_code != 200:
            raise KeyUnavailable(f"eBay answered {answer.status_code} for key {kid}")
        key = answer.json().get("key")
        if not isinstance(key, str):
            raise KeyUnavailable("eBay's answer has no key")
        return key
