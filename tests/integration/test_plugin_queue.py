"""The plugin's queue with its real parts: gateway, dispatcher, a Vinted worker with the Redis limiter.

The test plays the browser plugin over HTTP, reporting what "Vinted" answered.
"""

from __future__ import annotations

import asyncio
import io
import secrets
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from PIL import Image
from sqlalchemy import text

from ops.config.settings import Settings
from persistence.database import connect_database
from tests.pipeline_support import new_sku, running_pipeline, wait_for_job
from tests.support import assert_problem, bearer, register


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 80), (200, 30, 30)).save(buffer, "JPEG")
    return buffer.getvalue()


#: The Vinted member behind each account the tests connect (its budget is the member's, across tenants).
MEMBERS: dict[int, str] = {}


def new_member() -> str:
    """A Vinted member id no other test uses: budgets belong to members, and tests must not share one."""
    return str(secrets.randbelow(10**9) + 10**9)


async def _vinted_tenant(
    client: httpx.AsyncClient, member: str | None = None
) -> tuple[dict[str, str], int, int]:
    """A tenant with one Vinted account; returns headers, tenant id and account id."""
    body = await register(client)
    headers = bearer(body)
    member = member or new_member()
    account = await client.post(
        "/api/integrations/vinted/accounts",
        json={"vinted_user_id": int(member), "username": "resell_fr"},
        headers=headers,
    )
    assert account.status_code == 201, account.text
    MEMBERS[int(account.json()["id"])] = member
    return headers, int(body["user"]["tenant_id"]), int(account.json()["id"])


