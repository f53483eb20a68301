"""The product list: filters, literal search, signed cursors, keyset pages under concurrent inserts,
tenant isolation, the per-tier quota under racing creates, and the attribute reference lists."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from ops.config.settings import Settings, to_asyncpg_url
from tests.integration.test_products import create, product_in, set_status, tenant
from tests.support import assert_problem, bearer, register

Headers = dict[str, str]


async def list_ids(client: httpx.AsyncClient, auth: Headers, **params: Any) -> list[int]:
    response = await client.get("/api/products", params=params, headers=auth)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


# --- filters --------------------------------------------------------------------------------------


async def test_filter_by_status(client: httpx.AsyncClient) -> None:
    auth = await tenant(client)
    draft = await create(client, auth)
    published = await product_in(client, auth, "published")
    sold = await product_in(client, auth, "sold")
    assert await list_ids(client, auth, status="draft") == [draft["id"]]
    assert await list_ids(client, auth, status="published") == [published["id"]]
    assert await list_ids(client, auth, status="sold") == [sold["id"]]
    assert await list_ids(client, auth, status="archived") == []
    assert await list_ids(client, auth) == [sold["id"], published["id"], draft["id"]]
    assert_problem(
        await client.get("/api/products", params={"status": "gone"}, headers=auth), 422, "validation_error"
    )


async def test_filter_by_brand_and_category(client: httpx.AsyncClient) -> None:
    auth = await tenant(client)
    zara_dress = await create(client, auth, brand="zara", category="women_dresses")
    zara_plain = await create(client, auth, brand="zara")
    mango_dress = await create(client, auth, brand="mango", category="women_dresses")
    assert await list_ids(client, auth, brand="zara") == [zara_plain["id"], zara_dress["id"]]
    assert await list_ids(client, auth, category="women_dresses") == [mango_dress["id"], zara_dress["id"]]
    assert await list_ids(client, auth, brand="zara", category="women_dresses") == [zara_dress["id"]]
    assert await list_ids(client, auth, brand="uniqlo") == []


async def test_filter_by_platform_accepts_known_platforms_only(client: httpx.AsyncClient) -> None:
    auth = await tenant(client)
    await product_in(client, auth, "published")
    # Nothing is listed on a marketplace before the publication pipeline exists.
    for platform in ("vinted", "ebay", "etsy"):
        assert await list_ids(client, auth, platform=platform) == []
    response = await client.get("/api/products", params={"platform": "amazon"}, headers=auth)
    assert_problem(response, 422, "validation_error")


async def test_search_is_case_insensitive_over_title_and_sku(client: httpx.AsyncClient) -> None:
    auth = await tenant(client)
    jacket = await create(client, auth, title="Veste en JEAN Levi's", sku="LV-001")
    coat = await create(client, auth, title="Manteau", sku="COAT-jean-7")
    await create(client, auth, title="Robe", sku="DR-1")
    assert await list_ids(client, auth, q="jean") == [coat["id"], jacket["id"]]
    assert await list_ids(client, auth, q="LEVI'S") == [jacket["id"]]
    assert await list_ids(client, auth, q="lv-0") == [jacket["id"]]
    assert await list_ids(client, auth, q="nothing like it") == []
    assert len(await list_ids(client, auth, q="")) == 3


async def test_search_takes_percent_underscore_and_backslash_literally(client: httpx.AsyncClient) -> None:
    auth = await tenant(client)
    percent = await create(client, auth, title="Soldes 50% Off")
    underscore = await create(client, auth, title="snake_case tee")
    backslash = await create(client, auth, title="Back\\slash Hoodie")
    await create(client, auth, title="Soldes 500 pieces")  # would match '50%' if % were a wildcard
    await create(client, auth, title="snakeXcase tee")  # would match '_' as a wildcard
    await create(client, auth, title="Backslash Hoodie")
    assert await list_ids(client, auth, q="50%") == [percent["id"]]
    assert await list_ids(client, auth, q="%") == [percent["id"]]
    assert await list_ids(client, auth, q="e_c") == [underscore["id"]]
    assert await list_ids(client, auth, q="_") == [underscore["id"]]
    assert await list_ids(client, auth, q="K\\S") == [backslash["id"]]
    assert await list_ids(client, auth, q="\\") == [backslash["id"]]


# --- pagination -----------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", ["0", "201", "-1", "ten"])
async def test_limit_outside_1_to_200_is_422(client: httpx.AsyncClient, limit: str) -> None:
    auth = await tenant(client)
    response = await client.get("/api/products", params={"limit": limit}, headers=auth)
    assert_problem(response, 422, "validation_error")


async def test_limit_bounds_are_accepted_and_default_is_50(client: httpx.AsyncClient) -> None:
    auth = await tenant(client)
    await asyncio.gather(*(create(client, auth, title=f"P{index}") for index in range(52)))
    default = (await client.get("/api/products", headers=auth)).json()
    assert len(default["items"]) == 50
    assert default["next_cursor"] is not None
    one = (await client.get("/api/products", params={"limit": 1}, headers=auth)).json()
    assert len(one["items"]) == 1
    everything = (await client.get("/api/products", params={"limit": 200}, headers=auth)).json()
    assert len(everything["items"]) == 52
    assert everything["next_cursor"] is None


async def test_forged_or_tampered_cursors_are_invalid_cursor(client: httpx.AsyncClient) -> None:
    auth = await tenant(client)
    for index in range(3):
        await create(client, auth, title=f"P{index}")
    page = (await client.get("/api/products", params={"limit": 1}, headers=auth)).json()
    cursor = page["next_cursor"]
    payload, _, mac = cursor.partition(".")
    forged = [
        "not-a-cursor",
        "eyJiZWZvcmVfaWQiOjF9",  # base64url of {"before_id":1} without a signature
        f"{payload}.{mac[:-2]}AA",
        f"eyJiZWZvcmVfaWQiOjF9.{mac}",  # our signature on another position
        cursor + "x" * 600,
        "%%%.###",
    ]
    for bad in forged:
        response = await client.get("/api/products", params={"cursor": bad}, headers=auth)
        assert_problem(response, 422, "invalid_cursor")
    assert (await client.get("/api/products", params={"cursor": cursor}, headers=auth)).status_code == 200


async def test_walking_pages_while_products_are_added_has_no_duplicate_or_gap(
    client: httpx.AsyncClient, migrated: Settings
) -> None:
    account = await register(client)
    auth = bearer(account)
    await _put_tenant_on_tier(migrated, account["user"]["tenant_id"], None)  # 290 products: past `free`
    initial: list[int] = []
    for start in range(0, 250, 25):
        batch = await asyncio.gather(
            *(create(client, auth, title=f"Item {n}") for n in range(start, start + 25))
        )
        initial.extend(product["id"] for product in batch)
    assert len(set(initial)) == 250

    pages = 0
    walking = True
    added_while_walking = 0

    async def walk() -> list[int]:
        nonlocal pages, walking
        seen: list[int] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 7}
            if cursor is not None:
                params["cursor"] = cursor
            response = await client.get("/api/products", params=params, headers=auth)
            assert response.status_code == 200, response.text
            body = response.json()
            assert len(body["items"]) <= 7
            seen.extend(item["id"] for item in body["items"])
            pages += 1
            cursor = body["next_cursor"]
            if cursor is None:
                walking = False
                return seen
            await asyncio.sleep(0)

    async def insert_more() -> list[int]:
        nonlocal added_while_walking
        added = []
        for n in range(40):
            added.append((await create(client, auth, title=f"Late {n}"))["id"])
            added_while_walking += walking
        return added

    seen, added = await asyncio.gather(walk(), insert_more())
    assert len(seen) == len(set(seen)), "a product was listed twice"
    assert set(initial) <= set(seen), f"missing: {sorted(set(initial) - set(seen))[:10]}"
    assert set(seen) <= set(initial) | set(added)
    assert seen == sorted(seen, reverse=True)
    assert pages >= 250 // 7
    assert added_while_walking > 10, "the inserts did not overlap the walk"


# --- tenant isolation -----------------------------------------------------------------------------


async def test_another_tenants_product_is_not_found_and_never_listed(client: httpx.AsyncClient) -> None:
    alice, bob = await tenant(client), await tenant(client)
    # Ids are per tenant schema: give Alice an id that Bob does not have himself.
    await create(client, alice, title="Alice's first")
    secret = await create(client, alice, title="Alice's coat", sku="ALICE-1", brand="zara")
    bobs = await create(client, bob, title="Bob's coat")
    path = f"/api/products/{secret['id']}"
    assert_problem(await client.get(path, headers=bob), 404, "not_found")
    assert_problem(await client.patch(path, json={"title": "mine"}, headers=bob), 404, "not_found")
    assert_problem(await set_status(client, bob, secret["id"], "published"), 404, "not_found")
    assert_problem(await client.delete(path, headers=bob), 404, "not_found")
    assert secret["id"] != bobs["id"]
    for params in ({}, {"q": "alice"}, {"brand": "zara"}, {"status": "draft"}, {"q": "coat"}):
        response = await client.get("/api/products", params=params, headers=bob)
        titles = [item["title"] for item in response.json()["items"]]
        assert not [title for title in titles if "Alice" in title], params
    assert await list_ids(client, bob) == [bobs["id"]]
    untouched = (await client.get(path, headers=alice)).json()
    assert untouched["title"] == "Alice's coat"
    assert untouched["version"] == 1


# --- quota ----------------------------------------------------------------------------------------


async def _put_tenant_on_tier(settings: Settings, tenant_id: int, max_products: int | None) -> None:
    tier = f"test_{uuid.uuid4().hex[:8]}"
    dsn = to_asyncpg_url(settings.database_url).replace("postgresql+asyncpg://", "postgresql://", 1)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            "INSERT INTO public.subscription_quotas (tier, max_products, max_platforms, ai_credits_monthly)"
            " VALUES ($1, $2, 1, 0)",
            tier,
            max_products,
        )
        await connection.execute("UPDATE public.tenants SET tier = $1 WHERE id = $2", tier, tenant_id)
    finally:
        await connection.close()


async def test_racing_creates_at_the_quota_limit_cannot_overshoot(
    client: httpx.AsyncClient, migrated: Settings
) -> None:
    account = await register(client)
    auth = bearer(account)
    await _put_tenant_on_tier(migrated, account["user"]["tenant_id"], 3)
    first = await create(client, auth, title="Already here")

    async def attempt(index: int) -> httpx.Response:
        return await client.post(
            "/api/products", json={"title": f"Race {index}", "price": "9.99"}, headers=auth
        )

    responses = await asyncio.gather(*(attempt(index) for index in range(10)))
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201] * 2 + [403] * 8, statuses
    for response in responses:
        if response.status_code == 403:
            assert_problem(response, 403, "quota_exceeded")
    assert len(await list_ids(client, auth)) == 3

    # A deleted product frees its slot.
    assert (await client.delete(f"/api/products/{first['id']}", headers=auth)).status_code == 204
    await create(client, auth, title="Fits again")
    assert_problem(await attempt(99), 403, "quota_exceeded")


async def test_sku_taken_answers_before_quota_exceeded(client: httpx.AsyncClient, migrated: Settings) -> None:
    account = await register(client)
    auth = bearer(account)
    await _put_tenant_on_tier(migrated, account["user"]["tenant_id"], 1)
    await create(client, auth, sku="ONLY-1")
    response = await client.post(
        "/api/products", json={"title": "T", "price": "1", "sku": "ONLY-1"}, headers=auth
    )
    assert_problem(response, 409, "sku_taken")
    response = await client.post(
        "/api/products", json={"title": "T", "price": "1", "sku": "ONLY-2"}, headers=auth
    )
    assert_problem(response, 403, "quota_exceeded")


async def test_unlimited_tier_has_no_product_limit(client: httpx.AsyncClient, migrated: Settings) -> None:
    account = await register(client)
    auth = bearer(account)
    await _put_tenant_on_tier(migrated, account["user"]["tenant_id"], None)
    await asyncio.gather(*(create(client, auth, title=f"P{index}") for index in range(5)))
    assert len(await list_ids(client, auth)) == 5


# --- attributes -----------------------------------------------------------------------------------


async def test_categories_come_whole_with_their_parent(client: httpx.AsyncClient) -> None:
    auth = await tenant(client)
    response = await client.get("/api/attributes/categories", headers=auth)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"items"}
    by_code = {item["code"]: item for item in body["items"]}
    assert len(by_code) > 100
    assert by_code["women"]["parent"] is None
    assert by_code["women_dresses"]["parent"] is not None
    assert by_code["women"]["name_fr"] == "Femmes"


async def test_other_kinds_have_code_and_names(client: httpx.AsyncClient) -> None:
    auth = await tenant(client)
    body = (await client.get("/api/attributes/brands", headers=auth)).json()
    zara = next(item for item in body["items"] if item["code"] == "zara")
    assert set(zara) == {"code", "name_en", "name_fr"}
    colors = (await client.get("/api/attributes/colors", headers=auth)).json()["items"]
    assert "black" in {item["code"] for item in colors}


async def test_unknown_attribute_kind_is_404_and_attributes_need_a_token(client: httpx.AsyncClient) -> None:
    auth = await tenant(client)
    assert_problem(await client.get("/api/attributes/planets", headers=auth), 404, "not_found")
    assert_problem(await client.get("/api/attributes/brands"), 401, "not_authenticated")


# --- images on the product ------------------------------------------------------------------------


async def test_product_images_come_in_display_order_with_signed_urls(
    client: httpx.AsyncClient, migrated: Settings
) -> None:
    account = await register(client)
    auth = bearer(account)
    product = await create(client, auth)
    schema = f"{migrated.tenant_schema_prefix}{account['user']['tenant_id']}"
    dsn = to_asyncpg_url(migrated.database_url).replace("postgresql+asyncpg://", "postgresql://", 1)
    connection = await asyncpg.connect(dsn)
    try:
        # Written directly: the upload endpoint is tested with the images router.
        for key, order in (("b.jpg", 2), ("a.jpg", 1), ("c.jpg", 2)):
            await connection.execute(
                f'INSERT INTO "{schema}".product_images'
                " (product_id, storage_key, display_order, width, height, content_sha256)"
                " VALUES ($1, $2, $3, 640, 480, $4)",
                product["id"],
                f"{schema}/{key}",
                order,
                "0" * 64,
            )
    finally:
        await connection.close()
    response = await client.get(f"/api/products/{product['id']}", headers=auth)
    images = response.json()["images"]
    assert [image["url"].split("?")[0].rsplit("/", 1)[-1] for image in images] == ["a.jpg", "b.jpg", "c.jpg"]
    assert [image["display_order"] for image in images] == [1, 2, 2]
    first = images[0]
    assert set(first) == {"id", "url", "display_order", "width", "height", "created_at"}
    assert first["url"].startswith(migrated.public_base_url.rstrip("/") + "/media/")
    assert "signature=" in first["url"]
    assert "expires=" in first["url"]
    assert (first["width"], first["height"]) == (640, 480)
    # A list item carries the product fields, not its images.
    listed = (await client.get("/api/products", headers=auth)).json()["items"][0]
    assert "images" not in listed
