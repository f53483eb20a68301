"""The job lifecycle's guarantees at the edges a reseller hits, over the real queue, gateway and workers.

One regression test per defect the lifecycle issue found: retry after a refusal, retry through the
publish rules, a sale while a publish is in flight, a plugin that goes away, fencing per run, the Vinted
budget per member and at hand-out, unreadable Vinted answers, internal errors kept from the user.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from datetime import datetime
from typing import Any

import httpx
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy import text

from ops.config.settings import Settings
from persistence import plugin_tasks, queue
from persistence.database import Database
from persistence.tenancy import tenant_schema, tenant_transaction
from tests.integration.test_plugin_queue import (
    _expire_lease,
    _vinted_product,
    _vinted_tenant,
    new_member,
)
from tests.operator_support import operator_headers
from tests.pipeline_support import running_pipeline, wait_for_job
from tests.support import assert_problem, pg_connection

SUCCESS_BODIES = [
    {"http_status": 200, "body": {"id": 8_000_000_001}},
    {"http_status": 200, "body": {"item": {"id": 5_123_456_789}}},
]


async def _publish(client: httpx.AsyncClient, headers: dict[str, str], product: dict[str, Any]) -> str:
    accepted = await client.post(
        f"/api/products/{product['id']}/publications", json={"platforms": ["vinted"]}, headers=headers
    )
    assert accepted.status_code == 202, accepted.text
    return str(accepted.json()["jobs"][0]["id"])


async def _take_task(plugin: httpx.AsyncClient, headers: dict[str, str], job_id: str) -> dict[str, Any]:
    poll = await plugin.get("/api/plugin/tasks", params={"wait": 10, "limit": 10}, headers=headers)
    assert poll.status_code == 200, poll.text
    tasks = [task for task in poll.json()["tasks"] if task["job_id"] == job_id]
    assert len(tasks) == 1, poll.json()
    return dict(tasks[0])


async def _report(
    plugin: httpx.AsyncClient,
    headers: dict[str, str],
    task: dict[str, Any],
    status: str,
    responses: list[dict[str, Any]],
) -> httpx.Response:
    return await plugin.post(
        f"/api/plugin/tasks/{task['id']}/result",
        json={"lease_id": task["lease_id"], "status": status, "responses": responses},
        headers=headers,
    )


def _refusal(message: str) -> list[dict[str, Any]]:
    return [
        {"http_status": 200, "body": {"id": 1}},
        {
            "http_status": 400,
            "body": {"message": message, "errors": [{"field": "brand", "value": "unknown"}]},
        },
    ]


async def _listing(
    client: httpx.AsyncClient, headers: dict[str, str], product_id: int
) -> dict[str, Any] | None:
    product = (await client.get(f"/api/products/{product_id}", headers=headers)).json()
    listings = [listing for listing in product["listings"] if listing["platform"] == "vinted"]
    return listings[0] if listings else None


async def test_a_refused_vinted_publish_retried_hands_the_plugin_a_new_task(
    client: httpx.AsyncClient, plugin: httpx.AsyncClient, migrated: Settings
) -> None:
    headers, _tenant, _account = await _vinted_tenant(client)
    product = await _vinted_product(client, headers)
    async with running_pipeline(migrated, "vinted", None):
        job_id = await _publish(client, headers, product)
        first = await _take_task(plugin, headers, job_id)
        assert (await _report(plugin, headers, first, "error", _refusal("Brand unknown"))).status_code == 200
        failed = await wait_for_job(client, headers, job_id)
        assert failed["status"] == "failed" and failed["error"]["code"] == "platform_rejected"

        retried = await client.post(f"/api/jobs/{job_id}/retry", headers=headers)
        assert retried.status_code == 202, retried.text
        second = await _take_task(plugin, headers, job_id)
        assert second["id"] != first["id"], "a retry must hand the plugin a new task, not re-read the old one"
        assert (await _report(plugin, headers, second, "success", SUCCESS_BODIES)).status_code == 200
        done = await wait_for_job(client, headers, job_id)
    assert done["status"] == "succeeded", done
    listing = await _listing(client, headers, product["id"])
    assert listing is not None and listing["status"] == "live" and listing["external_id"] == "5123456789"
    history = (await client.get(f"/api/products/{product['id']}/publications", headers=headers)).json()
    assert [row["status"] for row in history["history"]] == ["succeeded", "failed"]


async def test_a_retried_publish_passes_the_rules_of_a_new_publish(
    client: httpx.AsyncClient, plugin: httpx.AsyncClient, migrated: Settings
) -> None:
    headers, _tenant, _account = await _vinted_tenant(client)
    product = await _vinted_product(client, headers)
    async with running_pipeline(migrated, "vinted", None):
        job_a = await _publish(client, headers, product)
        task = await _take_task(plugin, headers, job_a)
        await _report(plugin, headers, task, "error", _refusal("Refused"))
        assert (await wait_for_job(client, headers, job_a))["status"] == "failed"
        # The user publishes again (a failed listing may be published again)...
        job_b = await _publish(client, headers, product)
        # ...so retrying the first one would make a second Vinted listing.
        assert_problem(await client.post(f"/api/jobs/{job_a}/retry", headers=headers), 409, "already_listed")
        await client.post(f"/api/jobs/{job_b}/cancel", headers=headers)
        # A sold product is never retried back onto a marketplace.
        sold = await client.post(
            f"/api/products/{product['id']}/status", json={"status": "sold"}, headers=headers
        )
        assert sold.status_code == 200, sold.text
        assert_problem(await client.post(f"/api/jobs/{job_a}/retry", headers=headers), 409, "invalid_state")
    job = (await client.get(f"/api/jobs/{job_a}", headers=headers)).json()
    assert job["status"] == "failed", "a refused retry changes nothing"


async def test_a_sale_before_the_plugin_took_the_task_cancels_the_publish(
    client: httpx.AsyncClient, plugin: httpx.AsyncClient, migrated: Settings
) -> None:
    headers, _tenant, _account = await _vinted_tenant(client)
    product = await _vinted_product(client, headers)
    async with running_pipeline(migrated, "vinted", None):
        job_id = await _publish(client, headers, product)
        await wait_for_job(client, headers, job_id, until=lambda job: job["status"] == "waiting_plugin")
        sold = await client.post(
            f"/api/products/{product['id']}/status", json={"status": "sold"}, headers=headers
        )
        assert sold.status_code == 200, sold.text
        job = (await client.get(f"/api/jobs/{job_id}", headers=headers)).json()
        assert job["status"] == "cancelled" and job["error"]["code"] == "product_changed", job
        poll = await plugin.get("/api/plugin/tasks", params={"wait": 0}, headers=headers)
        assert poll.json() == {"tasks": []}, "a withdrawn task never reaches Vinted"
    listing = await _listing(client, headers, product["id"])
    assert listing is not None and listing["status"] != "live"


async def test_a_sale_while_the_plugin_runs_the_create_delists_it_as_soon_as_it_lands(
    client: httpx.AsyncClient, plugin: httpx.AsyncClient, migrated: Settings
) -> None:
    headers, _tenant, _account = await _vinted_tenant(client)
    product = await _vinted_product(client, headers)
    async with running_pipeline(migrated, "vinted", None):
        job_id = await _publish(client, headers, product)
        task = await _take_task(plugin, headers, job_id)
        sold = await client.post(
            f"/api/products/{product['id']}/status", json={"status": "sold"}, headers=headers
        )
        assert sold.status_code == 200, sold.text
        # The plugin may already have created the item: the job keeps waiting for what it reports.
        assert (await client.get(f"/api/jobs/{job_id}", headers=headers)).json()["status"] == "waiting_plugin"
        await _report(plugin, headers, task, "success", SUCCESS_BODIES)
        assert (await wait_for_job(client, headers, job_id))["status"] == "succeeded"
        delists = []
        for _ in range(100):
            listed = await client.get(
                "/api/jobs", params={"product_id": product["id"], "action": "delist"}, headers=headers
            )
            delists = listed.json()["items"]
            if delists and delists[0]["status"] == "waiting_plugin":
                break
            await asyncio.sleep(0.1)
        assert len(delists) == 1, "the listing that landed for a sold product is taken down"
        delete = await _take_task(plugin, headers, delists[0]["id"])
        assert delete["operation"] == "delete_item"
        assert delete["requests"][0]["path"] == "/api/v2/items/5123456789/delete"
        await _report(plugin, headers, delete, "success", [{"http_status": 200, "body": {}}])
        assert (await wait_for_job(client, headers, delists[0]["id"]))["status"] == "succeeded"
    listing = await _listing(client, headers, product["id"])
    assert listing is not None and listing["status"] == "delisted"


async def test_a_plugin_that_went_away_neither_blocks_cancel_nor_waits_forever(
    client: httpx.AsyncClient, plugin: httpx.AsyncClient, migrated: Settings
) -> None:
    headers, tenant_id, _account = await _vinted_tenant(client)
    product = await _vinted_product(client, headers)
    async with running_pipeline(migrated, "vinted", None):
        job_id = await _publish(client, headers, product)
        task = await _take_task(plugin, headers, job_id)
        assert_problem(await client.post(f"/api/jobs/{job_id}/cancel", headers=headers), 409, "invalid_state")
        # The plugin vanished: its lease runs out, and the job can be cancelled.
        await _expire_lease(migrated, tenant_id, task["id"])
        cancelled = await client.post(f"/api/jobs/{job_id}/cancel", headers=headers)
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled", cancelled.text
        assert (await plugin.get("/api/plugin/tasks", params={"wait": 0}, headers=headers)).json() == {
            "tasks": []
        }
        # Its pending listing no longer blocks publishing that product again.
        again = await _publish(client, headers, product)
        assert again != job_id


async def test_a_task_nobody_runs_fails_plugin_unavailable_after_its_max_age(
    client: httpx.AsyncClient, plugin: httpx.AsyncClient, migrated: Settings
) -> None:
    headers, _tenant, _account = await _vinted_tenant(client)
    product = await _vinted_product(client, headers)
    settings = migrated.model_copy(update={"plugin_task_max_age": 2})
    async with running_pipeline(settings, "vinted", None):
        job_id = await _publish(client, headers, product)
        failed = await wait_for_job(client, headers, job_id, timeout=20)
    assert failed["status"] == "failed" and failed["error"]["code"] == "plugin_unavailable", failed
    assert "plugin" in failed["error"]["message"]
    assert (await plugin.get("/api/plugin/tasks", params={"wait": 0}, headers=headers)).json() == {
        "tasks": []
    }
    listing = await _listing(client, headers, product["id"])
    assert listing is not None and listing["status"] == "failed"
    # The operator console counts it among the last hour's failures, though no worker run failed it.
    ops = await operator_headers(client, settings)
    overview = (await client.get("/api/ops/overview", headers=ops)).json()
    assert overview["platforms"]["vinted"]["failed_last_hour"] >= 1


async def test_writes_are_fenced_per_run_not_per_worker_process(
    client: httpx.AsyncClient, migrated: Settings, database: Database
) -> None:
    headers, tenant_id, _account = await _vinted_tenant(client)
    product = await _vinted_product(client, headers)
    job_id = uuid.UUID(await _publish(client, headers, product))
    prefix = migrated.tenant_schema_prefix
    async with tenant_transaction(database.session_factory, prefix, tenant_id) as session:
        first = await queue.claim(session, tenant_id, job_id, 1, "worker-A", 10)
    assert first is not None
    async with tenant_transaction(database.session_factory, prefix, tenant_id) as session:
        await session.execute(
            text("UPDATE plugin_queue SET lease_expires_at = now() - interval '1 second' WHERE id = :id"),
            {"id": job_id},
        )
        await queue.recover_expired_leases(session, tenant_id)
        # The next run lands in the same worker process.
        second = await queue.claim(session, tenant_id, job_id, 2, "worker-A", 10)
    assert second is not None and second.lease != first.lease
    async with tenant_transaction(database.session_factory, prefix, tenant_id) as session:
        assert not await queue.renew_lease(session, first.lease, 10)
        assert not await queue.save_progress(session, first.lease, {"task_id": "stale"})
        assert not await queue.succeed(session, tenant_id, first.lease, queue.Landing("1", None))
        assert not await queue.fail(session, tenant_id, first.lease, {"code": "x", "message": "stale"})
        assert await queue.save_progress(session, second.lease, {"step": "fresh"})
    job = (await client.get(f"/api/jobs/{job_id}", headers=headers)).json()
    assert job["status"] == "running" and job["attempts"] == 2


async def test_a_claim_of_a_publish_whose_product_went_away_ends_it_as_product_changed(
    client: httpx.AsyncClient, migrated: Settings, database: Database
) -> None:
    """The claim itself checks the product: a publish that never reached the marketplace, whose product
    was sold by a write that did not go through the sale's cancellation, fails at its claim."""
    headers, tenant_id, _account = await _vinted_tenant(client)
    product = await _vinted_product(client, headers)
    job_id = uuid.UUID(await _publish(client, headers, product))
    prefix = migrated.tenant_schema_prefix
    async with tenant_transaction(database.session_factory, prefix, tenant_id) as session:
        sold = text("UPDATE products SET status = 'sold' WHERE id = :id")
        await session.execute(sold, {"id": product["id"]})
    async with tenant_transaction(database.session_factory, prefix, tenant_id) as session:
        assert await queue.claim(session, tenant_id, job_id, 1, "worker-A", 10) is None
    job = (await client.get(f"/api/jobs/{job_id}", headers=headers)).json()
    assert job["status"] == "failed" and job["error"]["code"] == "product_changed", job
    history = (await client.get(f"/api/products/{product['id']}/publications", headers=headers)).json()
    assert [row["status"] for row in history["history"]] == ["failed"]
    listing = await _listing(client, headers, product["id"])
    assert listing is not None and listing["status"] == "failed", "the pending listing is released"


