"""Edits follow: a PATCH of a product with live listings gives each one `update`, coalesced over
UPDATE_COALESCE_SECONDS, that pushes the product as it stands when the update runs.

Real gateway, PostgreSQL, dispatcher (its sweep hands the coalesced row off once due), Redis and ARQ worker;
only the marketplace is an in-memory adapter that records what each update pushed.
"""

from __future__ import annotations

import asyncio
import io
from datetime import datetime
from typing import Any

import httpx
from fastapi import FastAPI
from PIL import Image

from ops.config.settings import Settings
from tests.pipeline_support import EBAY_CONNECTION, new_sku, running_pipeline, wait_for_job
from tests.support import app_client, bearer, register
from workers.platforms.base import JobInput, ListingOutcome

WINDOW = 1.0


class RecordingMarketplace:
    """Listings by SKU; every update's pushed title and price, in order."""

    def __init__(self) -> None:
        self.pushed: list[tuple[str, str]] = []

    async def publish(self, job: JobInput) -> ListingOutcome:
        assert job.product is not None
        return ListingOutcome(external_id=f"L-{job.product.id}", url=None)

    async def update(self, job: JobInput) -> ListingOutcome:
        assert job.product is not None and job.listing is not None
        self.pushed.append((job.product.title, str(job.product.price)))
        return ListingOutcome(external_id=job.listing["external_id"], url=None)

    async def delist(self, job: JobInput) -> ListingOutcome:
        assert job.listing is not None
        return ListingOutcome(external_id=job.listing["external_id"], url=None)


async def _live_product(
    client: httpx.AsyncClient, settings: Settings
) -> tuple[dict[str, str], dict[str, Any]]:
    headers = bearer(await register(client))
    assert (
        await client.put("/api/integrations/ebay", json=EBAY_CONNECTION, headers=headers)
    ).status_code == 200
    created = await client.post(
        "/api/products", json={"title": "Veste en jean", "price": "30.00", "sku": new_sku()}, headers=headers
    )
    assert created.status_code == 201, created.text
    product: dict[str, Any] = created.json()
    accepted = await client.post(
        f"/api/products/{product['id']}/publications", json={"platforms": ["ebay"]}, headers=headers
    )
    [job] = accepted.json()["jobs"]
    assert (await wait_for_job(client, headers, job["id"]))["status"] == "succeeded"
    return headers, product


