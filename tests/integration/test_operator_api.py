"""The operator routes over the real queue, gateway, dispatcher and a real Vinted worker.

Two resellers publish to Vinted; one plugin's request is refused. The operator sees the failure, the
pool's figures and each member's budget, and retries the job through the tenant's own retry path.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from ops.config.settings import Settings
from tests.integration.test_job_lifecycle import SUCCESS_BODIES, _publish, _refusal, _report, _take_task
from tests.integration.test_plugin_queue import _vinted_product, _vinted_tenant, new_member
from tests.operator_support import operator_headers
from tests.pipeline_support import running_pipeline, wait_for_job
from tests.support import assert_problem


@pytest.fixture
async def plugin(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=40) as http:
        yield http


async def _eventually(
    client: httpx.AsyncClient,
    path: str,
    headers: dict[str, str],
    until: Callable[[dict[str, Any]], bool],
    timeout: float = 15.0,
) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    body: dict[str, Any] = {}
    while asyncio.get_running_loop().time() < deadline:
        response = await client.get(path, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        if until(body):
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"{path} never got there; last {body}")


async def _all_failed(client: httpx.AsyncClient, ops: dict[str, str]) -> set[str]:
    found: set[str] = set()
    params: dict[str, Any] = {"status": "failed", "limit": 200}
    while True:
        body = (await client.get("/api/ops/jobs", params=params, headers=ops)).json()
        assert all(item["status"] == "failed" for item in body["items"])
        found |= {item["id"] for item in body["items"]}
        if body["next_cursor"] is None:
            return found
        params["cursor"] = body["next_cursor"]


def _budget(body: dict[str, Any], member: str) -> dict[str, Any] | None:
    return next((item for item in body["items"] if item["vinted_user_id"] == member), None)


async def test_an_operator_sees_a_failure_and_the_budgets_and_retries_the_job(
    client: httpx.AsyncClient, plugin: httpx.AsyncClient, migrated: Settings
) -> None:
    ops = await operator_headers(client, migrated)
    member_a, member_b = new_member(), new_member()
    headers_a, tenant_a, _account = await _vinted_tenant(client, member_a)
    headers_b, tenant_b, _account = await _vinted_tenant(client, member_b)
    product_a = await _vinted_product(client, headers_a)
    product_b = await _vinted_product(client, headers_b)
    async with running_pipeline(migrated, "vinted", None):
        job_a = await _publish(client, headers_a, product_a)
        job_b = await _publish(client, headers_b, product_b)
        await wait_for_job(client, headers_b, job_b, until=lambda job: job["status"] == "waiting_plugin")
        await wait_for_job(client, headers_a, job_a, until=lambda job: job["status"] == "waiting_plugin")

        # Released, not yet handed to a plugin: the member's task waits; the window already counts it.
        budgets = (await client.get("/api/ops/vinted-budgets", headers=ops)).json()
        waiting = _budget(budgets, member_b)
        assert waiting is not None and waiting["waiting_tasks"] == 1 and waiting["tenant_ids"] == [tenant_b]
        assert waiting["limit"] == 40 and 0 < waiting["used"] <= 40 and waiting["resets_at"] is not None

        overview = await _eventually(
            client,
            "/api/ops/overview",
            ops,
            lambda body: (
                body["platforms"]["vinted"]["waiting_plugin"] >= 2
                and body["platforms"]["vinted"]["workers"] >= 1
            ),
        )
        assert [item["platform"] for item in overview["items"]] == ["vinted", "ebay", "etsy", "ai"]
        assert any(worker["pool"] == "vinted" and worker["alive"] for worker in overview["workers"])

        task = await _take_task(plugin, headers_a, job_a)
        handed = _budget((await client.get("/api/ops/vinted-budgets", headers=ops)).json(), member_a)
        assert handed is not None and handed["waiting_tasks"] == 0
        assert (await _report(plugin, headers_a, task, "error", _refusal("Brand unknown"))).status_code == 200
        failed = await wait_for_job(client, headers_a, job_a)
        assert failed["status"] == "failed"

        listed = (
            await client.get("/api/ops/jobs", params={"status": "failed", "tenant_id": tenant_a}, headers=ops)
        ).json()
        [row] = [item for item in listed["items"] if item["id"] == job_a]
        assert row["tenant_id"] == tenant_a and row["error"]["code"] == "platform_rejected"
        assert "Brand unknown" in row["error"]["message"]
        assert all(item["status"] == "failed" for item in listed["items"])
        # Without a tenant filter, the cursor walks every tenant that had a failure, and finds it.
        assert job_a in await _all_failed(client, ops)
        figures = await _eventually(
            client,
            "/api/ops/overview",
            ops,
            lambda body: body["platforms"]["vinted"]["failed_last_hour"] >= 1,
        )
        assert figures["platforms"]["vinted"]["jobs_per_minute"] > 0
        # Prometheus serves the same figures.
        metrics = (await client.get("/metrics")).text
        failed_line = next(
            line
            for line in metrics.splitlines()
            if line.startswith("stoflow_jobs_failed_last_hour{") and 'platform="vinted"' in line
        )
        assert float(failed_line.rsplit(" ", 1)[1]) >= 1
        assert f'stoflow_vinted_budget_used{{member="{member_a}"}}' in metrics
        assert 'stoflow_workers_alive{platform="vinted"}' in metrics
        assert 'stoflow_queue_jobs{platform="vinted",state="waiting_plugin"}' in metrics

        # A tenant's job named under another tenant is as missing as an unknown one.
        assert_problem(
            await client.post(f"/api/ops/jobs/{tenant_b}/{job_a}/retry", headers=ops), 404, "not_found"
        )
        assert_problem(
            await client.post(f"/api/ops/jobs/999999/{job_a}/retry", headers=ops), 404, "not_found"
        )
        assert_problem(
            await client.post(f"/api/ops/jobs/{tenant_a}/nope/retry", headers=ops), 404, "not_found"
        )
        retried = await client.post(f"/api/ops/jobs/{tenant_a}/{job_a}/retry", headers=ops)
        assert retried.status_code == 202, retried.text
        assert retried.json()["status"] == "pending" and retried.json()["tenant_id"] == tenant_a
        again = await client.post(f"/api/ops/jobs/{tenant_a}/{job_a}/retry", headers=ops)
        assert_problem(again, 409, "invalid_state")

        second = await _take_task(plugin, headers_a, job_a)
        assert second["id"] != task["id"]
        assert (await _report(plugin, headers_a, second, "success", SUCCESS_BODIES)).status_code == 200
        done = await wait_for_job(client, headers_a, job_a)
    assert done["status"] == "succeeded"


async def test_the_jobs_of_every_tenant_page_by_cursor_and_filter(
    client: httpx.AsyncClient, migrated: Settings
) -> None:
    ops = await operator_headers(client, migrated)
    tenants = []
    for _ in range(3):
        headers, tenant, _account = await _vinted_tenant(client)
        product = await _vinted_product(client, headers)
        await _publish(client, headers, product)
        tenants.append(tenant)
    seen: list[tuple[int, str]] = []
    cursor: str | None = None
    for _ in range(5000):
        params: dict[str, Any] = {"limit": 1, "status": "pending"}
        if cursor:
            params["cursor"] = cursor
        body = (await client.get("/api/ops/jobs", params=params, headers=ops)).json()
        seen += [(item["tenant_id"], item["id"]) for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    mine = [tenant for tenant, _job in seen if tenant in tenants]
    assert mine == sorted(tenants), "each tenant's job once, tenants in order"
    assert len(seen) == len(set(seen))
    one = (await client.get("/api/ops/jobs", params={"tenant_id": tenants[1]}, headers=ops)).json()
    assert [item["tenant_id"] for item in one["items"]] == [tenants[1]]
    assert (await client.get("/api/ops/jobs", params={"tenant_id": 999_999}, headers=ops)).json()[
        "items"
    ] == []
    assert_problem(
        await client.get("/api/ops/jobs", params={"cursor": "forged"}, headers=ops), 422, "invalid_cursor"
    )
    assert_problem(
        await client.get("/api/ops/jobs", params={"limit": 0}, headers=ops), 422, "validation_error"
    )
    assert_problem(
        await client.get("/api/ops/jobs", params={"status": "nope"}, headers=ops), 422, "validation_error"
    )


async def test_a_page_visits_a_bounded_number_of_schemas_and_the_cursor_walks_on(
    client: httpx.AsyncClient, migrated: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.console import jobs

    monkeypatch.setattr(jobs, "SCHEMAS_PER_PAGE", 2)
    ops = await operator_headers(client, migrated)
    mine: dict[int, str] = {}
    for _ in range(3):
        headers, tenant, _account = await _vinted_tenant(client)
        mine[tenant] = await _publish(client, headers, await _vinted_product(client, headers))
    seen: list[tuple[int, str]] = []
    pages = 0
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 200}
        if cursor:
            params["cursor"] = cursor
        body = (await client.get("/api/ops/jobs", params=params, headers=ops)).json()
        pages += 1
        tenants_on_page = {item["tenant_id"] for item in body["items"]}
        assert len(tenants_on_page) <= 2, "a page reads at most SCHEMAS_PER_PAGE tenant schemas"
        seen += [(item["tenant_id"], item["id"]) for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages >= 2
    assert {(tenant, job) for tenant, job in seen if tenant in mine} == set(mine.items())
    assert [tenant for tenant, _job in seen] == sorted(tenant for tenant, _job in seen)
