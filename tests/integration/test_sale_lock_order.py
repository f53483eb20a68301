"""A sale, a worker and the dispatcher's sweep take the rows they share in one order: jobs first, then
listings and the tenant's work mark. Taken the other way round, two of them waited for each other until
PostgreSQL aborted one (the gateway's retry hid it from the user, at the cost of a second run and a second's
wait; a sweep aborted so waited for the next).

Driven at the persistence level, where nothing retries: the worker's side is a plain connection doing what
`persistence.queue` does when a run is put back to wait (lock the job, write it, mark the tenant's work).
"""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import httpx
from sqlalchemy import select

from domain.sales import SaleSource
from ops.config.settings import Settings
from persistence import sales
from persistence.database import Database
from persistence.tenancy import tenant_schema, tenant_transaction
from persistence.tenant_models import Product
from tests.integration.test_job_lifecycle import SUCCESS_BODIES, _listing, _publish, _report, _take_task
from tests.integration.test_plugin_queue import _vinted_product, _vinted_tenant
from tests.pipeline_support import running_pipeline, wait_for_job
from tests.support import pg_connection
from workers.dispatcher import Dispatcher


async def _waiting_on_a_lock(watcher: asyncpg.Connection, exclude: int) -> bool:
    waiting = await watcher.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock' AND pid <> $1",
        exclude,
    )
    return bool(waiting)


async def test_a_sale_and_a_worker_rescheduling_the_products_update_do_not_deadlock(
    client: httpx.AsyncClient, plugin: httpx.AsyncClient, migrated: Settings, database: Database
) -> None:
    headers, tenant_id, _account = await _vinted_tenant(client)
    product = await _vinted_product(client, headers)
    async with running_pipeline(migrated, "vinted", None):
        publish = await _publish(client, headers, product)
        task = await _take_task(plugin, headers, publish)
        assert (await _report(plugin, headers, task, "success", SUCCESS_BODIES)).status_code == 200
        assert (await wait_for_job(client, headers, publish))["status"] == "succeeded"
    listing = await _listing(client, headers, product["id"])
    assert listing is not None and listing["status"] == "live"
    # An edit gives the live listing an update job; no worker runs from here on but the side below.
    edited = await client.patch(
        f"/api/products/{product['id']}", json={"title": "Robe Zara fleurie, taille S"}, headers=headers
    )
    assert edited.status_code == 200, edited.text
    jobs = (await client.get("/api/jobs", params={"product_id": product["id"]}, headers=headers)).json()
    [update] = [job for job in jobs["items"] if job["action"] == "update"]
    schema = tenant_schema(migrated.tenant_schema_prefix, tenant_id)

    async def sell() -> None:
        prefix = migrated.tenant_schema_prefix
        async with tenant_transaction(database.session_factory, prefix, tenant_id) as session:
            mine = select(Product).where(Product.id == product["id"]).with_for_update()
            locked = await session.scalar(mine)
            assert locked is not None
            await sales.record_sale(
                session,
                tenant_id,
                locked,
                platform=sales.USER_PLATFORM,
                order_id=sales.user_order_id(),
                source=SaleSource.USER,
            )

    async with pg_connection(migrated) as worker_side, pg_connection(migrated) as watcher:
        async with worker_side.transaction():
            # The worker's side never gives up first: if there is a cycle, the sale is the one aborted.
            await worker_side.execute("SET LOCAL deadlock_timeout = '10s'")
            await worker_side.execute(
                f'SELECT 1 FROM "{schema}".plugin_queue WHERE id = $1 FOR UPDATE', uuid.UUID(update["id"])
            )
            sale = asyncio.create_task(sell())
            deadline = time.monotonic() + 10
            while not await _waiting_on_a_lock(watcher, worker_side.get_server_pid()):
                assert not sale.done(), sale.exception() if sale.done() else None
                assert time.monotonic() < deadline, "the sale never waited for the job this side holds"
                await asyncio.sleep(0.02)
            # The run is put back to wait: its row, then the tenant's work mark (as `queue._apply` does).
            await worker_side.execute(
                f'UPDATE "{schema}".plugin_queue SET status = $2, next_attempt_at = now() WHERE id = $1',
                uuid.UUID(update["id"]),
                "pending",
            )
            await asyncio.wait_for(
                worker_side.execute(
                    "INSERT INTO public.tenant_work (tenant_id, due_at) VALUES ($1, now()) "
                    "ON CONFLICT (tenant_id) DO UPDATE SET version = public.tenant_work.version + 1",
                    tenant_id,
                ),
                timeout=5,
            )
        # Before the fix the sale held the tenant's work mark (its delist's enqueue) while it waited for the
        # job: PostgreSQL found the cycle and aborted the sale (DeadlockDetectedError here).
        await asyncio.wait_for(sale, timeout=30)

    after = (await client.get(f"/api/products/{product['id']}", headers=headers)).json()
    assert after["status"] == "sold"
    jobs = (await client.get("/api/jobs", params={"product_id": product["id"]}, headers=headers)).json()
    by_id = {job["id"]: job for job in jobs["items"]}
    assert by_id[update["id"]]["status"] == "cancelled", "the update of a sold product never runs"
    assert [job["status"] for job in jobs["items"] if job["action"] == "delist"] == ["pending"]


