"""Opaque, signed list cursors and the `limit`/`cursor` query parameters.

A cursor is `base64url(JSON position) . base64url(HMAC-SHA256)`: clients cannot read meaning into it, and
one we did not issue (edited, truncated, from another deployment) is refused with 422 `invalid_cursor`.
Lists page by keyset on `id` descending, so rows inserted while a client walks the pages never shift it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Query

from gateway.dependencies import Services
from gateway.problems import ProblemError
from ops.config.secret_keys import CURSORS, derive_key
from ops.config.settings import Settings

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
_KEY_PURPOSE = b"stoflow.list-cursor.v1"
_MAC_BYTES = 16
_MAX_CURSOR_LENGTH = 512


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CursorCodec:
    """Sign and verify cursors with a key derived from the deployment's secret."""

    def __init__(self, secret: bytes) -> None:
        # A key of its own, so a cursor MAC can never be replayed as any other signature we make.
        self._key = hmac.new(secret, _KEY_PURPOSE, hashlib.sha256).digest()

    @classmethod
    def from_settings(cls, settings: Settings) -> CursorCodec:
        return cls(derive_key(settings.stoflow_secret_key.get_secret_value(), CURSORS))

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_MAC_BYTES]

    def encode(self, position: dict[str, Any]) -> str:
        """Return an opaque cursor for a list position."""
        payload = json.dumps(position, separators=(",", ":"), sort_keys=True).encode()
        return f"{_b64encode(payload)}.{_b64encode(self._mac(payload))}"

    def decode(self, cursor: str) -> dict[str, Any]:
        """Return the position of a cursor we issued, or answer 422 `invalid_cursor`."""
        if len(cursor) > _MAX_CURSOR_LENGTH:
            raise _invalid_cursor()
        encoded_payload, _, encoded_mac = cursor.partition(".")
        try:
            payload = _b64decode(encoded_payload)
            mac = _b64decode(encoded_mac)
        except (binascii.Error, ValueError):
            raise _invalid_cursor() from None
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise _invalid_cursor()
        position = json.loads(payload)
        if not isinstance(position, dict):
            raise _invalid_cursor()
        return position


def _invalid_cursor() -> ProblemError:
    return ProblemError(
        422,
        "invalid_cursor",
        "The cursor is not one this API issued; start again without it.",
        errors=[{"loc": ["query", "cursor"], "msg": "not a cursor issued by this API"}],
    )


@dataclass(frozen=True)
class PageRequest:
    """One page of a list: at most `limit` rows with an id below `before_id` (None: from the newest)."""

    limit: int
    before_id: int | None
    codec: CursorCodec

    def next_cursor(self, last_id: int) -> str:
        """Return the cursor of the page that follows a page ending at `last_id`."""
        return self.codec.encode({"before_id": last_id})


async def page_request(
    services: Services,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Rows per page, 1..200.")] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page.")] = None,
) -> PageRequest:
    codec = CursorCodec.from_settings(services.settings)
    if cursor is None:
        return PageRequest(limit=limit, before_id=None, codec=codec)
    before_id = codec.decode(cursor).get("before_id")
    # bool is an int subclass: refuse it, like any other value we would not have written.
    if type(before_id) is not int:
        raise _invalid_cursor()
    return PageRequest(limit=limit, before_id=before_id, codec=codec)


Page = Annotated[PageRequest, Depends(page_request)]
