"""The dispatcher's guarantees: one ARQ job per run, a sweep that visits only tenants with work."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterator, MutableMapping
from datetime import UTC, datetime
from typing import Any

import httpx
import structlog
from arq.connections import RedisSettings, create_pool
from sqlalchemy import text
from structlog.testing import LogCapture

from ops.config.settings import Settings
from persistence import queue
from persistence.database import connect_database
from persistence.tenancy import tenant_schema
from tests.integration.test_pipeline import FakeMarketplace, _product, _tenant_with_ebay
from tests.pipeline_support import running_pipeline, wait_for_job
from tests.support import pg_connection
from workers.dispatcher import Dispatcher
from workers.pool import queue_name


@contextlib.contextmanager
def capture_logs_with_context() -> Iterator[list[MutableMapping[str, Any]]]:
    """Like structlog's capture_logs, but with the context-bound ids merged in as in production."""
    capture = LogCapture()
    old = structlog.get_config()
    structlog.configure(processors=[structlog.contextvars.merge_contextvars, capture])
    try:
        yield capture.entries
    finally:
        structlog.configure(**old)


async def _queued_arq_jobs(settings: Settings, platform: str) -> list[str]:
    pool = await create_pool(RedisSettings.from_dsn(settings.required_redis_url))
    try:
        return [job.job_id for job in await pool.queued_jobs(queue_name=queue_name(platform))]
    finally:
        await pool.aclose()


async def test_handing_off_the_same_run_twice_is_one_arq_job(
    client: httpx.AsyncClient, migrated: Settings
) -> None:
    headers = await _tenant_with_ebay(client)
    product = await _product(client, headers)
    job = (
        await client.post(
            f"/api/products/{product['id']}/publications", json={"platforms": ["ebay"]}, headers=headers
        )
    ).json()["jobs"][0]
    tenant_id = (await client.get("/api/auth/me", headers=headers)).json()["tenant_id"]
    dispatcher = Dispatcher(migrated)
    try:
        handoff = queue.Handoff(tenant_id, uuid.UUID(job["id"]), "ebay", 1)
        assert await dispatcher.hand_off(handoff)
        assert await dispatcher.hand_off(handoff)
        retry = queue.Handoff(tenant_id, uuid.UUID(job["id"]), "ebay", 2)
        assert await dispatcher.hand_off(retry)
    finally:
        await dispatcher.close()
    queued = [job_id for job_id in await _queued_arq_jobs(migrated, "ebay") if job_id.startswith(job["id"])]
    assert sorted(queued) == [f"{job['id']}:1", f"{job['id']}:2"]
    status = (await client.get(f"/api/jobs/{job['id']}", headers=headers)).json()["status"]
    assert status == "queued"


async def test_sweep_forgets_tenants_without_work(client: httpx.AsyncClient, migrated: Settings) -> None:
    headers = await _tenant_with_ebay(client)
    product = await _product(client, headers)
    tenant_id = (await client.get("/api/auth/me", headers=headers)).json()["tenant_id"]
    database = connect_database(migrated.async_database_url, pool_size=1)

    async def listed() -> bool:
        async with database.engine.connect() as connection:
            found = await connection.scalar(
                text("SELECT 1 FROM public.tenant_work WHERE tenant_id = :tenant"), {"tenant": tenant_id}
            )
        return found is not None

    try:
        assert not await listed(), "a tenant that never queued anything is not swept"
        job = (
            await client.post(
                f"/api/products/{product['id']}/publications", json={"platforms": ["ebay"]}, headers=headers
            )
        ).json()["jobs"][0]
        assert await listed()
        with capture_logs_with_context() as logs:
            async with running_pipeline(migrated, "ebay", FakeMarketplace()) as dispatcher:
                await wait_for_job(client, headers, job["id"])
                # The sweep comes back to a tenant when it said it would (here: when the lease would
                # have expired); make that now rather than wait.
                async with database.engine.begin() as connection:
                    await connection.execute(
                        text("UPDATE public.tenant_work SET due_at = now() WHERE tenant_id = :t"),
                        {"t": tenant_id},
                    )
                await dispatcher.sweep()
        assert not await listed(), "once its jobs are done the tenant leaves the sweep's index"
    finally:
        await database.dispose()
    job_lines = [line for line in logs if line.get("job_id") == job["id"]]
    assert {line["event"] for line in job_lines} >= {"job_started", "job_succeeded"}
    for line in job_lines:
        assert line["tenant_id"] == tenant_id and line["platform"] == "ebay", line


