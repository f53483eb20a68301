"""A sold, archived or deleted product never stays on a marketplace (issue 8's open product bug).

The lifecycle state machine found it at the full scale: a gone product's delist that waited for a plugin
past `PLUGIN_TASK_MAX_AGE` failed `plugin_unavailable` (or was cancelled by the user, or an eBay delist ran
out of attempts), and nothing took the listing down afterwards — a double sale waiting to happen. Over the
real queue, gateway, dispatcher and ARQ workers (Vinted through the plugin routes):

- such a delist keeps waiting for the plugin however long it is away, and lands when it comes back;
- the user cannot cancel it (409 `invalid_state`), while a delist of a product still for sale stays
  cancellable;
- the sync's safety net gives a listing whose delist failed a new delist, after a back-off;
- a failed delist of a deleted product can be retried through the API;
- a sale and the plugin's result take a job and its task in the same order (they deadlocked).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from sqlalchemy import text

from ops.config.settings import Settings
from persistence.database import Database
from persistence.tenancy import tenant_schema, tenant_transaction
from tests.integration.test_job_lifecycle import SUCCESS_BODIES, _publish, _report, _take_task
from tests.integration.test_plugin_queue import _expire_lease, _vinted_product, _vinted_tenant
from tests.pipeline_support import EBAY_CONNECTION, running_pipeline, wait_for_job
from tests.support import assert_problem, pg_connection
from workers.context import WorkerApp
from workers.errors import TransientPlatformError
from workers.platforms.base import JobInput, ListingOutcome
from workers.sync import sync_tenant


async def _live_on_vinted(
    client: httpx.AsyncClient, plugin: httpx.AsyncClient, headers: dict[str, str], product: dict[str, Any]
) -> None:
    """Publish to Vinted and play the plugin creating the item (the pipeline must run)."""
    job_id = await _publish(client, headers, product)
    task = await _take_task(plugin, headers, job_id)
    assert (await _report(plugin, headers, task, "success", SUCCESS_BODIES)).status_code == 200
    assert (await wait_for_job(client, headers, job_id))["status"] == "succeeded"


async def _delists(
    client: httpx.AsyncClient, headers: dict[str, str], product_id: int
) -> list[dict[str, Any]]:
    """The product's delist jobs, newest first (a deleted product's jobs stay listed)."""
    answer = await client.get(
        "/api/jobs", params={"product_id": product_id, "action": "delist"}, headers=headers
    )
    assert answer.status_code == 200, answer.text
    return list(answer.json()["items"])


async def _listing_status(
    database: Database, settings: Settings, tenant_id: int, product_id: int, platform: str
) -> str:
    """The listing's status as stored (a deleted product's listings are no longer shown by the API)."""
    async with tenant_transaction(
        database.session_factory, settings.tenant_schema_prefix, tenant_id
    ) as session:
        status = await session.scalar(
            text("SELECT status FROM platform_listings WHERE product_id = :p AND platform = :platform"),
            {"p": product_id, "platform": platform},
        )
    return str(status)


async def test_a_deleted_products_vinted_delist_outlasts_an_absent_plugin_and_lands_when_it_is_back(
    client: httpx.AsyncClient, plugin: httpx.AsyncClient, migrated: Settings, database: Database
) -> None:
    headers, tenant_id, _account = await _vinted_tenant(client)
    product = await _vinted_product(client, headers)
    settings = migrated.model_copy(update={"plugin_task_max_age": 2})
    async with running_pipeline(settings, "vinted", None):
        await _live_on_vinted(client, plugin, headers, product)
        assert (await client.delete(f"/api/products/{product['id']}", headers=headers)).status_code == 204
        [delist] = await _delists(client, headers, product["id"])
        await wait_for_job(client, headers, delist["id"], until=lambda job: job["status"] == "waiting_plugin")
        # No plugin for longer than the max age: the sweep looks at the wait and keeps it (it used to
        # fail the delist plugin_unavailable, leaving the deleted product on sale on Vinted).
        seen = await wait_for_job(
            client,
            headers,
            delist["id"],
            until=lambda job: job["status"] != "waiting_plugin" or job["next_attempt_at"] is not None,
        )
        assert seen["status"] == "waiting_plugin" and seen["error"] is None, seen
        # The plugin comes back: the task is still there, and the item comes down.
        task = await _take_task(plugin, headers, delist["id"])
        assert task["operation"] == "delete_item"
        assert task["requests"][0]["path"] == "/api/v2/items/5123456789/delete"
        assert (
            await _report(plugin, headers, task, "success", [{"http_status": 200, "body": {}}])
        ).is_success
        done = await wait_for_job(client, headers, delist["id"])
    assert done["status"] == "succeeded", done
    assert await _listing_status(database, migrated, tenant_id, product["id"], "vinted") == "delisted"


async def test_the_delist_of_a_sold_product_cannot_be_cancelled(
    client: httpx.AsyncClient, plugin: httpx.AsyncClient, migrated: Settings
) -> None:
    headers, tenant_id, _account = await _vinted_tenant(client)
    product = await _vinted_product(client, headers)
    async with running_pipeline(migrated, "vinted", None):
        await _live_on_vinted(client, plugin, headers, product)
    # Sold while no worker runs: its delist is pending.
    sold = await client.post(
        f"/api/products/{product['id']}/status", json={"status": "sold"}, headers=headers
    )
    assert sold.status_code == 200, sold.text
    [delist] = await _delists(client, headers, product["id"])
    assert delist["status"] == "pending"
    refused = assert_problem(
        await client.post(f"/api/jobs/{delist['id']}/cancel", headers=headers), 409, "invalid_state"
    )
    assert "sold, archived or deleted" in refused["detail"]
    assert (await client.get(f"/api/jobs/{delist['id']}", headers=headers)).json() == delist
    # Waiting for the plugin, its task under no lease (the plugin took it, then went silent): still no.
    async with running_pipeline(migrated, "vinted", None):
        await wait_for_job(client, headers, delist["id"], until=lambda job: job["status"] == "waiting_plugin")
        task = await _take_task(plugin, headers, delist["id"])
        await _expire_lease(migrated, tenant_id, task["id"])
        waiting = (await client.get(f"/api/jobs/{delist['id']}", headers=headers)).json()
        assert_problem(
            await client.post(f"/api/jobs/{delist['id']}/cancel", headers=headers), 409, "invalid_state"
        )
        assert (await client.get(f"/api/jobs/{delist['id']}", headers=headers)).json() == waiting
        again = await _take_task(plugin, headers, delist["id"])
        assert again["id"] == task["id"], "the task stays in the plugin queue"


async def test_the_delist_of_a_product_still_for_sale_stays_cancellable(
    client: httpx.AsyncClient, plugin: httpx.AsyncClient, migrated: Settings
) -> None:
    headers, tenant_id, _account = await _vinted_tenant(client)
    product = await _vinted_product(client, headers)
    async with running_pipeline(migrated, "vinted", None):
        await _live_on_vinted(client, plugin, headers, product)
        delist = await client.delete(f"/api/products/{product['id']}/publications/vinted", headers=headers)
        assert delist.status_code == 202, delist.text
        job_id = delist.json()["id"]
        await wait_for_job(client, headers, job_id, until=lambda job: job["status"] == "waiting_plugin")
        task = await _take_task(plugin, headers, job_id)
        await _expire_lease(migrated, tenant_id, task["id"])
        cancelled = await client.post(f"/api/jobs/{job_id}/cancel", headers=headers)
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled", cancelled.text
        assert (await plugin.get("/api/plugin/tasks", params={"wait": 0}, headers=headers)).json() == {
            "tasks": []
        }
    listing = [
        row
        for row in (await client.get(f"/api/products/{product['id']}", headers=headers)).json()["listings"]
        if row["platform"] == "vinted"
    ]
    assert listing[0]["status"] == "live", "the seller changed their mind: the item stays on Vinted"


class _FlakyEbay:
    """eBay whose withdrawals time out while `down` is set."""

    def __init__(self) -> None:
        self.down = True
        self.withdrawn: list[str] = []

    async def publish(self, job: JobInput) -> ListingOutcome:
        return ListingOutcome(external_id=f"eb-{job.product.id if job.product else 0}", url=None)

    async def update(self, job: JobInput) -> ListingOutcome:
        return ListingOutcome(external_id=None, url=None)

    async def delist(self, job: JobInput) -> ListingOutcome:
        if self.down:
            raise TransientPlatformError("eBay timed out")
        self.withdrawn.append(str((job.listing or {}).get("external_id")))
        return ListingOutcome(external_id=None, url=None)


async def _let_retries_come_due(database: Database, settings: Settings, tenant_id: int) -> None:
    """Time passes: every retry waiting for its backoff is due now."""
    async with tenant_transaction(
        database.session_factory, settings.tenant_schema_prefix, tenant_id
    ) as session:
        await session.execute(
            text(
                "UPDATE plugin_queue SET next_attempt_at = now() "
                "WHERE status = 'pending' AND next_attempt_at > now()"
            )
        )
        # ...and the dispatcher's sweep, which comes back to the tenant when its next retry is due.
        await session.execute(
            text("UPDATE public.tenant_work SET due_at = now() WHERE tenant_id = :t"), {"t": tenant_id}
        )


async def test_the_safety_net_delists_a_sold_products_listing_whose_delist_ran_out_of_attempts(
    client: httpx.AsyncClient, migrated: Settings, database: Database
) -> None:
    headers, tenant_id, _account = await _vinted_tenant(client)
    assert (
        await client.put("/api/integrations/ebay", json=EBAY_CONNECTION, headers=headers)
    ).status_code == 200
    product = await _vinted_product(client, headers)
    ebay = _FlakyEbay()
    workers: list[WorkerApp] = []
    async with running_pipeline(migrated, "ebay", ebay, configure=workers.append):
        published = await client.post(
            f"/api/products/{product['id']}/publications", json={"platforms": ["ebay"]}, headers=headers
        )
        assert (await wait_for_job(client, headers, published.json()["jobs"][0]["id"]))[
            "status"
        ] == "succeeded"
        sold = await client.post(
            f"/api/products/{product['id']}/status", json={"status": "sold"}, headers=headers
        )
        assert sold.status_code == 200, sold.text
        [first] = await _delists(client, headers, product["id"])
        for _ in range(600):
            job = (await client.get(f"/api/jobs/{first['id']}", headers=headers)).json()
            if job["status"] == "failed":
                break
            await _let_retries_come_due(database, migrated, tenant_id)
            await asyncio.sleep(0.1)
        assert job["status"] == "failed" and job["error"]["code"] == "attempts_exhausted", job
        assert await _listing_status(database, migrated, tenant_id, product["id"], "ebay") == "live"

        # The next sync round, within the back-off: no new failed job every round.
        await sync_tenant(workers[0], tenant_id)
        assert [job["id"] for job in await _delists(client, headers, product["id"])] == [first["id"]]
        # An hour after the failure, eBay answering again: a new delist, and the listing comes down.
        async with tenant_transaction(
            database.session_factory, migrated.tenant_schema_prefix, tenant_id
        ) as session:
            await session.execute(
                text("UPDATE plugin_queue SET updated_at = now() - interval '61 minutes' WHERE id = :id"),
                {"id": first["id"]},
            )
        ebay.down = False
        await sync_tenant(workers[0], tenant_id)
        delists = await _delists(client, headers, product["id"])
        assert len(delists) == 2, delists
        again = await wait_for_job(client, headers, delists[0]["id"])
        # A round while it is under way or after it landed enqueues nothing more.
        await sync_tenant(workers[0], tenant_id)
    assert again["status"] == "succeeded", again
    assert ebay.withdrawn == [f"eb-{product['id']}"]
    assert len(await _delists(client, headers, product["id"])) == 2
    listing = [
        row
        for row in (await client.get(f"/api/products/{product['id']}", headers=headers)).json()["listings"]
        if row["platform"] == "ebay"
    ]
    assert listing[0]["status"] == "delisted"


async def test_a_failed_delist_of_a_deleted_product_can_be_retried(
    client: httpx.AsyncClient, plugin: httpx.AsyncClient, migrated: Settings, database: Database
) -> None:
    headers, tenant_id, _account = await _vinted_tenant(client)
    product = await _vinted_product(client, headers)
    async with running_pipeline(migrated, "vinted", None):
        await _live_on_vinted(client, plugin, headers, product)
        assert (await client.delete(f"/api/products/{product['id']}", headers=headers)).status_code == 204
        [delist] = await _delists(client, headers, product["id"])
        task = await _take_task(plugin, headers, delist["id"])
        refusal = [{"http_status": 400, "body": {"message": "Vinted is busy"}}]
        await _report(plugin, headers, task, "error", refusal)
        failed = await wait_for_job(client, headers, delist["id"])
        assert failed["status"] == "failed" and failed["error"]["code"] == "platform_rejected", failed

        retried = await client.post(f"/api/jobs/{delist['id']}/retry", headers=headers)
        assert retried.status_code == 202, retried.text
        second = await _take_task(plugin, headers, delist["id"])
        assert second["id"] != task["id"] and second["operation"] == "delete_item"
        await _report(plugin, headers, second, "success", [{"http_status": 200, "body": {}}])
        done = await wait_for_job(client, headers, delist["id"])
    assert done["status"] == "succeeded", done
    assert await _listing_status(database, migrated, tenant_id, product["id"], "vinted") == "delisted"


async def test_a_plugin_result_takes_the_job_before_its_task_as_a_sale_does(
    client: httpx.AsyncClient, plugin: httpx.AsyncClient, migrated: Settings
) -> None:
    """A sale holds the product's jobs, then withdraws their tasks; the plugin's result locked the task,
    then the job: the two waited for each other (PostgreSQL aborted one). Now the result route takes the
    job first, so the sale's side gets the task at once and the result follows it."""
    headers, tenant_id, _account = await _vinted_tenant(client)
    product = await _vinted_product(client, headers)
    async with running_pipeline(migrated, "vinted", None):
        job_id = await _publish(client, headers, product)
        task = await _take_task(plugin, headers, job_id)
    schema = tenant_schema(migrated.tenant_schema_prefix, tenant_id)
    async with pg_connection(migrated) as sale_side:
        async with sale_side.transaction():
            # Quicker to look for deadlocks than the request (1 s): a cycle would abort this side.
            await sale_side.execute("SET LOCAL deadlock_timeout = '100ms'")
            await sale_side.execute(
                f'SELECT 1 FROM "{schema}".plugin_queue WHERE id = $1 FOR UPDATE', uuid.UUID(job_id)
            )
            result = asyncio.create_task(_report(plugin, headers, task, "success", SUCCESS_BODIES))
            # The result waits for the job this side holds...
            await asyncio.sleep(0.5)
            assert not result.done()
            # ...while this side goes on to the job's task, as the sale's withdrawal does.
            await sale_side.execute(
                f'UPDATE "{schema}".plugin_tasks SET updated_at = now() WHERE job_id = $1', uuid.UUID(job_id)
            )
        answer = await asyncio.wait_for(result, timeout=30)
    assert answer.status_code == 200, answer.text
    job = (await client.get(f"/api/jobs/{job_id}", headers=headers)).json()
    assert job["status"] == "pending", "the result sent the job back to its pool to finish"