class _SlowTwoStepAdapter:
    """A marketplace step in two calls with a pause between them; records the calls it made."""

    def __init__(self) -> None:
        #: (step, job, run): the worker also serves jobs earlier tests left queued, and the run that takes
        #: the job over after the lease is lost may legitimately go on
        self.calls: list[tuple[str, str, int]] = []
        self.started: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)
        #: set when a job's first run is over: stopped in its pause, or gone on to its second call
        self.first_run_over: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)

    async def publish(self, job: Any) -> Any:
        job_id, run = str(job.job_id), job.lease.run
        self.calls.append(("create", job_id, run))
        self.started[job_id].set()
        try:
            await asyncio.sleep(5)
            self.calls.append(("activate", job_id, run))
        finally:
            if run == 1:
                self.first_run_over[job_id].set()
        raise AssertionError("a run that lost its lease went on to its next marketplace call")

    update = delist = publish


async def test_a_run_that_loses_its_lease_is_stopped_before_its_next_marketplace_call(
    client: httpx.AsyncClient, migrated: Settings, database: Database
) -> None:
    headers, tenant_id, _account = await _vinted_tenant(client)
    product = await _vinted_product(client, headers)
    adapter = _SlowTwoStepAdapter()

    def fast_heartbeat(app: Any) -> None:
        app.heartbeat_seconds = 0.2

    async with running_pipeline(migrated, "vinted", adapter, configure=fast_heartbeat):  # type: ignore[arg-type]
        job_id = await _publish(client, headers, product)

        # Steal the lease while the run sits between its two calls, whatever the machine's load: the
        # heartbeat (every 0.2 s) has the rest of the 5 s pause to notice and stop the run.
        await asyncio.wait_for(adapter.started[str(job_id)].wait(), timeout=60)
        # Another run took the job over (what a stalled heartbeat past its lease leads to).
        async with tenant_transaction(
            database.session_factory, migrated.tenant_schema_prefix, tenant_id
        ) as s:
            await s.execute(
                text("UPDATE plugin_queue SET lease_owner = 'someone-else' WHERE id = :id"), {"id": job_id}
            )
        # Over once the heartbeat stops it (the pause lasts 5 s: a run not stopped makes its second call).
        await asyncio.wait_for(adapter.first_run_over[str(job_id)].wait(), timeout=30)
    first_run = [step for step, job, run in adapter.calls if job == str(job_id) and run == 1]
    assert first_run == ["create"], adapter.calls


