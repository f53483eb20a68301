"""The publication pipeline under faults, over real processes: whatever breaks (a worker killed with -9,
Redis flushed, the dispatcher down, answers lost, 429 storms, products that cannot be listed), every job
finishes and each command leaves exactly one listing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio

from tests.e2e.conftest import Storefront, Tenant, claim_redis_database
from tests.e2e.processes import LogReadyProcessHandle, PlatformProcesses

pytestmark = pytest.mark.e2e

INVENTORY = "/sell/inventory/v1"
#: The lease a worker holds (workers/context.py) plus a sweep (workers/dispatcher.py) and a run of the job,
#: with room to spare: what the guarantees promise after a kill -9.
RECOVERY_SECONDS = 20.0


@dataclass
class Pools:
    processes: PlatformProcesses
    dispatcher: LogReadyProcessHandle
    ebay: list[LogReadyProcessHandle]
    etsy: LogReadyProcessHandle

    def restore(self) -> None:
        """Bring back whatever a test stopped, so the next test starts with the whole platform."""
        for handle in [self.dispatcher, *self.ebay, self.etsy]:
            if not handle.running:
                handle.spawn()
        self.processes.wait_all_ready()


@pytest.fixture(scope="module")
def pools(platform_processes: PlatformProcesses) -> Pools:
    platform_processes.start_sandbox(wait=False)
    platform_processes.start_api(wait=False)
    pools = Pools(
        platform_processes,
        platform_processes.start_dispatcher(wait=False),
        # At DEBUG: the tests find the worker running a job by its `job_started` line (a DEBUG line since
        # the hot path stopped paying for it at INFO).
        [
            platform_processes.start_worker(
                "ebay", concurrency=4, wait=False, extra_env={"LOG_LEVEL": "DEBUG"}
            )
            for _ in range(2)
        ],
        platform_processes.start_worker("etsy", concurrency=4, wait=False),
    )
    platform_processes.wait_all_ready()
    return pools


@pytest.fixture
def platform(pools: Pools) -> Iterator[Pools]:
    yield pools
    pools.restore()


async def _publish_all(
    front: Storefront, tenant: Tenant, products: list[dict[str, Any]], platforms: list[str]
) -> dict[str, Tenant]:
    jobs: dict[str, Tenant] = {}
    for product in products:
        for job in await front.publish(tenant, product["id"], platforms):
            jobs[job["id"]] = tenant
    return jobs


def _all_succeeded(jobs: dict[str, dict[str, Any]]) -> None:
    failed = {
        job_id: (job["status"], job["error"]) for job_id, job in jobs.items() if job["status"] != "succeeded"
    }
    assert not failed, failed


async def _wait_for_status(
    front: Storefront, tenant: Tenant, job_ids: set[str], statuses: set[str], timeout: float = 15.0
) -> None:
    """Poll until every job is in one of `statuses`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        jobs = await front.jobs_of(tenant)
        current = {job_id: jobs[job_id]["status"] for job_id in job_ids}
        if set(current.values()) <= statuses:
            return
        assert loop.time() < deadline, f"jobs not {statuses} after {timeout}s: {current}"
        await asyncio.sleep(0.1)


# --- (a) a worker killed mid-publication -----------------------------------------------------------------


async def test_worker_killed_mid_publication_is_recovered_by_another(
    storefront: Storefront, platform: Pools, capsys: pytest.CaptureFixture[str]
) -> None:
    tenant = await storefront.new_tenant()
    product = await storefront.new_product(tenant)
    # Hold the job's first eBay call long enough to kill its worker in the middle of the publication.
    await storefront.arm_fault(
        platform="ebay", kind="latency", delay_seconds=4, count=1, path_prefix=f"{INVENTORY}/inventory_item"
    )
    [job] = await storefront.publish(tenant, product["id"], ["ebay"])

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    running: LogReadyProcessHandle | None = None
    while running is None:
        running = next(
            (
                worker
                for worker in platform.ebay
                if f'"job_id": "{job["id"]}"' in worker.log_text(current_run_only=True)
                and '"event": "job_started"' in worker.log_text(current_run_only=True)
            ),
            None,
        )
        assert loop.time() < deadline, "no eBay worker started the job"
        await asyncio.sleep(0.05)
    assert (await storefront.api.get(f"/api/jobs/{job['id']}", headers=tenant.headers)).json()[
        "status"
    ] == "running"

    running.kill()
    killed_at = time.monotonic()
    [done] = (await storefront.wait_for_jobs({job["id"]: tenant}, timeout=RECOVERY_SECONDS + 10)).values()
    recovered_after = time.monotonic() - killed_at
    with capsys.disabled():
        print(f"\n[e2e] job recovered {recovered_after:.1f}s after kill -9 of its worker")

    assert done["status"] == "succeeded", done
    assert recovered_after < RECOVERY_SECONDS
    assert done["attempts"] == 2, "the killed run counts as one attempt, its replay as a second"
    survivor = next(worker for worker in platform.ebay if worker is not running)
    assert f'"job_id": "{job["id"]}"' in survivor.log_text(current_run_only=True)
    await storefront.assert_one_listing_each(tenant, [product], platforms=("ebay",))
    # The killed attempt is closed in the history, not left `started` forever.
    history = (await storefront.publications(tenant, product["id"]))["history"]
    assert [row["status"] for row in history] == ["succeeded", "retrying"], history
    assert history[1]["error_message"] and history[1]["completed_at"], history


