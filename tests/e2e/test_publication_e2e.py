"""Publishing end to end: gateway, dispatcher, two eBay workers and one Etsy worker, the marketplace sandbox,
all real processes talking real HTTP, on the run's PostgreSQL database and Redis."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import Storefront, Tenant
from tests.e2e.processes import PlatformProcesses

pytestmark = pytest.mark.e2e

TENANTS = 3
PRODUCTS = 50
DELISTED = 4


@pytest.fixture(scope="module", autouse=True)
def running_platform(platform_processes: PlatformProcesses) -> Iterator[PlatformProcesses]:
    platform_processes.start_sandbox(wait=False)
    platform_processes.start_api(wait=False)
    platform_processes.start_dispatcher(wait=False)
    platform_processes.start_worker("ebay", concurrency=8, wait=False)
    platform_processes.start_worker("ebay", concurrency=8, wait=False)
    platform_processes.start_worker("etsy", concurrency=8, wait=False)
    platform_processes.wait_all_ready()
    yield platform_processes
    crashed = [handle for handle in platform_processes.handles if not handle.running]
    assert not crashed, f"processes died during the module: {crashed}"


def _metric(text: str, name: str, **labels: str) -> float:
    """Sum of a Prometheus sample's values over the series whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}\{{(?P<labels>[^}}]*)\}} (?P<value>\S+)", line)
        if match is None:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
        if all(found.get(key) == value for key, value in labels.items()):
            total += float(match["value"])
    return total


async def test_fifty_products_publish_once_on_ebay_and_etsy_then_delist(
    storefront: Storefront, running_platform: PlatformProcesses
) -> None:
    tenants = [await storefront.new_tenant() for _ in range(TENANTS)]
    catalogue: dict[str, list[dict[str, Any]]] = {tenant.email: [] for tenant in tenants}
    owner: dict[str, Tenant] = {}

    async def create_and_publish(index: int) -> None:
        tenant = tenants[index % TENANTS]
        product = await storefront.new_product(tenant, image_seed=index)
        catalogue[tenant.email].append(product)
        for job in await storefront.publish(tenant, product["id"], ["ebay", "etsy"]):
            assert job["action"] == "publish" and job["status"] in ("pending", "queued", "running")
            owner[job["id"]] = tenant

    # A few users at a time, as a browser would.
    for start in range(0, PRODUCTS, 10):
        await asyncio.gather(*(create_and_publish(i) for i in range(start, min(start + 10, PRODUCTS))))
    assert len(owner) == 2 * PRODUCTS

    finished = await storefront.wait_for_jobs(owner, timeout=90)
    failed = {job_id: job["error"] for job_id, job in finished.items() if job["status"] != "succeeded"}
    assert not failed, failed
    assert all(job["result"]["external_id"] for job in finished.values())

    for tenant in tenants:
        await storefront.assert_one_listing_each(tenant, catalogue[tenant.email])
        # Nothing else was listed: one eBay SKU and one Etsy SKU per product of this tenant, no strays.
        skus = {product["sku"] for product in catalogue[tenant.email]}
        assert set(await storefront.ebay_skus(tenant)) == skus
        assert set(await storefront.etsy_skus(tenant)) == skus
        for product in catalogue[tenant.email][:3]:
            history = (await storefront.publications(tenant, product["id"]))["history"]
            assert sorted((row["platform"], row["action"], row["status"]) for row in history) == [
                ("ebay", "publish", "succeeded"),
                ("etsy", "publish", "succeeded"),
            ]
            detail = await storefront.api.get(f"/api/products/{product['id']}", headers=tenant.headers)
            assert detail.json()["status"] == "published"

    # Delist a few on both platforms.
    tenant = tenants[0]
    chosen = catalogue[tenant.email][:DELISTED]
    delists: dict[str, Tenant] = {}
    for product in chosen:
        for platform in ("ebay", "etsy"):
            delists[(await storefront.delist(tenant, product["id"], platform))["id"]] = tenant
    done = await storefront.wait_for_jobs(delists, timeout=30)
    assert {job["status"] for job in done.values()} == {"succeeded"}, done
    ebay = await storefront.ebay_skus(tenant)
    etsy = await storefront.etsy_skus(tenant)
    for product in chosen:
        held = ebay[product["sku"]]
        assert held["live_listing_ids"] == [], held
        [offer] = held["offers"]
        assert offer["status"] == "UNPUBLISHED" and len(offer["ended_listing_ids"]) == 1, offer
        [listing] = etsy[product["sku"]]
        assert listing["state"] == "inactive", listing
        listings = (await storefront.publications(tenant, product["id"]))["listings"]
        assert {row["platform"]: row["status"] for row in listings} == {
            "ebay": "delisted",
            "etsy": "delisted",
        }
    # The others stay live.
    await storefront.assert_one_listing_each(tenant, catalogue[tenant.email][DELISTED:])

    metrics = await storefront.api.get("/metrics")
    assert metrics.status_code == 200
    counted = [line for line in metrics.text.splitlines() if line.startswith("stoflow_jobs_total")]
    assert (
        _metric(metrics.text, "stoflow_jobs_total", outcome="succeeded", action="publish") >= 2 * PRODUCTS
    ), counted
    assert _metric(metrics.text, "stoflow_jobs_total", outcome="succeeded", action="delist") >= 2 * DELISTED

    queues = await asyncio.to_thread(running_platform.run_cli, "queues")
    assert queues.returncode == 0, queues.stderr
    rows = {line.split()[0]: line.split()[1:] for line in queues.stdout.splitlines() if line.strip()}
    assert rows["platform"][:3] == ["pending", "queued", "running"], queues.stdout
    assert {"vinted", "ebay", "etsy", "ai"} <= set(rows), queues.stdout
    # (The run's database may hold other tests' rows too, so the counts are checked for shape only.)
    for platform in ("ebay", "etsy"):
        assert all(cell.isdigit() for cell in rows[platform][:6]), queues.stdout
