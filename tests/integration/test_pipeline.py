"""The publication pipeline with its real parts: gateway, PostgreSQL, NOTIFY, dispatcher, Redis, ARQ worker.

Only the marketplace is replaced, by an in-memory adapter that counts the listings it holds.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import text

from ops.config.settings import Settings
from persistence import queue
from persistence.database import connect_database
from persistence.tenancy import tenant_transaction
from tests.pipeline_support import EBAY_CONNECTION, new_sku, running_pipeline, wait_for_job
from tests.support import assert_problem, bearer, register
from workers.errors import PermanentPlatformError, TransientPlatformError
from workers.platforms.base import JobInput, ListingOutcome


class FakeMarketplace:
    """A marketplace in memory: listings by SKU, and faults to play in order."""

    def __init__(self) -> None:
        self.listings: dict[str, str] = {}
        self.delisted: set[str] = set()
        #: Errors to raise, per SKU, before publishing it (other tests' leftover jobs may run here too).
        self.faults: dict[str, list[Exception]] = {}

    async def publish(self, job: JobInput) -> ListingOutcome:
        assert job.product is not None
        sku = job.product.sku or ""
        if self.faults.get(sku):
            raise self.faults[sku].pop(0)
        listing_id = self.listings.setdefault(sku, f"L{len(self.listings) + 1}")
        return ListingOutcome(
            external_id=listing_id, url=f"https://market.test/{listing_id}", data={"sku": sku}
        )

    async def update(self, job: JobInput) -> ListingOutcome:
        assert job.listing is not None
        return ListingOutcome(external_id=job.listing["external_id"], url=job.listing["url"])

    async def delist(self, job: JobInput) -> ListingOutcome:
        assert job.listing is not None
        self.delisted.add(str(job.listing["external_id"]))
        return ListingOutcome(external_id=job.listing["external_id"], url=job.listing["url"])


async def _tenant_with_ebay(client: httpx.AsyncClient) -> dict[str, str]:
    headers = bearer(await register(client))
    response = await client.put("/api/integrations/ebay", json=EBAY_CONNECTION, headers=headers)
    assert response.status_code == 200, response.text
    assert "access_token" not in response.text and "sandbox-refresh" not in response.text
    return headers


async def _product(client: httpx.AsyncClient, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    body = {"title": "Levi's 501 vintage jeans", "price": "39.90", "sku": new_sku(), **fields}
    response = await client.post("/api/products", json=body, headers=headers)
    assert response.status_code == 201, response.text
    product: dict[str, Any] = response.json()
    return product


async def test_publish_runs_through_dispatcher_and_worker(
    client: httpx.AsyncClient, migrated: Settings
) -> None:
    headers = await _tenant_with_ebay(client)
    product = await _product(client, headers)
    market = FakeMarketplace()
    async with running_pipeline(migrated, "ebay", market):
        accepted = await client.post(
            f"/api/products/{product['id']}/publications", json={"platforms": ["ebay"]}, headers=headers
        )
        assert accepted.status_code == 202, accepted.text
        [job] = accepted.json()["jobs"]
        assert job["action"] == "publish" and job["platform"] == "ebay" and job["status"] == "pending"
        done = await wait_for_job(client, headers, job["id"])
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 1
    assert done["result"]["external_id"] == market.listings[product["sku"]]
    detail = (await client.get(f"/api/products/{product['id']}", headers=headers)).json()
    assert detail["status"] == "published"
    publications = (await client.get(f"/api/products/{product['id']}/publications", headers=headers)).json()
    [listing] = publications["listings"]
    assert listing["status"] == "live" and listing["external_id"] == done["result"]["external_id"]
    assert listing["published_at"] is not None
    assert [row["status"] for row in publications["history"]] == ["succeeded"]


async def test_second_publish_is_already_listed(client: httpx.AsyncClient) -> None:
    headers = await _tenant_with_ebay(client)
    product = await _product(client, headers)
    first = await client.post(
        f"/api/products/{product['id']}/publications", json={"platforms": ["ebay"]}, headers=headers
    )
    assert first.status_code == 202
    again = await client.post(
        f"/api/products/{product['id']}/publications", json={"platforms": ["ebay"]}, headers=headers
    )
    assert_problem(again, 409, "already_listed")


async def test_publish_rules_in_contract_order(client: httpx.AsyncClient) -> None:
    headers = bearer(await register(client))
    product = await _product(client, headers, stock_quantity=0)
    missing = await client.post(
        "/api/products/999999/publications", json={"platforms": ["ebay"]}, headers=headers
    )
    assert_problem(missing, 404, "not_found")
    # stock 0 and not connected at once: out_of_stock answers first
    assert_problem(
        await client.post(
            f"/api/products/{product['id']}/publications", json={"platforms": ["ebay"]}, headers=headers
        ),
        409,
        "out_of_stock",
    )
    stocked = await _product(client, headers)
    assert_problem(
        await client.post(
            f"/api/products/{stocked['id']}/publications", json={"platforms": ["ebay"]}, headers=headers
        ),
        409,
        "platform_not_connected",
    )
    bad = await client.post(
        f"/api/products/{stocked['id']}/publications", json={"platforms": ["amazon"]}, headers=headers
    )
    assert_problem(bad, 422, "validation_error")
    jobs = (await client.get("/api/jobs", headers=headers)).json()
    assert jobs["items"] == [], "a refused command must leave no job behind"


async def test_idempotency_key_replays_the_same_jobs(client: httpx.AsyncClient) -> None:
    headers = await _tenant_with_ebay(client)
    product = await _product(client, headers)
    keyed = {**headers, "Idempotency-Key": "publish-once-123"}
    url = f"/api/products/{product['id']}/publications"
    first = await client.post(url, json={"platforms": ["ebay"]}, headers=keyed)
    second = await client.post(url, json={"platforms": ["ebay"]}, headers=keyed)
    assert first.status_code == second.status_code == 202
    assert first.json()["jobs"][0]["id"] == second.json()["jobs"][0]["id"]
    other = await client.post(url, json={"platforms": ["ebay", "etsy"]}, headers=keyed)
    assert_problem(other, 422, "idempotency_key_reused")
    listed = (await client.get("/api/jobs", headers=headers, params={"product_id": product["id"]})).json()
    assert len(listed["items"]) == 1


async def test_transient_errors_retry_then_succeed(client: httpx.AsyncClient, migrated: Settings) -> None:
    headers = await _tenant_with_ebay(client)
    product = await _product(client, headers)
    market = FakeMarketplace()
    market.faults[product["sku"]] = [TransientPlatformError("503 from the marketplace", retry_after=0.0)]

    def fast_retries(app: Any) -> None:
        app.lease_seconds = 5

    async with running_pipeline(migrated, "ebay", market, configure=fast_retries):
        accepted = await client.post(
            f"/api/products/{product['id']}/publications", json={"platforms": ["ebay"]}, headers=headers
        )
        job_id = accepted.json()["jobs"][0]["id"]
        done = await wait_for_job(client, headers, job_id, timeout=30)
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 2
    history = (await client.get(f"/api/products/{product['id']}/publications", headers=headers)).json()[
        "history"
    ]
    assert [row["status"] for row in history] == ["succeeded", "retrying"]
    assert done["result"]["external_id"] == market.listings[product["sku"]]


async def test_permanent_error_fails_once_without_retry(
    client: httpx.AsyncClient, migrated: Settings
) -> None:
    headers = await _tenant_with_ebay(client)
    product = await _product(client, headers)
    market = FakeMarketplace()
    market.faults[product["sku"]] = [
        PermanentPlatformError("platform_rejected", "Item specifics missing: Brand")
    ]
    async with running_pipeline(migrated, "ebay", market):
        accepted = await client.post(
            f"/api/products/{product['id']}/publications", json={"platforms": ["ebay"]}, headers=headers
        )
        job_id = accepted.json()["jobs"][0]["id"]
        done = await wait_for_job(client, headers, job_id)
    assert done["status"] == "failed"
    assert done["attempts"] == 1
    assert done["error"] == {"code": "platform_rejected", "message": "Item specifics missing: Brand"}
    listings = (await client.get(f"/api/products/{product['id']}/publications", headers=headers)).json()[
        "listings"
    ]
    assert listings[0]["status"] == "failed"
    # A failed job can be retried by the user, and then succeeds.
    async with running_pipeline(migrated, "ebay", market):
        retried = await client.post(f"/api/jobs/{job_id}/retry", headers=headers)
        assert retried.status_code == 202 and retried.json()["status"] == "pending"
        done = await wait_for_job(client, headers, job_id)
    assert done["status"] == "succeeded"
    assert_problem(await client.post(f"/api/jobs/{job_id}/retry", headers=headers), 409, "invalid_state")


async def test_cancel_pending_job_then_republish(client: httpx.AsyncClient) -> None:
    headers = await _tenant_with_ebay(client)
    product = await _product(client, headers)
    url = f"/api/products/{product['id']}/publications"
    job = (await client.post(url, json={"platforms": ["ebay"]}, headers=headers)).json()["jobs"][0]
    cancelled = await client.post(f"/api/jobs/{job['id']}/cancel", headers=headers)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert_problem(await client.post(f"/api/jobs/{job['id']}/cancel", headers=headers), 409, "invalid_state")
    again = await client.post(url, json={"platforms": ["ebay"]}, headers=headers)
    assert again.status_code == 202, again.text


async def test_delist_and_sold_end_listings(client: httpx.AsyncClient, migrated: Settings) -> None:
    headers = await _tenant_with_ebay(client)
    product = await _product(client, headers)
    market = FakeMarketplace()
    url = f"/api/products/{product['id']}/publications"
    async with running_pipeline(migrated, "ebay", market):
        job = (await client.post(url, json={"platforms": ["ebay"]}, headers=headers)).json()["jobs"][0]
        await wait_for_job(client, headers, job["id"])
        update = await client.put(f"{url}/ebay", headers=headers)
        assert update.status_code == 202 and update.json()["action"] == "update"
        assert (await wait_for_job(client, headers, update.json()["id"]))["status"] == "succeeded"
        delist = await client.delete(f"{url}/ebay", headers=headers)
        assert delist.status_code == 202 and delist.json()["action"] == "delist"
        assert (await wait_for_job(client, headers, delist.json()["id"]))["status"] == "succeeded"
    listing = (await client.get(url, headers=headers)).json()["listings"][0]
    assert listing["status"] == "delisted"
    assert market.delisted == {listing["external_id"]}
    assert_problem(await client.delete(f"{url}/ebay", headers=headers), 409, "not_listed")
    assert_problem(await client.put(f"{url}/ebay", headers=headers), 409, "not_listed")


@pytest.mark.parametrize("path", ["/api/jobs/not-a-uuid", "/api/jobs/00000000-0000-0000-0000-000000000000"])
async def test_unknown_job_is_404(client: httpx.AsyncClient, path: str) -> None:
    headers = bearer(await register(client))
    assert_problem(await client.get(path, headers=headers), 404, "not_found")


async def test_sold_product_gets_delist_jobs_and_platform_filter(
    client: httpx.AsyncClient, migrated: Settings
) -> None:
    headers = await _tenant_with_ebay(client)
    product = await _product(client, headers)
    market = FakeMarketplace()
    async with running_pipeline(migrated, "ebay", market):
        job = (
            await client.post(
                f"/api/products/{product['id']}/publications", json={"platforms": ["ebay"]}, headers=headers
            )
        ).json()["jobs"][0]
        await wait_for_job(client, headers, job["id"])
        listed = (await client.get("/api/products", params={"platform": "ebay"}, headers=headers)).json()
        assert [item["id"] for item in listed["items"]] == [product["id"]]
        detail = (await client.get(f"/api/products/{product['id']}", headers=headers)).json()
        assert [listing["status"] for listing in detail["listings"]] == ["live"]
        sold = await client.post(
            f"/api/products/{product['id']}/status", json={"status": "sold"}, headers=headers
        )
        assert sold.status_code == 200, sold.text
        delists = (
            await client.get(
                "/api/jobs", params={"product_id": product["id"], "action": "delist"}, headers=headers
            )
        ).json()["items"]
        assert len(delists) == 1
        done = await wait_for_job(client, headers, delists[0]["id"])
    assert done["status"] == "succeeded"
    detail = (await client.get(f"/api/products/{product['id']}", headers=headers)).json()
    assert [listing["status"] for listing in detail["listings"]] == ["delisted"]
    assert (await client.get("/api/products", params={"platform": "ebay"}, headers=headers)).json()[
        "items"
    ] == []


async def test_a_vanished_worker_out_of_attempts_fails_the_job_and_its_listing(
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
    # What a worker that died during its last allowed attempt leaves behind: running, lease run out.
    database = connect_database(migrated.async_database_url, pool_size=1)
    try:
        async with tenant_transaction(
            database.session_factory, migrated.tenant_schema_prefix, tenant_id
        ) as session:
            await session.execute(
                text(
                    "UPDATE plugin_queue SET status = 'running', attempts = max_attempts, "
                    "runs = max_attempts, lease_owner = 'gone', "
                    "lease_expires_at = now() - interval '1 second' WHERE id = :id"
                ),
                {"id": job["id"]},
            )
            await queue.recover_expired_leases(session, tenant_id)
    finally:
        await database.dispose()
    done = (await client.get(f"/api/jobs/{job['id']}", headers=headers)).json()
    assert done["status"] == "failed" and done["error"]["code"] == "attempts_exhausted"
    listing = (await client.get(f"/api/products/{product['id']}", headers=headers)).json()["listings"][0]
    assert listing["status"] == "failed", "a failed publish must not block publishing again"
    again = await client.post(
        f"/api/products/{product['id']}/publications", json={"platforms": ["ebay"]}, headers=headers
    )
    assert again.status_code == 202, again.text