async def test_the_budget_belongs_to_the_vinted_member_across_accounts_and_tenants(
    client: httpx.AsyncClient, plugin: httpx.AsyncClient, migrated: Settings
) -> None:
    member = new_member()
    headers, _tenant, account = await _vinted_tenant(client, member)
    other_headers, _other, other_account = await _vinted_tenant(client, member)
    product = await _vinted_product(client, headers)
    async with running_pipeline(migrated, "vinted", None):
        job_id = await _publish(client, headers, product)
        await wait_for_job(client, headers, job_id, until=lambda job: job["status"] == "waiting_plugin")

    async def used(h: dict[str, str], account_id: int) -> int:
        answer = await client.get(f"/api/integrations/vinted/accounts/{account_id}/rate-limit", headers=h)
        return int(answer.json()["used"])

    assert await used(headers, account) == 2
    assert await used(other_headers, other_account) == 2, "another tenant naming the member shares its budget"
    # Disconnecting and reconnecting the member does not give it a fresh budget.
    assert (await client.delete("/api/integrations/vinted", headers=headers)).status_code == 204
    again = await client.post(
        "/api/integrations/vinted/accounts",
        json={"vinted_user_id": int(member), "username": "again"},
        headers=headers,
    )
    assert await used(headers, int(again.json()["id"])) == 2


