"""The dispatcher: committed queue rows → ARQ, per platform queue.

It LISTENs for the NOTIFY each command sends on commit and hands that row off at once; every
`SWEEP_SECONDS` it also sweeps the tenants that are due (public.tenant_work: each tenant says when it next
needs a look — a retry due, a lease or a plugin wait expiring — so idle schemas and schemas whose jobs
only wait for the plugin cost nothing) for rows whose hand-off was lost (Redis down or flushed,
dispatcher down), retries that are due, rate-limited rows whose window freed, running rows whose worker
died (lease expired) and plugin waits past PLUGIN_TASK_MAX_AGE. Tenants are swept concurrently.
Handing the same run off twice is harmless (the ARQ job id is `{row}:{run}`), but a queued row whose run
ARQ still holds is not handed again: under a backlog that would be a Redis write per row per sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import uuid
from datetime import timedelta
from typing import Any

import asyncpg
import structlog
from arq.connections import ArqRedis, RedisSettings, create_pool
from redis.asyncio import Redis

from domain.jobs import Platform, job_id_for_arq
from ops.adapters import metrics_store
from ops.config.settings import Settings
from persistence import queue, retention
from persistence.database import Database, connect_database
from persistence.retention import RetentionReport
from persistence.tenancy import tenant_transaction
from workers.pool import queue_name

log = structlog.get_logger(__name__)

SWEEP_SECONDS = 2.0
#: Tenants swept at once.
SWEEP_CONCURRENCY = 8
#: ARQ's key of a queued job (arq.constants.job_key_prefix).
_ARQ_JOB_KEY = "arq:job:"
#: A hand-off not picked up by then is repeated (ARQ drops the duplicate if the first is still queued).
STALE_HANDOFF = timedelta(seconds=10)


#: Seconds after start before the first retention pass.
RETENTION_START_DELAY_SECONDS = 60.0


class Dispatcher:
    def __init__(self, settings: Settings, *, sweep_seconds: float = SWEEP_SECONDS) -> None:
        self.settings = settings
        self.sweep_seconds = sweep_seconds
        self.db: Database = connect_database(settings.async_database_url, pool_size=4)
        self._arq: ArqRedis | None = None
        self._notifications: asyncio.Queue[str | None] = asyncio.Queue()
        self._stopping = asyncio.Event()
        #: each swept tenant's unfinished rows per platform and state: the operator console's figures
        self._states: dict[int, dict[str, metrics_store.QueueStates]] = {}
        #: until the first sweep has counted every tenant with work (tenant_work), not only the due ones
        self._counted_all = False

    async def _arq_pool(self) -> ArqRedis:
        if self._arq is None:
            self._arq = await create_pool(RedisSettings.from_dsn(self.settings.required_redis_url))
        return self._arq

    async def hand_off(self, handoff: queue.Handoff) -> bool:
        """Give one run of a row to its platform queue, then mark the row queued."""
        return bool(await self._hand_off_many(handoff.tenant_id, [handoff]))

    async def _hand_off_many(
        self, tenant_id: int, handoffs: list[queue.Handoff], *, swept: bool = False
    ) -> int:
        """Give runs to ARQ (skipping runs ARQ still holds), then mark them queued in one statement.

        `swept`: the rows were read by a sweep, so some may have been claimed and finished since (ARQ
        then no longer holds them either); those are looked up again after asking ARQ and left alone.
        """
        if not handoffs:
            return 0
        try:
            arq = await self._arq_pool()
            held = await self._held_by_arq(arq, handoffs, swept=swept)
            if swept:
                candidates = [handoff for handoff in handoffs if handoff not in held]
                async with tenant_transaction(
                    self.db.session_factory, self.settings.tenant_schema_prefix, tenant_id
                ) as session:
                    waiting = await queue.still_due(session, candidates)
                moved_on = [handoff for handoff in candidates if handoff not in waiting]
                if moved_on:
                    log.debug("handoff_moved_on", tenant_id=tenant_id, count=len(moved_on))
                    held = held | set(moved_on)
            for handoff in handoffs:
                if handoff in held:
                    continue
                await arq.enqueue_job(
                    "run_job",
                    handoff.tenant_id,
                    str(handoff.job_id),
                    handoff.run,
                    _job_id=job_id_for_arq(str(handoff.job_id), handoff.run),
                    _queue_name=queue_name(handoff.platform),
                )
        except Exception:  # Redis down: the rows stay as they are and the sweep tries again
            log.warning("handoff_failed", tenant_id=tenant_id, exc_info=True)
            self._arq = None
            return 0
        async with tenant_transaction(
            self.db.session_factory, self.settings.tenant_schema_prefix, tenant_id
        ) as session:
            await queue.mark_handed_off(session, handoffs)
        return len(handoffs) - len(held)

    @staticmethod
    async def _held_by_arq(
        arq: ArqRedis, handoffs: list[queue.Handoff], *, swept: bool = False
    ) -> set[queue.Handoff]:
        """The runs ARQ still has queued (one pipelined EXISTS per run)."""
        if len(handoffs) == 1 and not swept:
            return set()  # a fresh hand-off: ARQ's own job-id check drops a duplicate anyway
        async with arq.pipeline(transaction=False) as pipe:
            for handoff in handoffs:
                pipe.exists(_ARQ_JOB_KEY + job_id_for_arq(str(handoff.job_id), handoff.run))
            found = await pipe.execute()
        return {handoff for handoff, exists in zip(handoffs, found, strict=True) if exists}

    async def sweep(self) -> int:
        """Hand off every due row of every due tenant; return how many runs were handed to ARQ."""
        async with self.db.session_factory() as session:
            tenants = await queue.due_tenants(session)
        gate = asyncio.Semaphore(SWEEP_CONCURRENCY)

        async def visit(tenant_id: int, version: int) -> int:
            async with gate:
                try:
                    return await self._sweep_tenant(tenant_id, version)
                except Exception:  # one broken schema must not stop the others
                    log.exception("sweep_failed", tenant_id=tenant_id)
                    return 0

        handed = sum(await asyncio.gather(*(visit(tenant, version) for tenant, version in tenants)))
        if not self._counted_all:
            await self._count_idle_tenants({tenant for tenant, _version in tenants})
        await self._publish_states()
        return handed

    async def _count_idle_tenants(self, swept: set[int]) -> None:
        """Once after start: count the tenants with work that are not due yet (e.g. waiting for a plugin)."""
        async with self.db.session_factory() as session:
            tenants = [
                tenant for tenant, _version in await queue.tenants_with_work(session) if tenant not in swept
            ]
        for tenant_id in tenants:
            try:
                async with tenant_transaction(
                    self.db.session_factory, self.settings.tenant_schema_prefix, tenant_id
                ) as session:
                    self._remember_states(tenant_id, await queue.status_counts(session))
            except Exception:
                log.exception("count_failed", tenant_id=tenant_id)
        self._counted_all = True

    def _remember_states(self, tenant_id: int, counts: list[tuple[str, str, int, Any]]) -> None:
        states: dict[str, metrics_store.QueueStates] = {}
        for platform, status, count, oldest in counts:
            if status in metrics_store.UNFINISHED_STATES:
                oldest_at = oldest.timestamp() if oldest is not None else None
                states.setdefault(platform, metrics_store.QueueStates()).add(status, count, oldest_at)
        if states:
            self._states[tenant_id] = states
        else:
            self._states.pop(tenant_id, None)

    async def _publish_states(self) -> None:
        """Sum the tenants' counts per platform into Redis: the overview reads them in O(platforms)."""
        total = {platform.value: metrics_store.QueueStates() for platform in Platform}
        for states in self._states.values():
            for platform, entry in states.items():
                summed = total.setdefault(platform, metrics_store.QueueStates())
                for status, count in entry.counts.items():
                    summed.add(status, count, entry.oldest_pending_at if status == "pending" else None)
        with contextlib.suppress(Exception):
            redis: Redis = await self._arq_pool()
            await metrics_store.set_queue_states(redis, total, time.time())

    async def _sweep_tenant(self, tenant_id: int, version: int) -> int:
        prefix = self.settings.tenant_schema_prefix
        # Each step that writes job state commits on its own: it locks its rows, then the tenant's work mark,
        # as a sale and a worker do. Holding the mark from the first step while the second locks more rows
        # is the other order, and a sale on one of those rows deadlocked with the sweep.
        async with tenant_transaction(self.db.session_factory, prefix, tenant_id) as session:
            await queue.recover_expired_leases(session, tenant_id)
        async with tenant_transaction(self.db.session_factory, prefix, tenant_id) as session:
            expired = await queue.expire_plugin_waits(
                session, tenant_id, timedelta(seconds=self.settings.plugin_task_max_age)
            )
        async with tenant_transaction(self.db.session_factory, prefix, tenant_id) as session:
            due = await queue.due_handoffs(session, tenant_id, STALE_HANDOFF)
            counts = await queue.status_counts(session)
        self._remember_states(tenant_id, counts)
        if expired:  # failed here, not by a worker run: count them with the runs' failures
            with contextlib.suppress(Exception):
                await metrics_store.record_failures(
                    await self._arq_pool(), Platform.VINTED.value, len(expired)
                )
        handed = await self._hand_off_many(tenant_id, due, swept=True)
        async with tenant_transaction(self.db.session_factory, prefix, tenant_id) as session:
            next_due = await queue.settle_tenant(
                session,
                tenant_id,
                version,
                STALE_HANDOFF,
                timedelta(seconds=self.settings.plugin_task_max_age),
            )
        if next_due is None:
            self._states.pop(tenant_id, None)
        return handed

    async def _on_notify(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        self._notifications.put_nowait(payload)

    async def _handle_notifications(self) -> None:
        while True:
            payload = await self._notifications.get()
            if payload is None:
                return
            try:
                tenant, job_id, platform, run = payload.split(":")
                await self.hand_off(queue.Handoff(int(tenant), uuid.UUID(job_id), platform, int(run)))
            except ValueError:
                log.warning("bad_notification", payload=payload)

    async def _listen(self) -> None:
        """Hold a LISTEN connection, reconnecting after failures; a sweep covers any gap."""
        dsn = self.settings.async_database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
        while True:
            try:
                connection = await asyncpg.connect(dsn)
            except Exception:
                log.warning("listen_connect_failed", exc_info=True)
                await asyncio.sleep(1)
                continue
            try:
                await connection.add_listener(queue.NOTIFY_CHANNEL, self._on_notify)
                log.info("dispatcher_listening")
                await self._watch(connection)
                log.warning("listen_connection_lost")
            except Exception:
                log.warning("listen_failed", exc_info=True)
            finally:
                with contextlib.suppress(Exception):
                    await connection.close()

    @staticmethod
    async def _watch(connection: Any) -> None:
        """Return when the LISTEN connection dies (checked every few seconds: a silent drop sends nothing)."""
        while not connection.is_closed():
            try:
                await connection.fetchval("SELECT 1", timeout=5)
            except Exception:
                return
            await asyncio.sleep(5)

    def stop(self) -> None:
        """Ask `run` to finish the hand-off in flight and return."""
        self._stopping.set()

    async def purge_expired(self) -> RetentionReport:
        """One retention pass (idempotency records, old login sessions, finished plugin tasks)."""
        report = await retention.purge_expired(
            self.db.engine,
            self.settings.tenant_schema_prefix,
            login_session_age=timedelta(days=self.settings.login_session_retention_days),
            plugin_task_age=timedelta(days=self.settings.plugin_task_retention_days),
            batch_size=self.settings.retention_batch_size,
        )
        log.info(
            "retention_purged",
            deleted=report.deleted,
            batches=report.batches,
            failed_tenants=report.failed_tenants[:20],
            longest_batch_ms=round(report.longest_batch_seconds * 1000, 1),
        )
        return report

    async def _retain(self) -> None:
        # Not at start-up: a restarting dispatcher first catches up with the queue.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), RETENTION_START_DELAY_SECONDS)
        while not self._stopping.is_set():
            try:
                await self.purge_expired()
            except Exception:
                log.warning("retention_failed", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.settings.retention_interval_seconds)

    async def run(self) -> None:
        listener = asyncio.create_task(self._listen())
        handler = asyncio.create_task(self._handle_notifications())
        retainer = asyncio.create_task(self._retain())
        try:
            while not self._stopping.is_set():
                try:
                    await self.sweep()
                except Exception:
                    log.warning("sweep_round_failed", exc_info=True)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self.sweep_seconds)
        finally:
            listener.cancel()
            retainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await retainer
            # A hand-off cut mid-flight would leave a half-open Redis connection: let it finish.
            self._notifications.put_nowait(None)
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(handler, 10)
            with contextlib.suppress(asyncio.CancelledError):
                await listener
            await self.close()

    async def close(self) -> None:
        if self._arq is not None:
            await self._arq.aclose()
        await self.db.dispose()


async def run_dispatcher(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT, which stop it gracefully (the hand-off in flight finishes)."""
    dispatcher = Dispatcher(settings)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, dispatcher.stop)
    await dispatcher.run()