# --- (b) Redis flushed while rows wait ---------------------------------------------------------------------


async def test_redis_flushed_while_rows_queued_then_sweep_rehands_them(
    storefront: Storefront, platform: Pools
) -> None:
    tenant = await storefront.new_tenant()
    products = [await storefront.new_product(tenant, image_seed=i) for i in range(3)]
    # No eBay worker: the hand-offs stay in Redis, where the flush destroys them.
    for worker in platform.ebay:
        assert worker.terminate() == 0, worker.log_text(current_run_only=True)[-2000:]
    jobs = await _publish_all(storefront, tenant, products, ["ebay"])
    await _wait_for_status(storefront, tenant, set(jobs), {"queued"})

    client = redis.asyncio.Redis.from_url(platform.processes.env["REDIS_URL"])
    try:
        handed = [await client.zscore("stoflow:queue:ebay", f"{job_id}:1") for job_id in jobs]
        assert None not in handed, "each first run should wait in ARQ's eBay queue"
        await client.flushdb()
        assert await client.zcard("stoflow:queue:ebay") == 0
    finally:
        await client.aclose()
    claim_redis_database(platform.processes.env["REDIS_URL"])

    for worker in platform.ebay:
        worker.spawn()
    platform.processes.wait_all_ready()
    finished = await storefront.wait_for_jobs(jobs, timeout=30)
    _all_succeeded(finished)
    assert all(job["attempts"] == 1 for job in finished.values()), finished
    await storefront.assert_one_listing_each(tenant, products, platforms=("ebay",))


# --- (c) the dispatcher down while commands are accepted ---------------------------------------------------


async def test_commands_accepted_while_dispatcher_down_run_once_it_is_back(
    storefront: Storefront, platform: Pools
) -> None:
    assert platform.dispatcher.terminate() == 0
    tenant = await storefront.new_tenant()
    products = [await storefront.new_product(tenant, image_seed=i) for i in range(3)]
    jobs = await _publish_all(storefront, tenant, products, ["ebay", "etsy"])
    # Accepted (202) and durable, but nothing hands them to a worker: they stay pending.
    await asyncio.sleep(1.0)
    states = await storefront.jobs_of(tenant)
    assert {states[job_id]["status"] for job_id in jobs} == {"pending"}
    assert await storefront.ebay_skus(tenant) == {} and await storefront.etsy_skus(tenant) == {}

    platform.dispatcher.restart()
    finished = await storefront.wait_for_jobs(jobs, timeout=30)
    _all_succeeded(finished)
    await storefront.assert_one_listing_each(tenant, products)


# --- (d) the marketplace acted but its answer was lost -----------------------------------------------------


