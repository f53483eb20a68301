"""End-to-end fixtures: the platform's real processes over real HTTP, sharing the run's test database.

`platform_processes` (per module) builds a `PlatformProcesses` on the migrated per-run database and the
test Redis database; each module starts the processes it needs. `Storefront` is what a user and the
marketplaces see: it registers tenants, connects them to sandbox sellers, creates products with an uploaded
JPEG, publishes, polls jobs, and reads the sandbox's listings.
"""

from __future__ import annotations

import asyncio
import io
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import redis
from PIL import Image

from ops.config.settings import Settings
from tests.e2e.processes import PlatformProcesses

FINISHED = frozenset({"succeeded", "failed", "cancelled"})
PASSWORD = "correct horse battery"
#: Attribute codes that map on both eBay and Etsy (ops/config/reference_data/platform_mappings):
#: a vintage product.
LISTABLE = {
    "category": "women_dresses",
    "condition": "very_good",
    "brand": "zara",
    "size": "m",
    "color": "blue",
    "decade": "1990s",
}


#: Redis databases the e2e processes may claim. Not the suite's own (9 by default): every concurrent pytest
#: run flushes that one before each of its tests, which would wipe the queues and metrics of our processes.
E2E_REDIS_DATABASES = range(10, 16)
CLAIM_KEY = "stoflow:e2e:claimed-by"
#: Longer than any e2e run; a crashed run's claim lapses by itself.
CLAIM_SECONDS = 1800


@pytest.fixture(scope="session")
def e2e_redis_url(redis_url: str) -> Iterator[str]:
    """A Redis database of this run's own (claimed with SET NX, flushed before and after use)."""
    base = urlsplit(redis_url)
    for number in E2E_REDIS_DATABASES:
        url = urlunsplit(base._replace(path=f"/{number}"))
        client = redis.Redis.from_url(url)
        try:
            if client.set(CLAIM_KEY, f"{os.getpid()}", nx=True, ex=CLAIM_SECONDS):
                client.flushdb()
                client.set(CLAIM_KEY, f"{os.getpid()}", ex=CLAIM_SECONDS)
                break
        finally:
            client.close()
    else:
        pytest.fail(f"every e2e Redis database ({E2E_REDIS_DATABASES}) is claimed by another run")
    yield url
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


@pytest.fixture(scope="module")
def platform_processes(
    migrated: Settings, e2e_redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PlatformProcesses]:
    """Nothing started yet; every child still running is stopped when the module ends, pass or fail."""
    assert migrated.database_url is not None
    work_dir = tmp_path_factory.mktemp("e2e")
    with PlatformProcesses(migrated.database_url, e2e_redis_url, work_dir) as processes:
        yield processes


def claim_redis_database(url: str) -> None:
    """Re-take the claim after a test flushed the database."""
    client = redis.Redis.from_url(url)
    try:
        client.set(CLAIM_KEY, f"{os.getpid()}", ex=CLAIM_SECONDS)
    finally:
        client.close()


def jpeg_bytes(seed: int) -> bytes:
    """A small, valid JPEG whose colour depends on `seed`."""
    image = Image.new("RGB", (64, 48), ((seed * 37) % 256, (seed * 91) % 256, (seed * 53) % 256))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


@dataclass(frozen=True)
class Tenant:
    """A registered tenant connected to its own eBay seller and Etsy shop in the sandbox."""

    email: str
    headers: dict[str, str]
    ebay_account: str
    etsy_shop_id: int