async def test_losing_redis_does_not_reset_the_members_budget(
    client: httpx.AsyncClient, migrated: Settings, redis_url: str
) -> None:
    headers, _tenant, account = await _vinted_tenant(client)
    products = [await _vinted_product(client, headers) for _ in range(2)]
    async with running_pipeline(migrated, "vinted", None):
        first = await _publish(client, headers, products[0])
        await wait_for_job(client, headers, first, until=lambda job: job["status"] == "waiting_plugin")
        redis = Redis.from_url(redis_url)
        try:
            await redis.flushdb()
        finally:
            await redis.aclose()
        second = await _publish(client, headers, products[1])
        await wait_for_job(client, headers, second, until=lambda job: job["status"] == "waiting_plugin")
    usage = (
        await client.get(f"/api/integrations/vinted/accounts/{account}/rate-limit", headers=headers)
    ).json()
    assert usage["used"] == 4, "the window was rebuilt from PostgreSQL after Redis lost it"


async def test_hand_out_never_exceeds_the_members_budget_whatever_was_released(
    client: httpx.AsyncClient, plugin: httpx.AsyncClient, migrated: Settings, database: Database
) -> None:
    """Tasks released while no plugin ran go out at the budget's pace, not in one burst (even 50 at once)."""
    headers, tenant_id, account = await _vinted_tenant(client)
    member = await _member_of(client, headers, account)
    await _release_tasks(database, migrated, tenant_id, account, member, count=50)
    poll = await plugin.get("/api/plugin/tasks", params={"wait": 0, "limit": 50}, headers=headers)
    assert len(poll.json()["tasks"]) == 40, "at most 40 requests of one member handed out in a window"
    assert (
        await plugin.get("/api/plugin/tasks", params={"wait": 0, "limit": 50}, headers=headers)
    ).json() == {"tasks": []}


