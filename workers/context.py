"""The dependencies a worker process builds once at start-up (ARQ `on_startup`) and every job shares."""

from __future__ import annotations

import asyncio
import copy
import os
import socket
import uuid
from collections import OrderedDict
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import httpx
import structlog
from redis.asyncio import Redis
from sqlalchemy import select

from domain.catalogue import PlatformMappings
from ops.adapters.media_urls import listing_image_url
from ops.adapters.metrics_store import JobMetricsBatch
from ops.adapters.secrets_box import SecretsBox
from ops.config.settings import Settings
from persistence.attribute_models import PlatformMapping
from persistence.database import Database, connect_database, connect_raw_pool
from workers.platforms.base import PlatformAdapter

log = structlog.get_logger(__name__)

LEASE_SECONDS = 10.0
#: decrypted credentials remembered by a worker process (one per tenant and platform in use)
_OPENED_TOKENS_KEPT = 1024
HEARTBEAT_SECONDS = 3.0


@dataclass
class WorkerApp:
    settings: Settings
    platform: str
    db: Database
    redis: Redis
    http: httpx.AsyncClient
    box: SecretsBox
    mappings: PlatformMappings
    #: a raw asyncpg pool for the job's claim and landing, one statement each (see `persistence.queue`)
    pg: Any
    adapters: dict[str, PlatformAdapter] = field(default_factory=dict)
    owner: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}")
    #: long-running tasks of the process (the listing sync), cancelled first by `close()`
    background: list[asyncio.Task[None]] = field(default_factory=list)
    lease_seconds: float = LEASE_SECONDS
    heartbeat_seconds: float = HEARTBEAT_SECONDS
    #: the jobs' figures, written to Redis every `JobMetricsBatch.FLUSH_SECONDS` by `flush_metrics`
    metrics: JobMetricsBatch = field(default_factory=JobMetricsBatch)
    _flusher: asyncio.Task[None] | None = field(default=None, init=False, repr=False)
    _opened_tokens: OrderedDict[tuple[int, str, bytes], dict[str, Any]] = field(
        default_factory=OrderedDict, init=False, repr=False
    )

    def record_job(self, platform: str, action: str, outcome: str, seconds: float) -> None:
        """Count a finished run; its figures reach Redis within `JobMetricsBatch.FLUSH_SECONDS`."""
        self.metrics.record(platform, action, outcome, seconds)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        await asyncio.sleep(JobMetricsBatch.FLUSH_SECONDS)
        try:
            await self.metrics.flush(self.redis)
        except Exception:  # kept for the next flush; figures are not worth a failed job
            log.warning("metrics_flush_failed", exc_info=True)

    def open_tokens(self, tenant_id: int, platform: str, sealed: bytes) -> dict[str, Any]:
        """The decrypted tokens of a stored credential, remembered per (tenant, platform, ciphertext).

        A new ciphertext (refreshed or reconnected tokens) is decrypted again; the answer is a copy, so an
        adapter may change it.
        """
        key = (tenant_id, platform, sealed)
        opened = self._opened_tokens.get(key)
        if opened is None:
            opened = self.box.open(sealed)
            self._opened_tokens[key] = opened
            if len(self._opened_tokens) > _OPENED_TOKENS_KEPT:
                self._opened_tokens.popitem(last=False)
        else:
            self._opened_tokens.move_to_end(key)
        return copy.deepcopy(opened)

    def image_url(self, storage_key: str) -> str:
        # Marketplaces keep these URLs (eBay fetches pictures again later): they must outlive the job.
        return listing_image_url(self.settings, storage_key)

    async def close(self) -> None:
        for task in self.background:
            task.cancel()
        for task in self.background:
            with suppress(asyncio.CancelledError):
                await task
        for adapter in self.adapters.values():
            # Adapters holding their own clients (the ai pool's provider) release them here.
            closer = getattr(adapter, "aclose", None)
            if closer is not None:
                await closer()
        if self._flusher is not None:
            self._flusher.cancel()
            with suppress(asyncio.CancelledError):
                await self._flusher
        with suppress(Exception):
            await self.metrics.flush(self.redis)
        await self.http.aclose()
        await self.redis.aclose()
        await self.pg.close()
        await self.db.dispose()


async def load_mappings(database: Database) -> PlatformMappings:
    """Read public.platform_mappings once: it changes only when `stoflow seed` runs."""
    async with database.session_factory() as session:
        rows = await session.scalars(select(PlatformMapping))
        nested: dict[str, dict[str, dict[str, dict[str, object]]]] = {}
        for row in rows:
            nested.setdefault(row.platform, {}).setdefault(row.kind, {})[row.code] = dict(row.fields)
    return PlatformMappings.from_nested(nested)


async def build_worker_app(settings: Settings, platform: str, concurrency: int) -> WorkerApp:
    database = connect_database(
        settings.async_database_url, pool_size=min(concurrency + 2, 20), max_overflow=settings.db_max_overflow
    )
    # Every running job holds one at its claim and one at its landing: as many as jobs run at once.
    raw_pool = await connect_raw_pool(settings.async_database_url, size=min(concurrency + 2, 20))
    return WorkerApp(
        settings=settings,
        platform=platform,
        db=database,
        redis=Redis.from_url(settings.required_redis_url, socket_timeout=5, socket_connect_timeout=2),
        http=httpx.AsyncClient(timeout=httpx.Timeout(15.0, connect=5.0)),
        box=SecretsBox.from_settings(settings),
        mappings=await load_mappings(database),
        pg=raw_pool,
    )
