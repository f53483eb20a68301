"""The listing sync: a listing ended outside Stoflow becomes `delisted` with a history row; the others stay.

eBay listings made live by an import (real eBay worker, sandbox on a real socket), one withdrawn by the
seller in the sandbox, then the tenant's sync by a real worker process's app against the sandbox (the
loop that runs rounds in the eBay pool is exercised end to end in tests/e2e/test_edits_sync_import_e2e.py).
"""

from __future__ import annotations

import httpx

from ops.config.settings import Settings
from tests.integration.test_imports import ebay_connection, pro_tenant, run_import
from tests.integration.test_platform_ebay import sandbox_url  # noqa: F401 - the module's sandbox fixture
from tests.pipeline_support import running_pipeline, wait_for_job
from workers.context import build_worker_app
from workers.platforms.registry import build_adapters
from workers.sync import sync_tenant


async def test_a_listing_withdrawn_on_ebay_is_found_delisted_by_the_sync(
    migrated: Settings,
    sandbox_url: str,  # noqa: F811 - the fixture
    client: httpx.AsyncClient,
) -> None:
    settings = migrated.model_copy(update={"ebay_api_base": sandbox_url})
    async with httpx.AsyncClient(base_url=sandbox_url, timeout=30) as control:
        headers, tenant_id = await pro_tenant(client, settings)
        seller = (await control.post("/_sandbox/ebay/accounts", json={})).json()
        items = [
            {"sku": f"SYNC-{index}", "title": f"Chemise n°{index}", "price": "20.00", "category_id": "63864"}
            for index in range(3)
        ]
        seeded = await control.post(
            "/_sandbox/ebay/inventory", json={"account_id": seller["account_id"], "items": items}
        )
        assert seeded.status_code == 201, seeded.text
        connected = await client.put("/api/integrations/ebay", json=ebay_connection(seller), headers=headers)
        assert connected.status_code == 200
        async with running_pipeline(settings, "ebay", None):
            job = await run_import(client, headers, "ebay")
            assert (await wait_for_job(client, headers, job["id"], timeout=60))["status"] == "succeeded"
        products = {p["sku"]: p for p in (await client.get("/api/products", headers=headers)).json()["items"]}
        withdrawn = seeded.json()["items"][1]
        ended = await control.post("/_sandbox/ebay/withdrawals", json={"listing_id": withdrawn["listing_id"]})
        assert ended.status_code == 201 and ended.json()["status"] == "UNPUBLISHED"

        app = await build_worker_app(settings, "ebay", 2)
        app.adapters = build_adapters(app)
        try:
            assert await sync_tenant(app, tenant_id) == 1
            assert await sync_tenant(app, tenant_id) == 0  # found once; nothing else ended
        finally:
            await app.close()

        for sku, product in products.items():
            publications = (
                await client.get(f"/api/products/{product['id']}/publications", headers=headers)
            ).json()
            [listing] = publications["listings"]
            if sku == withdrawn["sku"]:
                assert listing["status"] == "delisted" and listing["external_id"] == withdrawn["listing_id"]
                [sync_row] = [row for row in publications["history"] if row["action"] == "sync"]
                assert sync_row["status"] == "succeeded"
                assert sync_row["error_message"] == "The listing was ended on eBay outside Stoflow."
            else:
                assert listing["status"] == "live" and listing["last_synced_at"] is not None
                assert [row["action"] for row in publications["history"]] == ["import"]
        # A delisted listing may be published again.
        again = await client.post(
            f"/api/products/{products[withdrawn['sku']]['id']}/publications",
            json={"platforms": ["ebay"]},
            headers=headers,
        )
        assert again.status_code == 202, again.text