async def _vinted_product(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    created = await client.post(
        "/api/products",
        json={
            "title": "Robe Zara fleurie",
            "price": "15.00",
            "sku": new_sku(),
            "category": "women_dresses",
            "brand": "zara",
            "condition": "very_good",
            "size": "s",
        },
        headers=headers,
    )
    assert created.status_code == 201, created.text
    product: dict[str, Any] = created.json()
    image = await client.post(
        f"/api/products/{product['id']}/images",
        files={"file": ("robe.jpg", _jpeg(), "image/jpeg")},
        headers=headers,
    )
    assert image.status_code == 201, image.text
    return product


@pytest.fixture
async def plugin_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A second client for the plugin's long polls (its own connection, like a browser)."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=40) as http:
        yield http


async def test_publish_to_vinted_through_the_plugin(
    client: httpx.AsyncClient, plugin_client: httpx.AsyncClient, migrated: Settings
) -> None:
    headers, _tenant, account_id = await _vinted_tenant(client)
    product = await _vinted_product(client, headers)
    async with running_pipeline(migrated, "vinted", None):
        accepted = await client.post(
            f"/api/products/{product['id']}/publications", json={"platforms": ["vinted"]}, headers=headers
        )
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["jobs"][0]["id"]
        poll = await plugin_client.get("/api/plugin/tasks", params={"wait": 10, "limit": 5}, headers=headers)
        assert poll.status_code == 200, poll.text
        [task] = poll.json()["tasks"]
        assert task["job_id"] == job_id and task["operation"] == "create_item"
        assert task["vinted_account_id"] == account_id and task["vinted_user_id"] == MEMBERS[account_id]
        assert [request["path"] for request in task["requests"]] == [
            "/api/v2/photos",
            "/api/v2/item_upload/items",
        ]
        item = task["requests"][-1]["body"]["item"]
        assert item["catalog_id"] == 10 and item["brand_id"] == 12 and item["status_id"] == 2
        assert item["assigned_photos"] == [{"id": {"$ref": "responses[0].id"}, "orientation": 0}]
        job = (await client.get(f"/api/jobs/{job_id}", headers=headers)).json()
        assert job["status"] == "waiting_plugin"
        usage = (
            await client.get(f"/api/integrations/vinted/accounts/{account_id}/rate-limit", headers=headers)
        ).json()
        assert usage["limit"] == 40 and usage["used"] == 2 and usage["remaining"] == 38
        assert usage["resets_at"] is not None
        result = {
            "lease_id": task["lease_id"],
            "status": "success",
            "responses": [
                {
                    "http_status": 200,
                    "body": {"id": 8_000_000_001, "url": "https://images1.vinted.net/x.jpg"},
                },
                {
                    "http_status": 200,
                    "body": {"item": {"id": 5_123_456_789, "url": "https://www.vinted.fr/items/5123456789"}},
                },
            ],
        }
        reported = await plugin_client.post(
            f"/api/plugin/tasks/{task['id']}/result", json=result, headers=headers
        )
        assert reported.status_code == 200, reported.text
        done = await wait_for_job(client, headers, job_id)
        assert done["status"] == "succeeded", done
        assert done["attempts"] == 1
        # The same report again changes nothing; a different one is refused.
        again = await plugin_client.post(
            f"/api/plugin/tasks/{task['id']}/result", json=result, headers=headers
        )
        assert again.status_code == 200
        other = {**result, "status": "error", "responses": [{"http_status": 500, "body": None}]}
        assert_problem(
            await plugin_client.post(f"/api/plugin/tasks/{task['id']}/result", json=other, headers=headers),
            409,
            "already_reported",
        )
    publications = await client.get(f"/api/products/{product['id']}/publications", headers=headers)
    # Releasing the task and finishing from its result are one attempt: one history row.
    assert [row["status"] for row in publications.json()["history"]] == ["succeeded"]
    listing = (await client.get(f"/api/products/{product['id']}", headers=headers)).json()["listings"][0]
    assert listing["platform"] == "vinted" and listing["status"] == "live"
    assert listing["external_id"] == "5123456789"
    assert listing["url"] == "https://www.vinted.fr/items/5123456789"


async def test_lease_expiry_hands_the_task_out_again(
    client: httpx.AsyncClient, plugin_client: httpx.AsyncClient, migrated: Settings
) -> None:
    headers, tenant_id, _account = await _vinted_tenant(client)
    product = await _vinted_product(client, headers)
    async with running_pipeline(migrated, "vinted", None):
        await client.post(
            f"/api/products/{product['id']}/publications", json={"platforms": ["vinted"]}, headers=headers
        )
        [first] = (await plugin_client.get("/api/plugin/tasks", params={"wait": 10}, headers=headers)).json()[
            "tasks"
        ]
        beat = await plugin_client.post(
            f"/api/plugin/tasks/{first['id']}/heartbeat",
            json={"lease_id": first["lease_id"]},
            headers=headers,
        )
        assert beat.status_code == 200 and beat.json()["lease_expires_at"] >= first["lease_expires_at"]
        # Nothing else is ready while the lease lives.
        assert (await plugin_client.get("/api/plugin/tasks", params={"wait": 0}, headers=headers)).json() == {
            "tasks": []
        }
        await _expire_lease(migrated, tenant_id, first["id"])
        [second] = (await plugin_client.get("/api/plugin/tasks", params={"wait": 5}, headers=headers)).json()[
            "tasks"
        ]
        assert second["id"] == first["id"] and second["lease_id"] != first["lease_id"]
        assert_problem(
            await plugin_client.post(
                f"/api/plugin/tasks/{first['id']}/heartbeat",
                json={"lease_id": first["lease_id"]},
                headers=headers,
            ),
            409,
            "lease_lost",
        )
        never = "00000000-0000-0000-0000-000000000000"
        assert_problem(
            await plugin_client.post(
                f"/api/plugin/tasks/{first['id']}/result",
                json={"lease_id": never, "status": "success", "responses": []},
                headers=headers,
            ),
            409,
            "lease_lost",
        )
        # The plugin did the work under the first lease: its result is still accepted.
        error = {
            "lease_id": first["lease_id"],
            "status": "error",
            "responses": [
                {"http_status": 200, "body": {"id": 1}},
                {
                    "http_status": 400,
                    "body": {
                        "code": 99,
                        "message": "Validation failed",
                        "errors": [{"field": "price", "value": "Too low"}],
                    },
                },
            ],
        }
        reported = await plugin_client.post(
            f"/api/plugin/tasks/{first['id']}/result", json=error, headers=headers
        )
        assert reported.status_code == 200, reported.text
        done = await wait_for_job(client, headers, first["job_id"])
    assert done["status"] == "failed"
    assert done["error"]["code"] == "platform_rejected"
    assert "price: Too low" in done["error"]["message"]


@pytest.fixture
async def small_window_client(migrated: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Settings]]:
    """The gateway with a Vinted budget of 3 requests per 3 s (the test window), and its settings."""
    from gateway.app import create_app
    from tests.tenant_schemas import replayed_tenant_migration

    settings = migrated.model_copy(update={"vinted_rate_limit": 3, "vinted_rate_window_seconds": 3})
    application = create_app(settings, tenant_migrator=replayed_tenant_migration)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http, settings


