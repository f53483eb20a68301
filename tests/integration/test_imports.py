"""Imports: a seller's existing listings become linked products, once, whatever is imported again.

The gateway, PostgreSQL, the dispatcher, Redis and real eBay and Vinted workers with their real adapters; the
marketplaces are the sandbox on a real socket. The Vinted wardrobe is read through plugin tasks: this test
is the plugin (it claims the tasks over the plugin routes, sends their requests to the sandbox with the
member's session, and reports what Vinted answered).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from ops.config.settings import Settings
from tests.integration.test_platform_ebay import sandbox_url  # noqa: F401 - the module's sandbox fixture
from tests.pipeline_support import running_pipeline, wait_for_job
from tests.support import assert_problem, bearer, pg_connection, register
from workers.context import build_worker_app
from workers.sync import sync_tenant

VINTED_ITEMS = 120
EBAY_ITEMS = 80
#: Vinted's largest wardrobe page: 120 items are two pages, two requests of the member's 40.
VINTED_PAGES = 2


def _vinted_items() -> list[dict[str, Any]]:
    items = []
    for index in range(VINTED_ITEMS):
        item: dict[str, Any] = {
            "title": f"Robe Zara n°{index}",
            "description": "Robe d'été.",
            "price": f"{10 + index % 30}.50",
            "catalog_id": 10,
            "status_id": 2,
            "brand_id": 12,
            "brand_title": "Zara",
            "size_id": 1227,
            "size_title": "52",
            "color_ids": [9],
        }
        if index % 10 == 0:
            # A brand the member typed, unknown to Vinted's list and to our mappings.
            item |= {"brand_id": None, "brand_title": f"Atelier Grenier {index}"}
        items.append(item)
    return items


def _ebay_items() -> list[dict[str, Any]]:
    items = []
    for index in range(EBAY_ITEMS):
        brand = "Zara" if index % 8 else f"Maison Oubliée {index}"
        items.append(
            {
                "sku": f"EBAY-OLD-{index:03d}",
                "title": f"Jupe vintage n°{index}",
                "description": "Jupe plissée.",
                "aspects": {"Brand": [brand], "Department": ["Women"]},
                "condition": "USED_EXCELLENT",
                "quantity": 1 + index % 3,
                "price": "29.00",
                "category_id": "63864",
            }
        )
    return items


async def pro_tenant(client: httpx.AsyncClient, settings: Settings) -> tuple[dict[str, str], int]:
    body = await register(client)
    tenant_id = int(body["user"]["tenant_id"])
    async with pg_connection(settings) as connection:
        await connection.execute("UPDATE public.tenants SET tier = 'pro' WHERE id = $1", tenant_id)
    return bearer(body), tenant_id


def ebay_connection(seller: dict[str, Any]) -> dict[str, Any]:
    """The body of PUT /api/integrations/ebay for a sandbox seller."""
    return {
        "access_token": seller["access_token"],
        "refresh_token": seller["refresh_token"],
        "marketplace_id": "EBAY_FR",
        "fulfillment_policy_id": "ship-1",
        "payment_policy_id": "pay-1",
        "return_policy_id": "ret-1",
        "merchant_location_key": "paris-1",
    }


async def _all_products(client: httpx.AsyncClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    products: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 200}
    while True:
        page = (await client.get("/api/products", params=params, headers=headers)).json()
        products += page["items"]
        if page["next_cursor"] is None:
            return products
        params["cursor"] = page["next_cursor"]


async def run_import(client: httpx.AsyncClient, headers: dict[str, str], platform: str) -> dict[str, Any]:
    accepted = await client.post("/api/imports", json={"platform": platform}, headers=headers)
    assert accepted.status_code == 202, accepted.text
    job = accepted.json()
    assert (job["action"], job["platform"], job["product_id"]) == ("import", platform, None)
    return job


async def _act_as_plugin(
    plugin: httpx.AsyncClient, headers: dict[str, str], vinted: httpx.AsyncClient, stop: asyncio.Event
) -> int:
    """Claim this tenant's tasks, run their requests on the sandbox's Vinted, report; return requests sent."""
    sent = 0
    while not stop.is_set():
        poll = await plugin.get("/api/plugin/tasks", params={"wait": 1, "limit": 5}, headers=headers)
        assert poll.status_code == 200, poll.text
        for task in poll.json()["tasks"]:
            assert task["operation"] == "list_items", task
            responses = []
            for request in task["requests"]:
                assert request["method"] == "GET" and "/wardrobe/" in request["path"], request
                answer = await vinted.get(request["path"])
                sent += 1
                responses.append({"http_status": answer.status_code, "body": answer.json()})
            reported = await plugin.post(
                f"/api/plugin/tasks/{task['id']}/result",
                json={"lease_id": task["lease_id"], "status": "success", "responses": responses},
                headers=headers,
            )
            assert reported.status_code == 200, reported.text
    return sent


@pytest.fixture
def settings_with_sandbox(migrated: Settings, sandbox_url: str) -> Settings:  # noqa: F811 - the fixture
    return migrated.model_copy(update={"ebay_api_base": sandbox_url})


async def test_importing_120_vinted_and_80_ebay_items_twice_makes_200_products(
    settings_with_sandbox: Settings,
    sandbox_url: str,  # noqa: F811 - the fixture
    app: FastAPI,
    client: httpx.AsyncClient,
) -> None:
    settings = settings_with_sandbox
    async with httpx.AsyncClient(base_url=sandbox_url, timeout=30) as control:
        headers, tenant_id = await pro_tenant(client, settings)
        # eBay: a seller with 80 listings from before Stoflow; one SKU is already a (draft) product of ours.
        seller = (await control.post("/_sandbox/ebay/accounts", json={})).json()
        seeded = await control.post(
            "/_sandbox/ebay/inventory", json={"account_id": seller["account_id"], "items": _ebay_items()}
        )
        assert seeded.status_code == 201, seeded.text
        connected = await client.put("/api/integrations/ebay", json=ebay_connection(seller), headers=headers)
        assert connected.status_code == 200
        draft = await client.post(
            "/api/products",
            json={"title": "Jupe déjà saisie", "price": "30.00", "sku": "EBAY-OLD-007"},
            headers=headers,
        )
        assert draft.status_code == 201, draft.text
        # Vinted: a member with 120 items in the wardrobe.
        login = (await control.post("/_sandbox/vinted/sessions", json={})).json()
        member = int(login["user_id"])
        wardrobe = await control.post(
            "/_sandbox/vinted/wardrobe", json={"user_id": member, "items": _vinted_items()}
        )
        assert wardrobe.status_code == 201, wardrobe.text
        account = await client.post(
            "/api/integrations/vinted/accounts",
            json={"vinted_user_id": member, "username": "grenier"},
            headers=headers,
        )
        assert account.status_code == 201, account.text
        account_id = account.json()["id"]

        results: dict[str, list[dict[str, Any]]] = {"ebay": [], "vinted": []}
        async with running_pipeline(settings, "ebay", None):
            for _ in range(2):
                job = await run_import(client, headers, "ebay")
                done = await wait_for_job(client, headers, job["id"], timeout=60)
                assert done["status"] == "succeeded", done
                results["ebay"].append(done["result"])

        vinted = httpx.AsyncClient(
            base_url=sandbox_url, cookies=login["cookies"], headers=login["headers"], timeout=30
        )
        async with running_pipeline(settings, "vinted", None), vinted:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://testserver", timeout=40
            ) as plugin:
                stop = asyncio.Event()
                plugin_run = asyncio.create_task(_act_as_plugin(plugin, headers, vinted, stop))
                try:
                    vinted_jobs = set()
                    for _ in range(2):
                        job = await run_import(client, headers, "vinted")
                        vinted_jobs.add(job["id"])
                        done = await wait_for_job(client, headers, job["id"], timeout=60)
                        assert done["status"] == "succeeded", done
                        results["vinted"].append(done["result"])
                    # The member deletes two items in the Vinted app: the periodic wardrobe check (a
                    # sync-only import) and the next import find them gone.
                    gone = [wardrobe.json()["items"][5]["id"], wardrobe.json()["items"][6]["id"]]
                    deleted = await control.post("/_sandbox/vinted/deletions", json={"item_id": gone[0]})
                    assert deleted.status_code == 201 and deleted.json()["is_closed"] is True
                    app_of_worker = await build_worker_app(settings, "vinted", 1)
                    try:
                        await sync_tenant(app_of_worker, tenant_id)
                    finally:
                        await app_of_worker.close()
                    imports_seen = (
                        await client.get(
                            "/api/jobs", params={"action": "import", "platform": "vinted"}, headers=headers
                        )
                    ).json()["items"]
                    [check] = [job for job in imports_seen if job["id"] not in vinted_jobs]
                    synced = await wait_for_job(client, headers, check["id"], timeout=60)
                    assert synced["result"] == {
                        "created": 0,
                        "linked": 0,
                        "skipped": VINTED_ITEMS - 1,
                        "needs_review": 0,
                        "ended_outside": 1,
                    }, synced
                    await control.post("/_sandbox/vinted/deletions", json={"item_id": gone[1]})
                    job = await run_import(client, headers, "vinted")
                    done = await wait_for_job(client, headers, job["id"], timeout=60)
                    assert done["result"]["ended_outside"] == 1 and done["result"]["created"] == 0, done
                finally:
                    stop.set()
                    sent = await plugin_run

        # 80 eBay listings: 79 new products and one linked to the draft of its SKU; the second import
        # finds every one already linked.
        assert results["ebay"][0] == {"created": 79, "linked": 1, "skipped": 0, "needs_review": 10}
        assert results["ebay"][1] == {"created": 0, "linked": 0, "skipped": 80, "needs_review": 0}
        assert results["vinted"][0] == {"created": 120, "linked": 0, "skipped": 0, "needs_review": 12}
        assert results["vinted"][1] == {"created": 0, "linked": 0, "skipped": 120, "needs_review": 0}

        # Vinted's side: each of the 4 reads took the wardrobe's two pages, each request a slot.
        assert sent == 4 * VINTED_PAGES
        usage = (
            await client.get(f"/api/integrations/vinted/accounts/{account_id}/rate-limit", headers=headers)
        ).json()
        assert usage["used"] == 4 * VINTED_PAGES <= usage["limit"], usage

        products = await _all_products(client, headers)
        assert len(products) == 200  # 120 + 80, the draft included: no duplicate
        detail = {p["id"]: p for p in products}
        listings: Counter[tuple[str, str]] = Counter()
        for product in products:
            publications = (
                await client.get(f"/api/products/{product['id']}/publications", headers=headers)
            ).json()
            for listing in publications["listings"]:
                listings[(listing["platform"], listing["external_id"])] += 1
                ended = listing["external_id"] in {str(item) for item in gone}
                assert listing["status"] == ("delisted" if ended else "live"), listing
                if ended:
                    [sync_row] = [row for row in publications["history"] if row["action"] == "sync"]
                    assert sync_row["error_message"] == "The item was deleted on Vinted outside Stoflow."
        assert len(listings) == 200 and set(listings.values()) == {1}
        reviewed = {p["title"]: p["needs_review"] for p in detail.values() if p["needs_review"]}
        assert reviewed["Robe Zara n°10"] == {"brand": "Atelier Grenier 10"}
        assert reviewed["Jupe vintage n°8"] == {"brand": "Maison Oubliée 8"}
        assert len(reviewed) == 22
        linked = next(p for p in products if p["sku"] == "EBAY-OLD-007")
        assert linked["title"] == "Jupe déjà saisie" and linked["status"] == "published"
        imported = next(p for p in products if p["title"] == "Robe Zara n°3")
        assert (imported["brand"], imported["category"], imported["size"], imported["color"]) == (
            "zara",
            "women_dresses",
            "fr_52",
            "blue",
        )
        assert imported["status"] == "published" and imported["price"] == "13.50"


async def test_import_command_rules(client: httpx.AsyncClient) -> None:
    headers = bearer(await register(client))
    for body in ({"platform": "etsy"}, {"platform": "amazon"}, {}, {"platform": "ebay", "extra": 1}):
        assert_problem(await client.post("/api/imports", json=body, headers=headers), 422, "validation_error")
    assert_problem(
        await client.post("/api/imports", json={"platform": "ebay"}, headers=headers),
        409,
        "platform_not_connected",
    )
    assert_problem(
        await client.post("/api/imports", json={"platform": "vinted"}, headers=headers),
        409,
        "platform_not_connected",
    )
    for member in (71000001, 71000002):
        added = await client.post(
            "/api/integrations/vinted/accounts",
            json={"vinted_user_id": member, "username": f"m{member}"},
            headers=headers,
        )
        assert added.status_code == 201, added.text
    assert_problem(
        await client.post("/api/imports", json={"platform": "vinted"}, headers=headers),
        422,
        "account_required",
    )
    assert_problem(
        await client.post(
            "/api/imports", json={"platform": "vinted", "vinted_account_id": 999999}, headers=headers
        ),
        422,
        "unknown_account",
    )
    account = (await client.get("/api/integrations/vinted/accounts", headers=headers)).json()["items"][0][
        "id"
    ]
    first = await client.post(
        "/api/imports", json={"platform": "vinted", "vinted_account_id": account}, headers=headers
    )
    assert first.status_code == 202, first.text
    # An import still under way is the answer to the same command, not a second read of the wardrobe.
    again = await client.post(
        "/api/imports", json={"platform": "vinted", "vinted_account_id": account}, headers=headers
    )
    assert again.status_code == 202 and again.json()["id"] == first.json()["id"]
    assert "/api/imports" in (await client.get("/openapi.json")).json()["paths"]