async def test_a_sweep_does_not_hand_again_a_run_that_finished_while_it_looked(
    client: httpx.AsyncClient, migrated: Settings
) -> None:
    # The sweep read the row as a stale `queued` one; by the time it asks ARQ, a worker has claimed and
    # finished that run (ARQ keeps no result, so it no longer knows the run either).
    headers = await _tenant_with_ebay(client)
    product = await _product(client, headers)
    tenant_id = (await client.get("/api/auth/me", headers=headers)).json()["tenant_id"]
    job = (
        await client.post(
            f"/api/products/{product['id']}/publications", json={"platforms": ["ebay"]}, headers=headers
        )
    ).json()["jobs"][0]
    async with running_pipeline(migrated, "ebay", FakeMarketplace()):
        finished = await wait_for_job(client, headers, job["id"])
    assert finished["status"] == "succeeded"
    read_by_the_sweep = queue.Handoff(tenant_id, uuid.UUID(job["id"]), "ebay", 1)
    dispatcher = Dispatcher(migrated)
    try:
        assert await dispatcher._hand_off_many(tenant_id, [read_by_the_sweep], swept=True) == 0
    finally:
        await dispatcher.close()
    queued = [job_id for job_id in await _queued_arq_jobs(migrated, "ebay") if job_id.startswith(job["id"])]
    assert queued == [], "a finished run is not handed to ARQ a second time"
    history = (await client.get(f"/api/jobs/{job['id']}", headers=headers)).json()
    assert history["status"] == "succeeded"


async def test_a_publish_committing_while_the_sweep_settles_the_tenant_keeps_it_swept(
    client: httpx.AsyncClient, migrated: Settings
) -> None:
    """A publish holds the tenant's work mark shared (it no longer bumps it); the sweep settling a tenant
    with nothing left must wait for it and then see its jobs, not forget the tenant they belong to."""
    headers = await _tenant_with_ebay(client)
    first, second = await _product(client, headers), await _product(client, headers)
    tenant_id = (await client.get("/api/auth/me", headers=headers)).json()["tenant_id"]
    accepted = await client.post(
        f"/api/products/{first['id']}/publications", json={"platforms": ["ebay"]}, headers=headers
    )
    cancelled = await client.post(f"/api/jobs/{accepted.json()['jobs'][0]['id']}/cancel", headers=headers)
    assert cancelled.status_code == 200, cancelled.text
    schema = tenant_schema(migrated.tenant_schema_prefix, tenant_id)
    dispatcher = Dispatcher(migrated)
    async with pg_connection(migrated) as publisher, pg_connection(migrated) as watcher:
        # Nothing unfinished is left, but the mark is still there and due: the next sweep would forget it.
        version = await watcher.fetchval(
            "SELECT version FROM public.tenant_work WHERE tenant_id = $1 AND due_at <= now()", tenant_id
        )
        assert version is not None
        try:
            async with publisher.transaction():
                jobs = await queue.enqueue_publishes_in(
                    publisher,
                    schema,
                    tenant_id=tenant_id,
                    product_id=int(second["id"]),
                    publishes=[queue.NewPublish("ebay")],
                    status_change=("published", datetime.now(UTC)),
                )
                assert jobs is not None
                sweep = asyncio.create_task(dispatcher._sweep_tenant(tenant_id, int(version)))
                deadline = time.monotonic() + 10
                while not await watcher.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                ):
                    assert not sweep.done(), sweep.exception() if sweep.done() else None
                    assert time.monotonic() < deadline, "the sweep never waited for the publish"
                    await asyncio.sleep(0.02)
            await asyncio.wait_for(sweep, timeout=30)
        finally:
            await dispatcher.close()
        due = await watcher.fetchval(
            "SELECT due_at <= now() FROM public.tenant_work WHERE tenant_id = $1", tenant_id
        )
    assert due is True, "the tenant with the new publish left the sweep's index"
    job = (await client.get(f"/api/jobs/{jobs[0]['id']}", headers=headers)).json()
    assert job["status"] == "pending"