async def test_rate_limited_job_waits_for_the_window(
    small_window_client: tuple[httpx.AsyncClient, Settings],
) -> None:
    client, settings = small_window_client
    headers, _tenant, account_id = await _vinted_tenant(client)
    first = await _vinted_product(client, headers)
    second = await _vinted_product(client, headers)
    # The first publish takes 2 of the 3 slots; the second needs 2 and must wait for the window.
    async with running_pipeline(settings, "vinted", None):
        job_a = (
            await client.post(
                f"/api/products/{first['id']}/publications", json={"platforms": ["vinted"]}, headers=headers
            )
        ).json()["jobs"][0]
        await wait_for_job(client, headers, job_a["id"], until=lambda job: job["status"] == "waiting_plugin")
        job_b = (
            await client.post(
                f"/api/products/{second['id']}/publications", json={"platforms": ["vinted"]}, headers=headers
            )
        ).json()["jobs"][0]
        limited = await wait_for_job(
            client, headers, job_b["id"], until=lambda job: job["status"] == "rate_limited"
        )
        assert limited["next_attempt_at"] is not None
        usage = (
            await client.get(f"/api/integrations/vinted/accounts/{account_id}/rate-limit", headers=headers)
        ).json()
        assert usage["used"] == 2 and usage["remaining"] == 1
        assert limited["next_attempt_at"][:19] == usage["resets_at"][:19]
        assert limited["attempts"] == 0, "waiting for slots is not an attempt"
        metrics = (await client.get("/metrics")).text
        assert 'stoflow_rate_limit_rejections_total{platform="vinted"}' in metrics
        rejections = [
            line for line in metrics.splitlines() if line.startswith("stoflow_rate_limit_rejections_total")
        ]
        assert any(
            line.startswith('stoflow_rate_limit_rejections_total{platform="vinted"} ')
            and not line.endswith(" 0.0")
            for line in rejections
        ), rejections
        assert 'stoflow_queue_depth{platform="vinted"}' in metrics
        # When the window frees the slots, the job is released to the plugin without anyone polling it.
        released = await wait_for_job(
            client, headers, job_b["id"], until=lambda job: job["status"] == "waiting_plugin", timeout=15
        )
    assert released["attempts"] == 1


async def test_cancel_waiting_plugin_job_only_while_unclaimed(
    client: httpx.AsyncClient, plugin_client: httpx.AsyncClient, migrated: Settings
) -> None:
    headers, _tenant, _account = await _vinted_tenant(client)
    product_a = await _vinted_product(client, headers)
    product_b = await _vinted_product(client, headers)
    async with running_pipeline(migrated, "vinted", None):
        job_a = (
            await client.post(
                f"/api/products/{product_a['id']}/publications",
                json={"platforms": ["vinted"]},
                headers=headers,
            )
        ).json()["jobs"][0]
        await wait_for_job(client, headers, job_a["id"], until=lambda job: job["status"] == "waiting_plugin")
        cancelled = await client.post(f"/api/jobs/{job_a['id']}/cancel", headers=headers)
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        assert (await plugin_client.get("/api/plugin/tasks", params={"wait": 0}, headers=headers)).json() == {
            "tasks": []
        }
        job_b = (
            await client.post(
                f"/api/products/{product_b['id']}/publications",
                json={"platforms": ["vinted"]},
                headers=headers,
            )
        ).json()["jobs"][0]
        [task] = (await plugin_client.get("/api/plugin/tasks", params={"wait": 10}, headers=headers)).json()[
            "tasks"
        ]
        assert task["job_id"] == job_b["id"]
        assert_problem(
            await client.post(f"/api/jobs/{job_b['id']}/cancel", headers=headers), 409, "invalid_state"
        )


