"""The dependencies a worker process builds once at start-up (ARQ `on_startup`) and every job shares."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from contextlib import suppress
from dataclasses import dataclass, field

import httpx
from redis.asyncio import Redis
from sqlalchemy import select

from domain.catalogue import PlatformMappings
from ops.adapters.media_urls import listing_image_url
from ops.adapters.secrets_box import SecretsBox
from ops.config.settings import Settings
from persistence.attribute_models import PlatformMapping
from persistence.database import Database, connect_database
from workers.platforms.base import PlatformAdapter

LEASE_SECONDS = 10.0
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
    adapters: dict[str, PlatformAdapter] = field(default_factory=dict)
    owner: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}")
    #: long-running tasks of the process (the listing sync), cancelled first by `close()`
    background: list[asyncio.Task[None]] = field(default_factory=list)
    lease_seconds: float = LEASE_SECONDS
    heartbeat_seconds: float = HEARTBEAT_SECONDS

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
        await self.http.aclose()
        await self.redis.aclose()
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
    return WorkerApp(
        settings=settings,
        platform=platform,
        db=database,
        redis=Redis.from_url(settings.required_redis_url, socket_timeout=5, socket_connect_timeout=2),
        http=httpx.AsyncClient(timeout=httpx.Timeout(15.0, connect=5.0)),
        box=SecretsBox.from_settings(settings),
        mappings=await load_mappings(database),
    )