async def _updates(
    client: httpx.AsyncClient, headers: dict[str, str], product_id: int
) -> list[dict[str, Any]]:
    response = await client.get(
        "/api/jobs", params={"product_id": product_id, "action": "update"}, headers=headers
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_ten_edits_within_a_second_give_one_update_with_the_last_values(migrated: Settings) -> None:
    settings = migrated.model_copy(update={"update_coalesce_seconds": WINDOW})
    market = RecordingMarketplace()
    async with app_client(settings) as client, running_pipeline(settings, "ebay", market):
        headers, product = await _live_product(client, settings)
        url = f"/api/products/{product['id']}"
        for index in range(10):
            edited = await client.patch(
                url, json={"title": f"Veste en jean n°{index}", "price": f"{31 + index}.00"}, headers=headers
            )
            assert edited.status_code == 200, edited.text
            await asyncio.sleep(0.05)
        last_edit = datetime.fromisoformat(edited.json()["updated_at"])
        [update] = await _updates(client, headers, product["id"])
        assert update["status"] == "pending" and update["platform"] == "ebay"
        # It waits a window after the last edit, not after the first.
        due = datetime.fromisoformat(update["next_attempt_at"])
        assert (due - last_edit).total_seconds() >= WINDOW * 0.9, (due, last_edit)
        assert market.pushed == [], "nothing reaches the marketplace while edits keep coming"
        done = await wait_for_job(client, headers, update["id"], timeout=20)
        assert done["status"] == "succeeded", done
        assert market.pushed == [("Veste en jean n°9", "40.00")]
        assert [job["id"] for job in await _updates(client, headers, product["id"])] == [update["id"]]

        # An edit after that update ran is not lost: it gets an update of its own.
        assert (await client.patch(url, json={"price": "55.00"}, headers=headers)).status_code == 200
        updates = await _updates(client, headers, product["id"])
        assert len(updates) == 2
        newest = next(job for job in updates if job["id"] != update["id"])
        assert (await wait_for_job(client, headers, newest["id"], timeout=20))["status"] == "succeeded"
        assert market.pushed[-1] == ("Veste en jean n°9", "55.00")


async def test_edit_that_changes_nothing_and_product_without_listings_enqueue_nothing(
    migrated: Settings,
) -> None:
    settings = migrated.model_copy(update={"update_coalesce_seconds": WINDOW})
    async with app_client(settings) as client:
        headers = bearer(await register(client))
        created = await client.post(
            "/api/products", json={"title": "Pull", "price": "10.00", "sku": new_sku()}, headers=headers
        )
        product = created.json()
        assert (
            await client.patch(f"/api/products/{product['id']}", json={"price": "12.00"}, headers=headers)
        ).status_code == 200
        assert await _updates(client, headers, product["id"]) == []


async def test_a_sale_while_the_coalesced_update_waits_cancels_it(migrated: Settings) -> None:
    settings = migrated.model_copy(update={"update_coalesce_seconds": 30.0})
    market = RecordingMarketplace()
    async with app_client(settings) as client, running_pipeline(settings, "ebay", market):
        headers, product = await _live_product(client, settings)
        url = f"/api/products/{product['id']}"
        assert (await client.patch(url, json={"title": "Veste vendue"}, headers=headers)).status_code == 200
        [update] = await _updates(client, headers, product["id"])
        sold = await client.post(f"{url}/status", json={"status": "sold"}, headers=headers)
        assert sold.status_code == 200, sold.text
        [cancelled] = await _updates(client, headers, product["id"])
        assert cancelled["id"] == update["id"] and cancelled["status"] == "cancelled"
        assert cancelled["error"]["code"] == "product_changed"
    assert market.pushed == []


async def _plugin_task(plugin: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    poll = await plugin.get("/api/plugin/tasks", params={"wait": 10, "limit": 5}, headers=headers)
    assert poll.status_code == 200, poll.text
    [task] = poll.json()["tasks"]
    return dict(task)


async def _report(
    plugin: httpx.AsyncClient, headers: dict[str, str], task: dict[str, Any], *bodies: Any
) -> None:
    responses = [{"http_status": 200, "body": body} for body in bodies]
    result = {"lease_id": task["lease_id"], "status": "success", "responses": responses}
    reported = await plugin.post(f"/api/plugin/tasks/{task['id']}/result", json=result, headers=headers)
    assert reported.status_code == 200, reported.text


async def test_a_vinted_update_keeps_the_photos_in_place_and_uploads_only_a_new_one(
    migrated: Settings, app: FastAPI
) -> None:
    settings = migrated.model_copy(update={"update_coalesce_seconds": 0.2})
    transport = httpx.ASGITransport(app=app)
    async with (
        app_client(settings) as client,
        httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=40) as plugin,
        running_pipeline(settings, "vinted", None),
    ):
        headers = bearer(await register(client))
        member = 1_900_000_000 + int(new_sku()[-6:], 16) % 99_999_999
        account = await client.post(
            "/api/integrations/vinted/accounts",
            json={"vinted_user_id": member, "username": "m"},
            headers=headers,
        )
        assert account.status_code == 201, account.text
        body = {
            "title": "Robe fleurie",
            "price": "15.00",
            "sku": new_sku(),
            "category": "women_dresses",
            "brand": "zara",
            "condition": "very_good",
            "size": "s",
        }
        product = (await client.post("/api/products", json=body, headers=headers)).json()
        await _upload(client, headers, product["id"], 1)
        [job] = (
            await client.post(
                f"/api/products/{product['id']}/publications", json={"platforms": ["vinted"]}, headers=headers
            )
        ).json()["jobs"]
        create = await _plugin_task(plugin, headers)
        await _report(
            plugin, headers, create, {"id": 801}, {"item": {"id": 5_000_001, "url": "https://v/5000001"}}
        )
        assert (await wait_for_job(client, headers, job["id"]))["status"] == "succeeded"

        # A second photo and a new price: the update uploads the new photo only and keeps the first by id.
        await _upload(client, headers, product["id"], 2)
        assert (
            await client.patch(f"/api/products/{product['id']}", json={"price": "17.00"}, headers=headers)
        ).status_code == 200
        update = await _plugin_task(plugin, headers)
        assert update["operation"] == "update_item"
        assert [request["path"] for request in update["requests"]] == [
            "/api/v2/photos",
            "/api/v2/item_upload/items/5000001",
        ]
        item = update["requests"][-1]["body"]["item"]
        assert item["price"] == 17.0 or item["price"] == "17.00"
        assert item["assigned_photos"] == [
            {"id": 801, "orientation": 0},
            {"id": {"$ref": "responses[0].id"}, "orientation": 0},
        ]
        photos = [{"id": 801}, {"id": 802}]
        await _report(plugin, headers, update, {"id": 802}, {"item": {"id": 5_000_001, "photos": photos}})
        [job] = await _updates(client, headers, product["id"])
        assert (await wait_for_job(client, headers, job["id"]))["status"] == "succeeded"

        # Nothing about the photos changed since: the next update sends the item alone.
        assert (
            await client.patch(f"/api/products/{product['id']}", json={"price": "18.00"}, headers=headers)
        ).status_code == 200
        again = await _plugin_task(plugin, headers)
        assert [request["path"] for request in again["requests"]] == ["/api/v2/item_upload/items/5000001"]
        assert again["requests"][0]["body"]["item"]["assigned_photos"] == [
            {"id": 801, "orientation": 0},
            {"id": 802, "orientation": 0},
        ]


async def _upload(client: httpx.AsyncClient, headers: dict[str, str], product_id: int, seed: int) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 80), (seed * 40, 30, 30)).save(buffer, "JPEG")
    uploaded = await client.post(
        f"/api/products/{product_id}/images",
        files={"file": (f"p{seed}.jpg", buffer.getvalue(), "image/jpeg")},
        headers=headers,
    )
    assert uploaded.status_code == 201, uploaded.text