async def test_long_poll_wakes_quickly_and_tenants_never_see_each_other(
    client: httpx.AsyncClient, plugin_client: httpx.AsyncClient, migrated: Settings
) -> None:
    headers, _tenant, _account = await _vinted_tenant(client)
    other_headers, _other, _ = await _vinted_tenant(client)
    product = await _vinted_product(client, headers)
    async with running_pipeline(migrated, "vinted", None):
        other_poll = asyncio.create_task(
            plugin_client.get("/api/plugin/tasks", params={"wait": 3}, headers=other_headers)
        )
        poll = asyncio.create_task(
            plugin_client.get("/api/plugin/tasks", params={"wait": 20}, headers=headers)
        )
        await asyncio.sleep(0.3)
        await client.post(
            f"/api/products/{product['id']}/publications", json={"platforms": ["vinted"]}, headers=headers
        )
        job = (await client.get("/api/jobs", headers=headers)).json()["items"][0]
        await wait_for_job(
            client, headers, job["id"], until=lambda job: job["status"] in ("waiting_plugin", "succeeded")
        )
        released_at = time.monotonic()
        response = await poll
        delivered_after = time.monotonic() - released_at
        assert len(response.json()["tasks"]) == 1
        # Loose bound (the design target is 100 ms; a loaded CI machine gets slack).
        assert delivered_after < 2.0, (
            f"the waiting poll saw the task {delivered_after:.3f}s after its release"
        )
        assert (await other_poll).json() == {"tasks": []}


async def _expire_lease(settings: Settings, tenant_id: int, task_id: str) -> None:
    """Let a lease run out (what 60 s of silence from the plugin would do)."""
    database = connect_database(settings.async_database_url, pool_size=1)
    try:
        async with database.engine.begin() as connection:
            await connection.execute(
                text(
                    f'UPDATE "user_{tenant_id}".plugin_tasks '
                    "SET lease_expires_at = now() - interval '1 second' WHERE id = :id"
                ),
                {"id": task_id},
            )
    finally:
        await database.dispose()


async def _live_on_vinted(
    client: httpx.AsyncClient,
    plugin_client: httpx.AsyncClient,
    headers: dict[str, str],
    product_id: int,
    item_id: int,
) -> None:
    """Publish to Vinted and play the plugin reporting a created item."""
    job_id = (
        await client.post(
            f"/api/products/{product_id}/publications", json={"platforms": ["vinted"]}, headers=headers
        )
    ).json()["jobs"][0]["id"]
    [task] = (await plugin_client.get("/api/plugin/tasks", params={"wait": 10}, headers=headers)).json()[
        "tasks"
    ]
    result = {
        "lease_id": task["lease_id"],
        "status": "success",
        "responses": [
            {"http_status": 200, "body": {"id": 1}},
            {"http_status": 200, "body": {"item": {"id": item_id}}},
        ],
    }
    assert (
        await plugin_client.post(f"/api/plugin/tasks/{task['id']}/result", json=result, headers=headers)
    ).status_code == 200
    assert (await wait_for_job(client, headers, job_id))["status"] == "succeeded"


