"""A worker that picks a run up while the dispatcher is still marking it handed off must still claim it.

The dispatcher enqueues the ARQ job first and marks the row `queued` afterwards; a worker can start the
job in between, while that UPDATE holds the row's lock. A claim that skipped locked rows lost the run:
the row stayed `queued` with no ARQ job left until the sweep could hand the same run off again (after
ARQ's kept result expired, a minute later). Caught by tests/e2e/test_vinted_e2e.py.
"""

from __future__ import annotations

import asyncio
import uuid

import httpx

from domain.jobs import JobStatus
from ops.config.settings import Settings
from persistence import queue
from persistence.database import connect_database
from persistence.tenancy import tenant_transaction
from tests.integration.test_pipeline import _product, _tenant_with_ebay


async def test_a_claim_waits_for_the_hand_off_mark_instead_of_skipping_the_run(
    client: httpx.AsyncClient, migrated: Settings
) -> None:
    headers = await _tenant_with_ebay(client)
    product = await _product(client, headers)
    accepted = await client.post(
        f"/api/products/{product['id']}/publications", json={"platforms": ["ebay"]}, headers=headers
    )
    assert accepted.status_code == 202, accepted.text
    job_id = uuid.UUID(accepted.json()["jobs"][0]["id"])
    tenant_id = int((await client.get("/api/auth/me", headers=headers)).json()["tenant_id"])
    prefix = migrated.tenant_schema_prefix

    database = connect_database(migrated.async_database_url, pool_size=2)
    try:

        async def claim() -> object:
            async with tenant_transaction(database.session_factory, prefix, tenant_id) as session:
                return await queue.claim(session, tenant_id, job_id, 1, "worker-test", 30)

        async with tenant_transaction(database.session_factory, prefix, tenant_id) as dispatcher:
            await queue.mark_handed_off(dispatcher, [queue.Handoff(tenant_id, job_id, "ebay", 1)])
            claiming = asyncio.create_task(claim())
            await asyncio.sleep(0.3)
            assert not claiming.done(), "the claim gave up on a row locked by the hand-off mark"
        claimed = await asyncio.wait_for(claiming, timeout=10)
    finally:
        await database.dispose()

    assert claimed is not None, "run 1 was skipped while the dispatcher marked it queued"
    job = (await client.get(f"/api/jobs/{job_id}", headers=headers)).json()
    assert job["status"] == JobStatus.RUNNING and job["attempts"] == 1, job