async def test_the_hand_out_property_over_a_short_window(
    client: httpx.AsyncClient, migrated: Settings, database: Database
) -> None:
    """200 tasks of one member released while no plugin runs; a plugin claiming as fast as it can."""
    from gateway.app import create_app
    from migrations.runner import upgrade_tenant_schema

    limit, window = 40, 2
    settings = migrated.model_copy(update={"vinted_rate_limit": limit, "vinted_rate_window_seconds": window})
    headers, tenant_id, account = await _vinted_tenant(client)
    member = await _member_of(client, headers, account)
    await _release_tasks(database, settings, tenant_id, account, member, count=200)
    application = create_app(settings, tenant_migrator=upgrade_tenant_schema)
    handed = 0
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as fast_plugin:
            deadline = asyncio.get_running_loop().time() + 3.5 * window
            while asyncio.get_running_loop().time() < deadline and handed < 200:
                poll = await fast_plugin.get(
                    "/api/plugin/tasks", params={"wait": 0, "limit": 50}, headers=headers
                )
                handed += len(poll.json()["tasks"])
    async with database.engine.connect() as connection:
        moments = sorted(
            row[0]
            for row in await connection.execute(
                text(
                    "SELECT handed_at FROM public.vinted_request_log "
                    "WHERE member = :m AND handed_at IS NOT NULL"
                ),
                {"m": member},
            )
        )
    assert len(moments) == handed and handed >= 2 * limit, handed
    for index, start in enumerate(moments):
        in_window = [moment for moment in moments[index:] if (moment - start).total_seconds() < window]
        assert len(in_window) <= limit, f"{len(in_window)} requests handed out within {window}s of {start}"


async def _member_of(client: httpx.AsyncClient, headers: dict[str, str], account: int) -> str:
    accounts = (await client.get("/api/integrations/vinted/accounts", headers=headers)).json()["items"]
    return str(next(item["vinted_user_id"] for item in accounts if item["id"] == account))