async def test_answer_lost_after_create_still_makes_one_listing(
    storefront: Storefront, platform: Pools
) -> None:
    tenant = await storefront.new_tenant()
    products = [await storefront.new_product(tenant)]
    shop_listings = f"/v3/application/shops/{tenant.etsy_shop_id}/listings"
    await storefront.arm_fault(
        platform="ebay", kind="response_lost", path_prefix=f"{INVENTORY}/offer", methods=["POST"], count=1
    )
    await storefront.arm_fault(
        platform="etsy",
        kind="response_lost",
        mode="drop",
        path_prefix=shop_listings,
        methods=["POST"],
        count=1,
    )
    jobs = await _publish_all(storefront, tenant, products, ["ebay", "etsy"])
    finished = await storefront.wait_for_jobs(jobs, timeout=30)
    _all_succeeded(finished)
    await storefront.assert_one_listing_each(tenant, products)

    faulted = [r for r in await storefront.requests() if r["fault"] == "response_lost"]
    assert sorted(r["platform"] for r in faulted) == ["ebay", "etsy"], (
        "both creates must have lost their answer"
    )
    etsy_creates = await storefront.requests(platform="etsy", method="POST", path_prefix=shop_listings)
    assert [r["path"] for r in etsy_creates].count(shop_listings) == 1, "Etsy's create must not be repeated"
    etsy_job = next(job for job in finished.values() if job["platform"] == "etsy")
    assert etsy_job["attempts"] == 2, "the run after the lost answer finds the listing by SKU"


# --- (e) a burst of 429s -----------------------------------------------------------------------------------


async def test_burst_of_429_with_retry_after_ends_in_one_listing_each(
    storefront: Storefront, platform: Pools
) -> None:
    tenant = await storefront.new_tenant()
    products = [await storefront.new_product(tenant, image_seed=i) for i in range(3)]
    await storefront.arm_fault(
        platform="ebay", kind="rate_limit", retry_after=1, count=8, path_prefix=INVENTORY
    )
    await storefront.arm_fault(
        platform="etsy", kind="rate_limit", retry_after=1, count=8, path_prefix="/v3/application/"
    )
    jobs = await _publish_all(storefront, tenant, products, ["ebay", "etsy"])
    finished = await storefront.wait_for_jobs(jobs, timeout=45)
    _all_succeeded(finished)
    await storefront.assert_one_listing_each(tenant, products)
    limited = [r for r in await storefront.requests() if r["status"] == 429]
    assert len([r for r in limited if r["platform"] == "ebay"]) == 8
    assert len([r for r in limited if r["platform"] == "etsy"]) == 8


# --- (f) a product that cannot be listed -------------------------------------------------------------------


async def test_unlistable_product_fails_once_without_reaching_the_marketplace(
    storefront: Storefront, platform: Pools
) -> None:
    tenant = await storefront.new_tenant()
    listable = await storefront.new_product(tenant)
    # No condition: eBay requires one (mapping_missing). A 2010s decade is not vintage on Etsy (not_eligible).
    unlistable = await storefront.new_product(tenant, condition=None, decade="2010s")
    good = await _publish_all(storefront, tenant, [listable], ["ebay", "etsy"])
    bad = await _publish_all(storefront, tenant, [unlistable], ["ebay", "etsy"])
    finished = await storefront.wait_for_jobs(good | bad, timeout=30)
    _all_succeeded({job_id: finished[job_id] for job_id in good})

    errors = {finished[job_id]["platform"]: finished[job_id] for job_id in bad}
    assert errors["ebay"]["status"] == "failed" and errors["etsy"]["status"] == "failed", errors
    assert errors["ebay"]["error"]["code"] == "mapping_missing"
    assert "condition" in errors["ebay"]["error"]["message"] and "ebay" in errors["ebay"]["error"]["message"]
    assert errors["etsy"]["error"]["code"] == "not_eligible"
    assert errors["ebay"]["attempts"] == errors["etsy"]["attempts"] == 1

    # The marketplaces heard of the listable product only.
    ebay_calls = await storefront.requests(platform="ebay", account=tenant.ebay_account)
    assert any(listable["sku"] in r["path"] for r in ebay_calls), "the filter must see the good product"
    assert not [r for r in ebay_calls if unlistable["sku"] in r["path"]]
    assert len([r for r in ebay_calls if r["method"] == "POST" and r["path"] == f"{INVENTORY}/offer"]) == 1
    shop_listings = f"/v3/application/shops/{tenant.etsy_shop_id}/listings"
    etsy_creates = await storefront.requests(platform="etsy", method="POST", path_prefix=shop_listings)
    assert [r["path"] for r in etsy_creates].count(shop_listings) == 1
    assert unlistable["sku"] not in await storefront.ebay_skus(tenant)
    assert unlistable["sku"] not in await storefront.etsy_skus(tenant)
    listings = (await storefront.publications(tenant, unlistable["id"]))["listings"]
    assert {row["platform"]: row["status"] for row in listings} == {"ebay": "failed", "etsy": "failed"}
