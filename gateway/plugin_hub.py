"""Wake long polls when a tenant's plugin tasks become ready: one LISTEN connection per gateway process.

A waiting request registers an event for its tenant; a NOTIFY on `stoflow_plugin_tasks` carrying the
tenant id sets every event of that tenant. No request polls the database while it waits.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import asyncpg
import structlog

from persistence.plugin_tasks import NOTIFY_CHANNEL

log = structlog.get_logger(__name__)


class PluginHub:
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._waiters: dict[int, set[asyncio.Event]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._listen())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _on_notify(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            tenant_id = int(payload)
        except ValueError:
            return
        for event in self._waiters.get(tenant_id, ()):
            event.set()

    async def _listen(self) -> None:
        while True:
            try:
                connection = await asyncpg.connect(self._dsn)
            except Exception:
                log.warning("plugin_hub_connect_failed", exc_info=True)
                await asyncio.sleep(1)
                continue
            try:
                await connection.add_listener(NOTIFY_CHANNEL, self._on_notify)
                self._connected.set()
                # A reconnect may have missed notifications: wake everyone to look once.
                for events in self._waiters.values():
                    for event in events:
                        event.set()
                while not connection.is_closed():
                    await connection.fetchval("SELECT 1", timeout=5)
                    await asyncio.sleep(5)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("plugin_hub_connection_lost", exc_info=True)
            finally:
                self._connected.clear()
                with contextlib.suppress(Exception):
                    await connection.close()

    @contextlib.contextmanager
    def subscription(self, tenant_id: int) -> Iterator[asyncio.Event]:
        """An event set whenever the tenant may have a ready task; subscribe before looking, then wait."""
        self.start()
        event = asyncio.Event()
        self._waiters[tenant_id].add(event)
        try:
            yield event
        finally:
            self._waiters[tenant_id].discard(event)
            if not self._waiters[tenant_id]:
                self._waiters.pop(tenant_id, None)

    @property
    def waiting(self) -> int:
        return sum(len(events) for events in self._waiters.values())