async def test_sold_on_vinted_ends_the_other_listings(
    client: httpx.AsyncClient, plugin_client: httpx.AsyncClient, migrated: Settings
) -> None:
    from tests.integration.test_pipeline import FakeMarketplace
    from tests.pipeline_support import EBAY_CONNECTION

    headers, _tenant, _account = await _vinted_tenant(client)
    assert (
        await client.put("/api/integrations/ebay", json=EBAY_CONNECTION, headers=headers)
    ).status_code == 200
    single = await _vinted_product(client, headers)
    pair = await _vinted_product(client, headers)
    assert (
        await client.patch(f"/api/products/{pair['id']}", json={"stock_quantity": 2}, headers=headers)
    ).status_code == 200
    market = FakeMarketplace()
    async with running_pipeline(migrated, "vinted", None):
        await _live_on_vinted(client, plugin_client, headers, single["id"], 7_000_001)
        await _live_on_vinted(client, plugin_client, headers, pair["id"], 7_000_002)
    async with running_pipeline(migrated, "ebay", market):
        for product in (single, pair):
            job = (
                await client.post(
                    f"/api/products/{product['id']}/publications",
                    json={"platforms": ["ebay"]},
                    headers=headers,
                )
            ).json()["jobs"][0]
            assert (await wait_for_job(client, headers, job["id"]))["status"] == "succeeded"
        # The last one sold on Vinted: the product is sold and eBay's listing gets a delist job.
        sold = await plugin_client.post(
            "/api/plugin/events",
            json={"type": "sold", "platform": "vinted", "external_id": "7000001"},
            headers=headers,
        )
        assert sold.status_code == 202, sold.text
        [delist_id] = sold.json()["jobs"]
        assert (await wait_for_job(client, headers, delist_id))["status"] == "succeeded"
        # One of two sold: stock drops and eBay's listing gets an update with the new quantity.
        one = await plugin_client.post(
            "/api/plugin/events",
            json={"type": "sold", "platform": "vinted", "external_id": 7_000_002},
            headers=headers,
        )
        assert one.status_code == 202, one.text
        [update_id] = one.json()["jobs"]
        update = await wait_for_job(client, headers, update_id)
        assert update["action"] == "update" and update["status"] == "succeeded"
    single_after = (await client.get(f"/api/products/{single['id']}", headers=headers)).json()
    assert single_after["status"] == "sold" and single_after["stock_quantity"] == 0
    assert {row["platform"]: row["status"] for row in single_after["listings"]} == {
        "vinted": "sold",
        "ebay": "delisted",
    }
    pair_after = (await client.get(f"/api/products/{pair['id']}", headers=headers)).json()
    assert pair_after["status"] == "published" and pair_after["stock_quantity"] == 1
    assert {row["platform"]: row["status"] for row in pair_after["listings"]} == {
        "vinted": "sold",
        "ebay": "live",
    }
    unknown = await plugin_client.post(
        "/api/plugin/events",
        json={"type": "sold", "platform": "vinted", "external_id": "999"},
        headers=headers,
    )
    assert_problem(unknown, 404, "not_found")


@pytest.mark.parametrize(
    ("response", "pause_minutes"),
    [
        ({"http_status": 429, "body": {"code": 106, "message": "Too many requests"}}, 15),
        ({"http_status": 403, "body": "<html>geo.captcha-delivery.com datadome</html>"}, 30),
        ({"http_status": 503, "body": None}, 0),
    ],
)
async def test_vinted_refusals_reschedule_the_job(
    client: httpx.AsyncClient,
    plugin_client: httpx.AsyncClient,
    migrated: Settings,
    response: dict[str, Any],
    pause_minutes: int,
) -> None:
    headers, _tenant, _account = await _vinted_tenant(client)
    product = await _vinted_product(client, headers)
    async with running_pipeline(migrated, "vinted", None):
        job_id = (
            await client.post(
                f"/api/products/{product['id']}/publications", json={"platforms": ["vinted"]}, headers=headers
            )
        ).json()["jobs"][0]["id"]
        [task] = (await plugin_client.get("/api/plugin/tasks", params={"wait": 10}, headers=headers)).json()[
            "tasks"
        ]
        reported = await plugin_client.post(
            f"/api/plugin/tasks/{task['id']}/result",
            json={"lease_id": task["lease_id"], "status": "error", "responses": [response]},
            headers=headers,
        )
        assert reported.status_code == 200
        if pause_minutes:
            job = await wait_for_job(
                client, headers, job_id, until=lambda job: job["status"] == "pending" and job["attempts"] == 1
            )
            waited = datetime.fromisoformat(job["next_attempt_at"]) - datetime.fromisoformat(
                job["updated_at"]
            )
            assert timedelta(minutes=pause_minutes) - timedelta(seconds=5) <= waited, waited
            assert job["status"] != "failed"
        else:
            # A 5xx is retried after the ordinary backoff: a new task reaches the plugin.
            [again] = (
                await plugin_client.get("/api/plugin/tasks", params={"wait": 15}, headers=headers)
            ).json()["tasks"]
            assert again["id"] != task["id"] and again["job_id"] == job_id