async def _release_tasks(
    database: Database, settings: Settings, tenant_id: int, account: int, member: str, *, count: int
) -> None:
    """What the Vinted pool leaves behind over several windows while the plugin is away: ready tasks."""
    async with tenant_transaction(
        database.session_factory, settings.tenant_schema_prefix, tenant_id
    ) as session:
        for _ in range(count):
            job = await queue.enqueue_job(
                session, tenant_id=tenant_id, platform="vinted", action="delist", product_id=None
            )
            await plugin_tasks.create_task(
                session,
                tenant_id=tenant_id,
                job_id=job.id,
                vinted_account_id=account,
                vinted_user_id=member,
                operation="delete_item",
                requests=[{"method": "POST", "path": "/api/v2/items/1/delete", "body": None}],
            )


async def test_a_long_poll_whose_client_has_gone_claims_nothing(
    app: FastAPI, client: httpx.AsyncClient, migrated: Settings, database: Database
) -> None:
    headers, tenant_id, account = await _vinted_tenant(client)
    member = await _member_of(client, headers, account)
    await _release_tasks(database, migrated, tenant_id, account, member, count=1)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/api/plugin/tasks",
        "raw_path": b"/api/plugin/tasks",
        "query_string": b"wait=0&limit=10",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"authorization", headers["Authorization"].encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    await app(scope, receive, send)
    async with tenant_transaction(
        database.session_factory, migrated.tenant_schema_prefix, tenant_id
    ) as session:
        leased = await session.scalar(text("SELECT count(*) FROM plugin_tasks WHERE lease_id IS NOT NULL"))
    assert leased == 0, "a client that went away must not hide tasks under a lease"


async def test_any_result_body_the_plugin_sends_is_recorded_and_read(
    client: httpx.AsyncClient, plugin: httpx.AsyncClient, migrated: Settings
) -> None:
    headers, _tenant, _account = await _vinted_tenant(client)
    products = [await _vinted_product(client, headers) for _ in range(2)]
    async with running_pipeline(migrated, "vinted", None):
        odd = await _publish(client, headers, products[0])
        task = await _take_task(plugin, headers, odd)
        shape = [{"http_status": 422, "body": {"errors": 5, "message": "La marque est invalide"}}]
        assert (await _report(plugin, headers, task, "error", shape)).status_code == 200
        failed = await wait_for_job(client, headers, odd)
        assert failed["status"] == "failed" and failed["error"]["code"] == "platform_rejected", failed
        assert failed["attempts"] == 1, "a permanent refusal is not retried"
        assert "La marque est invalide" in failed["error"]["message"]

        nul = await _publish(client, headers, products[1])
        task = await _take_task(plugin, headers, nul)
        body = [{"http_status": 400, "body": {"message": "bad\u0000byte", "errors": ["no\u0000pe"]}}]
        reported = await _report(plugin, headers, task, "error", body)
        assert reported.status_code == 200, reported.text
        again = await _report(plugin, headers, task, "error", body)
        assert again.status_code == 200, "reporting the same result again changes nothing"
        failed = await wait_for_job(client, headers, nul)
    assert failed["status"] == "failed" and "badbyte" in failed["error"]["message"]


class _CrashingAdapter:
    async def publish(self, job: Any) -> Any:
        raise RuntimeError("(asyncpg) SELECT password_hash FROM users WHERE email = 'x@y.z'")

    update = delist = publish


async def test_an_internal_error_never_reaches_the_user(
    client: httpx.AsyncClient, migrated: Settings
) -> None:
    headers, _tenant, _account = await _vinted_tenant(client)
    product = await _vinted_product(client, headers)
    history: list[dict[str, Any]] = []
    async with running_pipeline(migrated, "vinted", _CrashingAdapter()):  # type: ignore[arg-type]
        await _publish(client, headers, product)
        for _ in range(200):
            answer = await client.get(f"/api/products/{product['id']}/publications", headers=headers)
            history = [row for row in answer.json()["history"] if row["status"] == "retrying"]
            if history:
                break
            await asyncio.sleep(0.05)
    assert history, "the crashed attempt is recorded as one to retry"
    message = history[0]["error_message"]
    assert "SELECT" not in message and "password" not in message and "asyncpg" not in message
    assert message.startswith("An unexpected error")


