"""Signed, expiring image URLs: marketplaces fetch our images without logging in, nobody can forge one."""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import quote

from ops.config.secret_keys import MEDIA_URLS, derive_key
from ops.config.settings import Settings

DEFAULT_TTL_SECONDS = 7 * 24 * 3600
#: URLs handed to marketplaces: eBay fetches listing pictures again (revisions, relists, its own cache)
#: long after the call that named them, and a good-'til-cancelled listing has no end date. Five years is
#: past any listing's life; the URL still dies with the image (a deleted image answers 404).
LISTING_TTL_SECONDS = 5 * 365 * 24 * 3600


def _signature(secret: bytes, key: str, expires: int) -> str:
    message = f"{key}\n{expires}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def signed_media_url(
    base_url: str,
    secret: bytes,
    key: str,
    *,
    ttl_seconds: int = DEFAULT_TTL_SECONDS,
    now: float | None = None,
) -> str:
    """Return `{base_url}/media/{key}?expires=…&signature=…`, valid for `ttl_seconds`."""
    expires = int((time.time() if now is None else now) + ttl_seconds)
    signature = _signature(secret, key, expires)
    return f"{base_url.rstrip('/')}/media/{quote(key)}?expires={expires}&signature={signature}"


def verify_media_signature(
    secret: bytes, key: str, expires: int, signature: str, *, now: float | None = None
) -> bool:
    """True when the signature is ours for this key and has not expired."""
    if expires < (time.time() if now is None else now):
        return False
    return hmac.compare_digest(_signature(secret, key, expires), signature)


def media_signing_secret(settings: Settings) -> bytes:
    """The key that signs /media URLs (the gateway serves them; workers hand them to marketplaces)."""
    return derive_key(settings.stoflow_secret_key.get_secret_value(), MEDIA_URLS)


def media_verification_secrets(settings: Settings) -> list[bytes]:
    """Keys a /media signature may verify under: each secret of the ring's derived key, then the secret
    itself, which signed URLs before keys were derived (marketplaces keep listing URLs for years)."""
    ring = settings.secret_key_ring
    return [derive_key(secret, MEDIA_URLS) for secret in ring] + [secret.encode() for secret in ring]


def image_url(settings: Settings, storage_key: str) -> str:
    """A signed, expiring public URL of a stored image, for this deployment."""
    return signed_media_url(settings.public_base_url, media_signing_secret(settings), storage_key)


def listing_image_url(settings: Settings, storage_key: str) -> str:
    """A signed URL of a stored image for a marketplace listing: valid as long as a listing may use it."""
    return signed_media_url(
        settings.public_base_url,
        media_signing_secret(settings),
        storage_key,
        ttl_seconds=LISTING_TTL_SECONDS,
    )
