"""Products over HTTP against real PostgreSQL: create, read, update, delete, lifecycle, concurrency."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support import assert_problem, bearer, register

Headers = dict[str, str]


async def tenant(client: httpx.AsyncClient) -> Headers:
    return bearer(await register(client))


async def create(client: httpx.AsyncClient, auth: Headers, **fields: Any) -> dict[str, Any]:
    response = await client.post(
        "/api/products", json={"title": "Veste", "price": "19.90", **fields}, headers=auth
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def set_status(
    client: httpx.AsyncClient, auth: Headers, product_id: int, status: str
) -> httpx.Response:
    return await client.post(f"/api/products/{product_id}/status", json={"status": status}, headers=auth)


async def product_in(client: httpx.AsyncClient, auth: Headers, status: str, **fields: Any) -> dict[str, Any]:
    """Create a product and walk it to `status` through the allowed transitions."""
    product = await create(client, auth, **fields)
    path = {
        "draft": [],
        "published": ["published"],
        "sold": ["published", "sold"],
        "archived": ["published", "archived"],
    }
    for step in path[status]:
        response = await set_status(client, auth, product["id"], step)
        assert response.status_code == 200, response.text
        product = response.json()
    return product


# --- creation -------------------------------------------------------------------------------------


async def test_create_with_only_title_and_price_gives_a_draft_with_defaults(
    client: httpx.AsyncClient,
) -> None:
    auth = await tenant(client)
    response = await client.post("/api/products", json={"title": "Levi's 501", "price": 19.9}, headers=auth)
    assert response.status_code == 201, response.text
    product = response.json()
    assert product["status"] == "draft"
    assert product["price"] == "19.90"
    assert product["currency"] == "EUR"
    assert product["stock_quantity"] == 1
    assert product["version"] == 1
    assert product["sku"].startswith("STF-")
    assert product["oversold"] is False
    assert product["oversold_orders"] == []
    assert product["needs_review"] == {}
    assert product["images"] == []
    assert product["listings"] == []
    assert product["published_at"] is None
    assert product["sold_at"] is None
    assert product["created_at"].endswith(("Z", "+00:00"))
    assert response.headers["etag"] == '"1"'
    assert response.headers["location"] == f"/api/products/{product['id']}"


async def test_create_with_every_field_round_trips(client: httpx.AsyncClient) -> None:
    auth = await tenant(client)
    fields = {
        "title": "Jean vintage",
        "price": "45.00",
        "cost_price": "12.50",
        "currency": "usd",
        "stock_quantity": 3,
        "sku": "JEAN-001",
        "description": "Très bon état",
        "category": "women_dresses",
        "brand": "zara",
        "size": "m",
        "label_size": "s",
        "color": "black",
        "material": "cotton",
        "fit": "slim",
        "gender": "women",
        "season": "summer",
        "condition": "very_good",
        "decade": "1970s",
        "closure": "zip",
        "origin": "france",
        "pattern": "plain",
        "style": "casual",
        "condition_sup": "tiny mark on the sleeve",
        "model": "501",
        "dim1": 40.5,
        "dim6": "12",
    }
    product = await create(client, auth, **fields)
    fetched = (await client.get(f"/api/products/{product['id']}", headers=auth)).json()
    assert fetched["currency"] == "USD"
    assert fetched["cost_price"] == "12.50"
    assert fetched["price"] == "45.00"
    assert fetched["dim1"] == 40.5
    assert fetched["dim6"] == 12
    for name in (
        "sku",
        "description",
        "category",
        "brand",
        "size",
        "label_size",
        "color",
        "material",
        "fit",
        "gender",
        "season",
        "condition",
        "decade",
        "closure",
        "origin",
        "pattern",
        "style",
        "condition_sup",
        "model",
        "stock_quantity",
    ):
        assert fetched[name] == fields[name], name


async def test_unknown_attribute_code_is_named(client: httpx.AsyncClient) -> None:
    auth = await tenant(client)
    response = await client.post(
        "/api/products", json={"title": "Veste", "price": "10", "brand": "no_such_brand"}, headers=auth
    )
    body = assert_problem(response, 422, "unknown_attribute")
    assert body["errors"][0]["loc"] == ["body", "brand"]
    assert "brand" in body["detail"]
    # A code of another kind is not good enough either: 'black' is a colour, not a size.
    response = await client.post(
        "/api/products",
        json={"title": "Veste", "price": "10", "color": "black", "size": "black"},
        headers=auth,
    )
    body = assert_problem(response, 422, "unknown_attribute")
    assert [error["loc"] for error in body["errors"]] == [["body", "size"]]
    listed = (await client.get("/api/products", headers=auth)).json()
    assert listed["items"] == []


async def test_sku_taken_is_409_and_a_deleted_product_frees_its_sku(client: httpx.AsyncClient) -> None:
    auth = await tenant(client)
    first = await create(client, auth, sku="ABC-1")
    response = await client.post(
        "/api/products", json={"title": "Other", "price": "5", "sku": "ABC-1"}, headers=auth
    )
    assert_problem(response, 409, "sku_taken")
    second = await create(client, auth, sku="ABC-2")
    patch = await client.patch(f"/api/products/{second['id']}", json={"sku": "ABC-1"}, headers=auth)
    assert_problem(patch, 409, "sku_taken")
    assert (await client.delete(f"/api/products/{first['id']}", headers=auth)).status_code == 204
    again = await create(client, auth, sku="ABC-1")
    assert again["sku"] == "ABC-1"


async def test_the_same_sku_in_two_tenants_is_fine(client: httpx.AsyncClient) -> None:
    a, b = await tenant(client), await tenant(client)
    await create(client, a, sku="SHARED-1")
    await create(client, b, sku="SHARED-1")


BAD_BODIES: list[tuple[str, dict[str, Any], str]] = [
    ("price zero", {"title": "T", "price": "0"}, "price"),
    ("price zero number", {"title": "T", "price": 0}, "price"),
    ("price negative", {"title": "T", "price": "-5.00"}, "price"),
    ("price garbage", {"title": "T", "price": "twelve"}, "price"),
    ("price fraction of a cent", {"title": "T", "price": "1.999"}, "price"),
    ("price missing", {"title": "T"}, "price"),
    ("price boolean", {"title": "T", "price": True}, "price"),
    ("price too large", {"title": "T", "price": "1e20"}, "price"),
    ("price NaN", {"title": "T", "price": "NaN"}, "price"),
    ("title empty", {"title": "", "price": "1"}, "title"),
    ("title blank", {"title": "   ", "price": "1"}, "title"),
    ("title 101 chars", {"title": "x" * 101, "price": "1"}, "title"),
    ("title control char", {"title": "bad\x07title", "price": "1"}, "title"),
    ("title missing", {"price": "1"}, "title"),
    ("title a number", {"title": 12, "price": "1"}, "title"),
    ("stock -1", {"title": "T", "price": "1", "stock_quantity": -1}, "stock_quantity"),
    ("stock not a number", {"title": "T", "price": "1", "stock_quantity": "many"}, "stock_quantity"),
    ("unknown field", {"title": "T", "price": "1", "colour": "black"}, "colour"),
    ("read-only field", {"title": "T", "price": "1", "status": "published"}, "status"),
    ("currency", {"title": "T", "price": "1", "currency": "EURO"}, "currency"),
    ("sku with spaces", {"title": "T", "price": "1", "sku": "has space"}, "sku"),
    ("negative dimension", {"title": "T", "price": "1", "dim1": -3}, "dim1"),
]


@pytest.mark.parametrize(("case", "body", "field"), BAD_BODIES, ids=[case for case, _, _ in BAD_BODIES])
async def test_bad_product_bodies_are_422(
    client: httpx.AsyncClient, case: str, body: dict[str, Any], field: str
) -> None:
    auth = await tenant(client)
    response = await client.post("/api/products", json=body, headers=auth)
    problem = assert_problem(response, 422, "validation_error")
    assert ["body", field] in [error["loc"][:2] for error in problem["errors"]], problem
    assert (await client.get("/api/products", headers=auth)).json()["items"] == []


async def test_title_of_exactly_100_chars_with_tab_is_fine(client: httpx.AsyncClient) -> None:
    auth = await tenant(client)
    product = await create(client, auth, title="a\tb" + "x" * 97)
    assert len(product["title"]) == 100


async def test_non_json_body_and_wrong_content_type_are_422(client: httpx.AsyncClient) -> None:
    auth = await tenant(client)
    broken = await client.post(
        "/api/products",
        content=b'{"title": "T", "price": ',
        headers={**auth, "Content-Type": "application/json"},
    )
    assert_problem(broken, 422, "validation_error")
    text = await client.post(
        "/api/products",
        content=b'{"title": "T", "price": "1"}',
        headers={**auth, "Content-Type": "text/plain"},
    )
    assert_problem(text, 422, "validation_error")
    form = await client.post("/api/products", data={"title": "T", "price": "1"}, headers=auth)
    assert_problem(form, 422, "validation_error")
    array = await client.post("/api/products", json=[{"title": "T", "price": "1"}], headers=auth)
    assert_problem(array, 422, "validation_error")
    assert (await client.get("/api/products", headers=auth)).json()["items"] == []


async def test_products_need_a_token(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/api/products"), 401, "not_authenticated")
    assert_problem(
        await client.post("/api/products", json={"title": "T", "price": "1"}), 401, "not_authenticated"
    )


async def test_idempotent_create_replays_the_first_answer(client: httpx.AsyncClient) -> None:
    auth = await tenant(client)
    headers = {**auth, "Idempotency-Key": "create-jacket-1"}
    body = {"title": "Jacket", "price": "30"}
    first = await client.post("/api/products", json=body, headers=headers)
    again = await client.post("/api/products", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    other = await client.post("/api/products", json={"title": "Other", "price": "30"}, headers=headers)
    assert_problem(other, 422, "idempotency_key_reused")
    listed = (await client.get("/api/products", headers=auth)).json()["items"]
    assert [item["id"] for item in listed] == [first.json()["id"]]
