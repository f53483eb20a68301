"""Edits follow, the sync and the Vinted import, end to end: gateway, dispatcher, eBay, Etsy and Vinted
workers and the marketplace sandbox as real processes, the reference plugin client draining Vinted tasks.

- 10 PATCHes of a product live on eBay, Etsy and Vinted within a second give one `update` job per platform,
  and each marketplace ends up showing the last values (read from `GET /_sandbox/state`);
- a listing withdrawn on eBay by hand is found `delisted` by the eBay pool's sync;
- a Vinted wardrobe of 120 items is imported through the plugin: two pages, two requests of the budget.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from ops.config.settings import Settings
from ops.tools.plugin_client import GapRange, PluginClient, PluginClientConfig
from tests.e2e.conftest import PASSWORD, Storefront, Tenant
from tests.e2e.processes import PlatformProcesses
from tests.support import pg_connection

pytestmark = pytest.mark.e2e

COALESCE_SECONDS = 4
SYNC_SECONDS = 2
NO_GAP = GapRange(0, 0)
#: Listable on eBay, Etsy (vintage) and Vinted.
ATTRIBUTES = {
    "category": "women_dresses",
    "condition": "very_good",
    "brand": "zara",
    "size": "s",
    "decade": "1990s",
}


@pytest.fixture(scope="module")
def platform_processes(
    migrated: Settings, e2e_redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PlatformProcesses]:
    """The conftest's processes with a short coalescing window and a short sync round."""
    assert migrated.database_url is not None
    work_dir = tmp_path_factory.mktemp("e2e-edits")
    env = {
        "UPDATE_COALESCE_SECONDS": str(COALESCE_SECONDS),
        "SYNC_INTERVAL_SECONDS": str(SYNC_SECONDS),
        "VINTED_SYNC_INTERVAL_SECONDS": "0",
    }
    with PlatformProcesses(migrated.database_url, e2e_redis_url, work_dir, extra_env=env) as processes:
        yield processes


@pytest.fixture(scope="module", autouse=True)
def running_platform(platform_processes: PlatformProcesses) -> Iterator[PlatformProcesses]:
    platform_processes.start_sandbox(wait=False)
    platform_processes.start_api(wait=False)
    platform_processes.start_dispatcher(wait=False)
    for platform in ("ebay", "etsy", "vinted"):
        platform_processes.start_worker(platform, concurrency=4, wait=False)
    platform_processes.wait_all_ready()
    yield platform_processes
    crashed = [handle for handle in platform_processes.handles if not handle.running]
    assert not crashed, f"processes died during the module: {crashed}"


@contextlib.asynccontextmanager
async def _plugin(
    platform: PlatformProcesses, tenant: Tenant, state_dir: Path
) -> AsyncIterator[PluginClient]:
    """The reference plugin client of the tenant, running until the block ends."""
    client = PluginClient(
        PluginClientConfig(
            api_url=platform.api_url,
            email=tenant.email,
            password=PASSWORD,
            vinted_url=platform.sandbox_url,
            state_dir=state_dir,
            write_gap=NO_GAP,
            read_gap=NO_GAP,
            sandbox_login=True,
            poll_wait=5,
            heartbeat_seconds=5.0,
        )
    )
    running = asyncio.create_task(client.run())
    try:
        yield client
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running


async def _vinted_account(storefront: Storefront, tenant: Tenant) -> tuple[int, int]:
    member = int((await storefront.sandbox.post("/_sandbox/vinted/sessions", json={})).json()["user_id"])
    account = await storefront.api.post(
        "/api/integrations/vinted/accounts",
        json={"vinted_user_id": member, "username": f"member_{member}"},
        headers=tenant.headers,
    )
    assert account.status_code == 201, account.text
    return member, int(account.json()["id"])