class Storefront:
    """The API as a user drives it, and the sandbox as the marketplaces hold it."""

    def __init__(self, api: httpx.AsyncClient, sandbox: httpx.AsyncClient) -> None:
        self.api = api
        self.sandbox = sandbox

    # -- tenants and products ----------------------------------------------------------------------------

    async def new_tenant(
        self,
        *,
        connect: tuple[str, ...] = ("ebay", "etsy"),
        registered_hook: Callable[[int], Awaitable[None]] | None = None,
    ) -> Tenant:
        """Register, then connect eBay and Etsy with tokens the sandbox issued.

        `registered_hook` gets the new tenant's id before anything is connected (e.g. to change its plan).
        """
        email = f"e2e-{uuid.uuid4().hex[:10]}@example.com"
        registered = await self.api.post("/api/auth/register", json={"email": email, "password": PASSWORD})
        assert registered.status_code == 201, registered.text
        headers = {"Authorization": f"Bearer {registered.json()['access_token']}"}
        if registered_hook is not None:
            await registered_hook(int(registered.json()["user"]["tenant_id"]))
        seller = await self.sandbox.post("/_sandbox/ebay/accounts", json={})
        assert seller.status_code == 201, seller.text
        shop = await self.sandbox.post("/_sandbox/etsy/accounts", json={})
        assert shop.status_code == 201, shop.text
        ebay, etsy = seller.json(), shop.json()
        if "ebay" in connect:
            connected = await self.api.put(
                "/api/integrations/ebay",
                headers=headers,
                json={
                    "access_token": ebay["access_token"],
                    "refresh_token": ebay["refresh_token"],
                    "marketplace_id": "EBAY_FR",
                    "fulfillment_policy_id": "ship-1",
                    "payment_policy_id": "pay-1",
                    "return_policy_id": "ret-1",
                    "merchant_location_key": "paris-1",
                },
            )
            assert connected.status_code == 200, connected.text
        if "etsy" in connect:
            connected = await self.api.put(
                "/api/integrations/etsy",
                headers=headers,
                json={
                    "shop_id": etsy["shop_id"],
                    "access_token": etsy["access_token"],
                    "refresh_token": etsy["refresh_token"],
                    "shipping_profile_id": 8001,
                },
            )
            assert connected.status_code == 200, connected.text
        return Tenant(email, headers, str(ebay["account_id"]), int(etsy["shop_id"]))

    async def new_product(self, tenant: Tenant, *, image_seed: int = 1, **fields: Any) -> dict[str, Any]:
        """A product with attributes listable on eBay and Etsy (overridable) and one uploaded JPEG."""
        body = {
            "title": "Robe Zara bleue années 90",
            "description": "Robe d'été en coton bleu, très bon état.",
            "price": "24.90",
            "sku": f"E2E-{uuid.uuid4().hex[:12].upper()}",
            **LISTABLE,
            **fields,
        }
        body = {key: value for key, value in body.items() if value is not None}
        created = await self.api.post("/api/products", json=body, headers=tenant.headers)
        assert created.status_code == 201, created.text
        product: dict[str, Any] = created.json()
        uploaded = await self.api.post(
            f"/api/products/{product['id']}/images",
            headers=tenant.headers,
            files={"file": (f"photo-{image_seed}.jpg", jpeg_bytes(image_seed), "image/jpeg")},
        )
        assert uploaded.status_code == 201, uploaded.text
        return product

    async def publish(self, tenant: Tenant, product_id: int, platforms: list[str]) -> list[dict[str, Any]]:
        """POST the publication command; it must be accepted (202) with one pending job per platform."""
        accepted = await self.api.post(
            f"/api/products/{product_id}/publications", json={"platforms": platforms}, headers=tenant.headers
        )
        assert accepted.status_code == 202, accepted.text
        jobs: list[dict[str, Any]] = accepted.json()["jobs"]
        assert sorted(job["platform"] for job in jobs) == sorted(platforms)
        return jobs

    async def delist(self, tenant: Tenant, product_id: int, platform: str) -> dict[str, Any]:
        accepted = await self.api.delete(
            f"/api/products/{product_id}/publications/{platform}", headers=tenant.headers
        )
        assert accepted.status_code == 202, accepted.text
        job: dict[str, Any] = accepted.json()
        assert job["action"] == "delist"
        return job

    async def publications(self, tenant: Tenant, product_id: int) -> dict[str, Any]:
        response = await self.api.get(f"/api/products/{product_id}/publications", headers=tenant.headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    # -- jobs --------------------------------------------------------------------------------------------

    async def jobs_of(self, tenant: Tenant) -> dict[str, dict[str, Any]]:
        """Every job of the tenant by id (all pages)."""
        jobs: dict[str, dict[str, Any]] = {}
        params: dict[str, Any] = {"limit": 200}
        while True:
            response = await self.api.get("/api/jobs", params=params, headers=tenant.headers)
            assert response.status_code == 200, response.text
            page = response.json()
            jobs.update({job["id"]: job for job in page["items"]})
            if page["next_cursor"] is None:
                return jobs
            params["cursor"] = page["next_cursor"]

    async def wait_for_jobs(
        self, jobs: dict[str, Tenant], *, timeout: float = 60.0, interval: float = 0.2
    ) -> dict[str, dict[str, Any]]:
        """Poll until every job (id -> its tenant) is finished; fail naming the unfinished ones."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        tenants = {tenant.email: tenant for tenant in jobs.values()}
        seen: dict[str, dict[str, Any]] = {}
        while True:
            for tenant in tenants.values():
                seen.update(await self.jobs_of(tenant))
            unfinished = {
                job_id: seen.get(job_id, {}).get("status") for job_id in jobs if job_id not in seen
            } | {
                job_id: seen[job_id]["status"]
                for job_id in jobs
                if job_id in seen and seen[job_id]["status"] not in FINISHED
            }
            if not unfinished:
                return {job_id: seen[job_id] for job_id in jobs}
            if loop.time() > deadline:
                sample = dict(list(unfinished.items())[:10])
                raise AssertionError(f"{len(unfinished)} jobs unfinished after {timeout}s, e.g. {sample}")
            await asyncio.sleep(interval)

    # -- the marketplaces' side --------------------------------------------------------------------------

    async def ebay_skus(self, tenant: Tenant) -> dict[str, dict[str, Any]]:
        """The seller's eBay inventory per SKU: `inventory_item`, `offers`, `live_listing_ids`."""
        response = await self.sandbox.get("/_sandbox/ebay/listings", params={"account": tenant.ebay_account})
        assert response.status_code == 200, response.text
        account = response.json()["accounts"].get(tenant.ebay_account, {"skus": {}})
        skus: dict[str, dict[str, Any]] = account["skus"]
        return skus

    async def etsy_skus(self, tenant: Tenant) -> dict[str, list[dict[str, Any]]]:
        """The shop's Etsy listings per SKU (deleted ones flagged)."""
        response = await self.sandbox.get("/_sandbox/etsy/listings", params={"shop_id": tenant.etsy_shop_id})
        assert response.status_code == 200, response.text
        shop = response.json()["shops"].get(str(tenant.etsy_shop_id), {"skus": {}})
        skus: dict[str, list[dict[str, Any]]] = shop["skus"]
        return skus

    async def requests(self, **filters: Any) -> list[dict[str, Any]]:
        """The sandbox's request log, filtered (`platform`, `account`, `method`, `path_prefix`)."""
        response = await self.sandbox.get("/_sandbox/requests", params=filters)
        assert response.status_code == 200, response.text
        records: list[dict[str, Any]] = response.json()["requests"]
        return records

    async def arm_fault(self, **spec: Any) -> None:
        response = await self.sandbox.post("/_sandbox/faults", json=spec)
        assert response.status_code == 201, response.text

    async def clear_faults(self) -> None:
        response = await self.sandbox.delete("/_sandbox/faults")
        assert response.status_code == 204, response.text

    async def assert_one_listing_each(
        self, tenant: Tenant, products: list[dict[str, Any]], platforms: tuple[str, ...] = ("ebay", "etsy")
    ) -> None:
        """Each product has exactly one marketplace listing per platform, live, and ours knows its id."""
        ebay = await self.ebay_skus(tenant) if "ebay" in platforms else {}
        etsy = await self.etsy_skus(tenant) if "etsy" in platforms else {}
        for product in products:
            sku = product["sku"]
            listings = {
                row["platform"]: row for row in (await self.publications(tenant, product["id"]))["listings"]
            }
            if "ebay" in platforms:
                held = ebay.get(sku)
                assert held is not None, f"eBay has no inventory item for {sku}"
                assert len(held["offers"]) == 1, f"{sku} has {len(held['offers'])} eBay offers"
                assert len(held["live_listing_ids"]) == 1, held
                assert listings["ebay"]["status"] == "live", listings
                assert listings["ebay"]["external_id"] == held["live_listing_ids"][0]
            if "etsy" in platforms:
                found = [listing for listing in etsy.get(sku, []) if not listing["deleted"]]
                assert len(found) == 1, f"{sku} has {len(found)} Etsy listings"
                assert found[0]["state"] == "active", found[0]
                assert len(found[0]["images"]) == 1, found[0]["images"]
                assert listings["etsy"]["status"] == "live", listings
                assert listings["etsy"]["external_id"] == str(found[0]["listing_id"])


@pytest.fixture
async def storefront(platform_processes: PlatformProcesses) -> AsyncIterator[Storefront]:
    """Clients of the module's running API and sandbox; faults armed by the test are cleared after it."""
    async with (
        httpx.AsyncClient(base_url=platform_processes.api_url, timeout=30.0) as api,
        httpx.AsyncClient(base_url=platform_processes.sandbox_url, timeout=30.0) as sandbox,
    ):
        front = Storefront(api, sandbox)
        yield front
        await front.clear_faults()
