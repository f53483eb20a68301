"""One refresh at a time per (tenant, platform): the lock, and the stored tokens read under it.

Jobs of the same shop run on many workers at once. When its access token expires they all get a 401 within
moments; each refreshing on its own would spend the refresh token several times, and a marketplace that
rotates refresh tokens (Etsy) refuses every use after the first, which would disconnect the shop. So a refresh
takes a Redis lock named after the tenant and platform, then reads the stored tokens: a worker that waited
finds the tokens the first one saved and uses them without calling the marketplace.

The lock expires on its own (`LOCK_SECONDS`, longer than a refresh call's whole retry budget), so a worker
killed while holding it delays the others, and never blocks them for good.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

import structlog
from redis.exceptions import LockError

from persistence import credentials as credential_store
from persistence.tenancy import tenant_transaction
from workers.context import WorkerApp
from workers.errors import TransientPlatformError

log = structlog.get_logger(__name__)

#: How long a holder may keep the lock: a token call's retries stop well before (see http.RetryPolicy).
LOCK_SECONDS = 60.0
#: How long a worker waits for another's refresh before giving up for this run (it is retried later).
WAIT_SECONDS = 45.0


def lock_name(tenant_id: int, platform: str) -> str:
    """The Redis key of a (tenant, platform) refresh lock."""
    return f"stoflow:oauth-refresh:{{{tenant_id}}}:{platform}"


@dataclass
class StoredCredentials:
    """The tokens as stored when the lock was taken, and how to store new ones."""

    app: WorkerApp
    tenant_id: int
    platform: str
    tokens: dict[str, Any] | None

    async def save(self, tokens: dict[str, Any]) -> None:
        """Seal and store the new tokens (the caller still holds the lock)."""
        async with tenant_transaction(
            self.app.db.session_factory, self.app.settings.tenant_schema_prefix, self.tenant_id
        ) as session:
            await credential_store.replace_tokens(session, self.platform, self.app.box.seal(tokens))
        self.tokens = dict(tokens)


@asynccontextmanager
async def locked_credentials(
    app: WorkerApp, tenant_id: int, platform: str
) -> AsyncIterator[StoredCredentials]:
    """Hold the (tenant, platform) refresh lock and read the stored tokens under it."""
    lock = app.redis.lock(lock_name(tenant_id, platform), timeout=LOCK_SECONDS, blocking_timeout=WAIT_SECONDS)
    if not await lock.acquire():
        raise TransientPlatformError(f"Another worker is still refreshing the {platform} token.")
    try:
        async with tenant_transaction(
            app.db.session_factory, app.settings.tenant_schema_prefix, tenant_id
        ) as session:
            credential = await credential_store.get_credential(session, platform)
            tokens = app.box.open(credential.encrypted_tokens) if credential is not None else None
        yield StoredCredentials(app, tenant_id, platform, tokens)
    finally:
        with suppress(LockError):
            await lock.release()
