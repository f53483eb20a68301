"""The plugin reporting before the worker has parked its job must not leave the job waiting forever."""

from __future__ import annotations

import httpx
from sqlalchemy import text

from ops.config.settings import Settings
from persistence import plugin_tasks, queue
from persistence.database import connect_database
from persistence.tenancy import tenant_transaction
from tests.support import bearer, register


async def test_a_result_reported_before_the_job_waits_sends_it_back_to_its_pool(
    client: httpx.AsyncClient, migrated: Settings
) -> None:
    body = await register(client)
    tenant_id = int(body["user"]["tenant_id"])
    database = connect_database(migrated.async_database_url, pool_size=1)
    prefix = migrated.tenant_schema_prefix
    try:
        async with tenant_transaction(database.session_factory, prefix, tenant_id) as session:
            job = await queue.enqueue_job(
                session, tenant_id=tenant_id, platform="vinted", action="publish", product_id=None
            )
            task = await plugin_tasks.create_task(
                session,
                tenant_id=tenant_id,
                job_id=job.id,
                vinted_account_id=1,
                vinted_user_id="555",
                operation="create_item",
                requests=[{"method": "POST", "path": "/api/v2/items/1/delete", "body": None}],
            )
            # A worker's run released the task and has not parked the job yet...
            claimed = await queue.claim(session, tenant_id, job.id, 1, "w1", 10)
            assert claimed is not None
        # ...when the plugin's result arrives (the gateway records it; the job is not waiting yet).
        async with tenant_transaction(database.session_factory, prefix, tenant_id) as session:
            locked = await plugin_tasks.get_task(session, task.id, for_update=True)
            assert locked is not None
            await plugin_tasks.record_result(session, locked, {"status": "success", "responses": []})
            assert not await queue.report_plugin_result(session, tenant_id, job.id)
        async with tenant_transaction(database.session_factory, prefix, tenant_id) as session:
            assert await queue.park_for_plugin(session, tenant_id, claimed.lease, task.id)
        async with tenant_transaction(database.session_factory, prefix, tenant_id) as session:
            status, attempts = (
                await session.execute(
                    text("SELECT status, attempts FROM plugin_queue WHERE id = :id"), {"id": job.id}
                )
            ).one()
    finally:
        await database.dispose()
    assert status == "pending", "the reported job goes back to its pool instead of waiting forever"
    assert attempts == 0
    jobs = (await client.get(f"/api/jobs/{job.id}", headers=bearer(body))).json()
    assert jobs["status"] == "pending"
