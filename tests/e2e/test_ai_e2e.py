"""AI descriptions with real processes: `stoflow worker --platform ai` drains the job, the product takes the
text, and the live eBay listing is updated with it by an eBay worker, through the marketplace sandbox."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.conftest import Storefront
from tests.e2e.processes import PlatformProcesses

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", autouse=True)
def running_platform(platform_processes: PlatformProcesses) -> Iterator[PlatformProcesses]:
    platform_processes.start_sandbox(wait=False)
    platform_processes.start_api(wait=False)
    platform_processes.start_dispatcher(wait=False)
    platform_processes.start_worker("ai", concurrency=2, wait=False)
    platform_processes.start_worker("ebay", concurrency=2, wait=False)
    platform_processes.wait_all_ready()
    yield platform_processes
    crashed = [handle for handle in platform_processes.handles if not handle.running]
    assert not crashed, f"processes died during the module: {crashed}"


async def test_a_written_description_reaches_the_live_listing(storefront: Storefront) -> None:
    tenant = await storefront.new_tenant(connect=("ebay",))
    product = await storefront.new_product(tenant)
    [publish] = await storefront.publish(tenant, product["id"], ["ebay"])
    published = await storefront.wait_for_jobs({publish["id"]: tenant}, timeout=60)
    assert published[publish["id"]]["status"] == "succeeded", published

    accepted = await storefront.api.post(
        f"/api/products/{product['id']}/description", json={"language": "fr"}, headers=tenant.headers
    )
    assert accepted.status_code == 202, accepted.text
    described = (await storefront.wait_for_jobs({accepted.json()["id"]: tenant}, timeout=60))[
        accepted.json()["id"]
    ]
    assert described["status"] == "succeeded", described
    copy = described["result"]
    detail = (await storefront.api.get(f"/api/products/{product['id']}", headers=tenant.headers)).json()
    assert (detail["title"], detail["description"]) == (copy["title"], copy["description"])

    updates = {
        job_id: tenant
        for job_id, job in (await storefront.jobs_of(tenant)).items()
        if job["action"] == "update" and job["platform"] == "ebay"
    }
    assert len(updates) == 1
    finished = await storefront.wait_for_jobs(updates, timeout=60)
    assert all(job["status"] == "succeeded" for job in finished.values()), finished
    item = (await storefront.ebay_skus(tenant))[product["sku"]]["inventory_item"]
    assert item["product"]["title"] == copy["title"]
    assert item["product"]["description"] == copy["description"]
    credits = (await storefront.api.get("/api/ai/credits", headers=tenant.headers)).json()
    assert credits["remaining"] == credits["monthly"] - 1