async def _jobs(storefront: Storefront, tenant: Tenant, **filters: Any) -> list[dict[str, Any]]:
    response = await storefront.api.get("/api/jobs", params={"limit": 200, **filters}, headers=tenant.headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def _sandbox_state(storefront: Storefront) -> dict[str, Any]:
    response = await storefront.sandbox.get("/_sandbox/state")
    assert response.status_code == 200, response.text
    state: dict[str, Any] = response.json()
    return state


async def test_ten_edits_in_a_second_reach_every_marketplace_as_one_update_each_then_the_sync(
    storefront: Storefront, running_platform: PlatformProcesses, tmp_path: Path, migrated: Settings
) -> None:

    async def on_pro_plan(tenant_id: int) -> None:  # three marketplaces need the pro plan
        async with pg_connection(migrated) as connection:
            await connection.execute("UPDATE public.tenants SET tier = 'pro' WHERE id = $1", tenant_id)

    tenant = await storefront.new_tenant(registered_hook=on_pro_plan)
    member, _account = await _vinted_account(storefront, tenant)
    product = await storefront.new_product(tenant, **ATTRIBUTES)
    async with _plugin(running_platform, tenant, tmp_path / "plugin"):
        published = await storefront.publish(tenant, product["id"], ["ebay", "etsy", "vinted"])
        done = await storefront.wait_for_jobs({job["id"]: tenant for job in published}, timeout=90)
        assert {job["status"] for job in done.values()} == {"succeeded"}, done

        url = f"/api/products/{product['id']}"
        loop = asyncio.get_running_loop()
        started = loop.time()

        for index in range(10):
            edited = await storefront.api.patch(
                url,
                json={"title": f"Robe Zara fleurie modele {index}", "price": f"{30 + index}.00"},
                headers=tenant.headers,
            )
            assert edited.status_code == 200, edited.text
        # About a second on a quiet machine; what matters is that they all land within one window.
        span = loop.time() - started
        assert span < COALESCE_SECONDS, f"the ten edits took {span:.2f}s, more than the coalescing window"
        title, price = "Robe Zara fleurie modele 9", "39.00"
        updates = await _jobs(storefront, tenant, action="update", product_id=product["id"])
        assert sorted(job["platform"] for job in updates) == ["ebay", "etsy", "vinted"], updates
        finished = await storefront.wait_for_jobs({job["id"]: tenant for job in updates}, timeout=90)
        assert {job["status"] for job in finished.values()} == {"succeeded"}, finished
        # Still one per platform once they ran: no edit was left behind for a second one.
        assert len(await _jobs(storefront, tenant, action="update", product_id=product["id"])) == 3

    listings = {
        row["platform"]: row for row in (await storefront.publications(tenant, product["id"]))["listings"]
    }
    state = await _sandbox_state(storefront)
    ebay_sku = state["ebay"]["accounts"][tenant.ebay_account]["skus"][product["sku"]]
    assert ebay_sku["inventory_item"]["product"]["title"] == title
    [offer] = ebay_sku["offers"]
    assert offer["pricingSummary"]["price"]["value"] == price
    etsy_listings = state["etsy"]["shops"][str(tenant.etsy_shop_id)]["skus"][product["sku"]]
    [etsy] = [row for row in etsy_listings if not row["deleted"]]
    assert etsy["title"] == title and etsy["price"]["amount"] == int(price.replace(".", ""))
    [vinted] = [item for item in state["vinted"]["users"][str(member)]["items"] if not item["is_closed"]]
    assert str(vinted["id"]) == listings["vinted"]["external_id"]
    assert vinted["title"] == title and vinted["price"]["amount"] == price

    # The seller ends the eBay listing in Seller Hub: the eBay pool's sync finds it within a few rounds.
    ended = await storefront.sandbox.post(
        "/_sandbox/ebay/withdrawals", json={"listing_id": listings["ebay"]["external_id"]}
    )
    assert ended.status_code == 201, ended.text
    # A sync round reads every live listing of every tenant at the application's request rate, and earlier
    # modules of the session leave a few hundred live eBay listings behind: allow for a few full rounds.
    deadline = asyncio.get_running_loop().time() + 10 * SYNC_SECONDS + 180
    while True:
        publications = await storefront.publications(tenant, product["id"])
        statuses = {row["platform"]: row["status"] for row in publications["listings"]}
        if statuses["ebay"] == "delisted":
            break
        assert asyncio.get_running_loop().time() < deadline, publications
        await asyncio.sleep(0.5)
    assert statuses == {"ebay": "delisted", "etsy": "live", "vinted": "live"}
    assert publications["history"][0]["action"] == "sync"


async def test_a_vinted_wardrobe_of_120_items_is_imported_through_the_reference_plugin(
    storefront: Storefront, running_platform: PlatformProcesses, tmp_path: Path
) -> None:
    tenant = await storefront.new_tenant(connect=())
    member, account = await _vinted_account(storefront, tenant)
    items = [
        {
            "title": f"Pull n°{index}",
            "price": "12.00",
            "catalog_id": 10,
            "status_id": 2,
            "brand_id": 12 if index % 4 else None,
            "brand_title": "Zara" if index % 4 else "Tricot maison",
        }
        for index in range(120)
    ]
    seeded = await storefront.sandbox.post(
        "/_sandbox/vinted/wardrobe", json={"user_id": member, "items": items}
    )
    assert seeded.status_code == 201, seeded.text
    async with _plugin(running_platform, tenant, tmp_path / "plugin"):
        # A free-tier tenant may hold 100 products: the rest are skipped, and the result says why.
        accepted = await storefront.api.post(
            "/api/imports", json={"platform": "vinted"}, headers=tenant.headers
        )
        assert accepted.status_code == 202, accepted.text
        done = await storefront.wait_for_jobs({accepted.json()["id"]: tenant}, timeout=90)
    job = done[accepted.json()["id"]]
    assert job["status"] == "succeeded", job
    assert job["result"]["created"] == 100 and job["result"]["skipped"] == 20, job["result"]
    assert job["result"]["notes"] == ["the plan's product limit was reached"]
    usage = (
        await storefront.api.get(
            f"/api/integrations/vinted/accounts/{account}/rate-limit", headers=tenant.headers
        )
    ).json()
    assert usage["used"] == 2, usage  # two wardrobe pages of 96: two requests of the member's 40
    sent = await storefront.requests(
        platform="vinted", account=str(member), method="GET", path_prefix="/api/v2/wardrobe"
    )
    assert len(sent) == 2