async def test_a_tenant_whose_jobs_only_wait_for_the_plugin_leaves_the_sweep(
    client: httpx.AsyncClient, migrated: Settings, database: Database
) -> None:
    headers, tenant_id, _account = await _vinted_tenant(client)
    product = await _vinted_product(client, headers)
    async with running_pipeline(migrated, "vinted", None) as dispatcher:
        job_id = await _publish(client, headers, product)
        await wait_for_job(client, headers, job_id, until=lambda job: job["status"] == "waiting_plugin")
        await dispatcher.sweep()
        await asyncio.sleep(0.5)
        async with database.engine.connect() as connection:
            due: datetime | None = await connection.scalar(
                text(
                    "SELECT due_at - now() > interval '1 hour' FROM public.tenant_work WHERE tenant_id = :t"
                ),
                {"t": tenant_id},
            )
            swept = await connection.scalar(
                text("SELECT count(*) FROM public.tenant_work WHERE tenant_id = :t AND due_at <= now()"),
                {"t": tenant_id},
            )
    assert due is True, "the sweep comes back only when the plugin wait can expire"
    assert swept == 0


async def test_queued_runs_arq_still_holds_are_not_handed_again(
    client: httpx.AsyncClient, migrated: Settings, database: Database
) -> None:
    """Under a backlog, a sweep must not re-hand every queued row (a Redis write each, every sweep)."""
    from workers.dispatcher import Dispatcher

    headers, tenant_id, _account = await _vinted_tenant(client)
    products = [await _vinted_product(client, headers) for _ in range(5)]
    dispatcher = Dispatcher(migrated, sweep_seconds=60)
    try:
        for product in products:
            await _publish(client, headers, product)

        async def sweep_this_tenant() -> int:
            async with database.engine.connect() as connection:
                version = await connection.scalar(
                    text("SELECT version FROM public.tenant_work WHERE tenant_id = :t"), {"t": tenant_id}
                )
            return await dispatcher._sweep_tenant(tenant_id, int(version))

        assert await sweep_this_tenant() == 5  # handed to ARQ; no worker runs, so ARQ keeps them
        async with tenant_transaction(
            database.session_factory, migrated.tenant_schema_prefix, tenant_id
        ) as s:
            await s.execute(text("UPDATE plugin_queue SET handed_off_at = now() - interval '1 minute'"))
        assert await sweep_this_tenant() == 0, "runs ARQ still holds were handed again"
    finally:
        await dispatcher.close()


async def test_a_sale_chosen_as_a_deadlock_victim_runs_again_instead_of_answering_500(
    client: httpx.AsyncClient, migrated: Settings
) -> None:
    """A sale locks the product, then the product's unfinished jobs; a worker holds a job, then reads the
    product. When PostgreSQL breaks that cycle by aborting the sale's transaction, the request runs again
    (it answered 500 in CI before)."""
    headers, tenant_id, _account = await _vinted_tenant(client)
    product = await _vinted_product(client, headers)
    job_id = await _publish(client, headers, product)
    schema = tenant_schema(migrated.tenant_schema_prefix, tenant_id)
    async with pg_connection(migrated) as worker_side:
        async with worker_side.transaction():
            # Slower to look for deadlocks than the request (1 s): PostgreSQL aborts the request's side.
            await worker_side.execute("SET LOCAL deadlock_timeout = '10s'")
            await worker_side.execute(
                f'SELECT 1 FROM "{schema}".plugin_queue WHERE id = $1 FOR UPDATE', uuid.UUID(job_id)
            )
            sale = asyncio.create_task(
                client.post(f"/api/products/{product['id']}/status", json={"status": "sold"}, headers=headers)
            )
            # The sale has updated the product and now waits for the job this side holds...
            await asyncio.sleep(0.5)
            assert not sale.done()
            # ...which then waits for the product: a cycle, broken by aborting the sale's transaction.
            await worker_side.execute(
                f'SELECT 1 FROM "{schema}".products WHERE id = $1 FOR UPDATE', int(product["id"])
            )
        answer = await asyncio.wait_for(sale, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "sold"
    job = (await client.get(f"/api/jobs/{job_id}", headers=headers)).json()
    assert job["status"] == "cancelled", "the sale's second run cancelled the publish that never left"