async def _wait_for_status(
    client: httpx.AsyncClient, headers: dict[str, str], job_id: str, status: str
) -> None:
    deadline = time.monotonic() + 30
    while (await client.get(f"/api/jobs/{job_id}", headers=headers)).json()["status"] != status:
        assert time.monotonic() < deadline, f"job {job_id} never reached {status}"
        await asyncio.sleep(0.05)


async def test_a_sale_and_the_sweep_recovering_a_lease_and_expiring_a_plugin_wait_do_not_deadlock(
    client: httpx.AsyncClient, migrated: Settings
) -> None:
    """The sweep recovered a dead worker's run (which marks the tenant's work) and, in the same transaction,
    went on to lock the plugin waits it expires; a sale holding one of those jobs then marking the work
    closed the cycle."""
    headers, tenant_id, _account = await _vinted_tenant(client)
    dead, stale = await _vinted_product(client, headers), await _vinted_product(client, headers)
    async with running_pipeline(migrated, "vinted", None):
        dead_job, stale_job = await _publish(client, headers, dead), await _publish(client, headers, stale)
        await _wait_for_status(client, headers, dead_job, "waiting_plugin")
        await _wait_for_status(client, headers, stale_job, "waiting_plugin")
    schema = tenant_schema(migrated.tenant_schema_prefix, tenant_id)
    dispatcher = Dispatcher(migrated)
    async with pg_connection(migrated) as sale_side, pg_connection(migrated) as watcher:
        # One run whose worker died under its lease, one task no plugin took for three days.
        await sale_side.execute(
            f"UPDATE \"{schema}\".plugin_queue SET status = 'running', lease_owner = 'gone:1', "
            "lease_expires_at = now() - interval '1 second' WHERE id = $1",
            uuid.UUID(dead_job),
        )
        await sale_side.execute(
            f"UPDATE \"{schema}\".plugin_tasks SET created_at = now() - interval '3 days' WHERE job_id = $1",
            uuid.UUID(stale_job),
        )
        version = await sale_side.fetchval(
            "SELECT version FROM public.tenant_work WHERE tenant_id = $1", tenant_id
        )
        try:
            async with sale_side.transaction():
                await sale_side.execute("SET LOCAL deadlock_timeout = '10s'")
                # The sale has locked the stale publish (`queue.product_gone`)...
                await sale_side.execute(
                    f'SELECT 1 FROM "{schema}".plugin_queue WHERE id = $1 FOR UPDATE', uuid.UUID(stale_job)
                )
                sweep = asyncio.create_task(dispatcher._sweep_tenant(tenant_id, int(version)))
                deadline = time.monotonic() + 10
                while not await _waiting_on_a_lock(watcher, sale_side.get_server_pid()):
                    assert not sweep.done(), sweep.exception() if sweep.done() else None
                    assert time.monotonic() < deadline, "the sweep never waited for the job the sale holds"
                    await asyncio.sleep(0.02)
                # ...and, having written it, marks the tenant's work (as `queue._apply` does).
                await asyncio.wait_for(
                    sale_side.execute(
                        "INSERT INTO public.tenant_work (tenant_id, due_at) VALUES ($1, now()) "
                        "ON CONFLICT (tenant_id) DO UPDATE SET version = public.tenant_work.version + 1",
                        tenant_id,
                    ),
                    timeout=5,
                )
            # Before the fix the sweep held that mark while it waited: DeadlockDetectedError here.
            await asyncio.wait_for(sweep, timeout=30)
        finally:
            await dispatcher.close()
    recovered = (await client.get(f"/api/jobs/{dead_job}", headers=headers)).json()
    assert recovered["status"] == "queued", "the dead worker's run was handed to the pool again"
    expired = (await client.get(f"/api/jobs/{stale_job}", headers=headers)).json()
    assert (expired["status"], expired["error"]["code"]) == ("failed", "plugin_unavailable")
