"""The status endpoint walks the lifecycle table; soft delete; optimistic concurrency on `version`."""

from __future__ import annotations

import itertools
from typing import Any

import httpx
import pytest

from tests.integration.test_products import create, product_in, set_status, tenant
from tests.support import assert_problem

STATUSES = ["draft", "published", "sold", "archived"]
ALLOWED = {("draft", "published"), ("published", "sold"), ("published", "archived"), ("sold", "archived")}
FORBIDDEN = [pair for pair in itertools.product(STATUSES, repeat=2) if pair not in ALLOWED]


@pytest.mark.parametrize(("source", "target"), sorted(ALLOWED))
async def test_allowed_transition(client: httpx.AsyncClient, source: str, target: str) -> None:
    auth = await tenant(client)
    product = await product_in(client, auth, source)
    response = await set_status(client, auth, product["id"], target)
    assert response.status_code == 200, response.text
    moved = response.json()
    assert moved["status"] == target
    assert moved["version"] == product["version"] + 1
    assert response.headers["etag"] == f'"{moved["version"]}"'
    fetched = (await client.get(f"/api/products/{product['id']}", headers=auth)).json()
    assert fetched["status"] == target


@pytest.mark.parametrize(("source", "target"), FORBIDDEN)
async def test_forbidden_transition_is_409_and_changes_nothing(
    client: httpx.AsyncClient, source: str, target: str
) -> None:
    auth = await tenant(client)
    product = await product_in(client, auth, source)
    response = await set_status(client, auth, product["id"], target)
    assert_problem(response, 409, "invalid_transition")
    fetched = (await client.get(f"/api/products/{product['id']}", headers=auth)).json()
    assert fetched["status"] == source
    assert fetched["version"] == product["version"]


async def test_publishing_sets_published_at_and_selling_sets_sold_at(client: httpx.AsyncClient) -> None:
    auth = await tenant(client)
    draft = await create(client, auth)
    published = (await set_status(client, auth, draft["id"], "published")).json()
    assert published["published_at"] is not None
    assert published["sold_at"] is None
    sold = (await set_status(client, auth, draft["id"], "sold")).json()
    assert sold["sold_at"] is not None
    assert sold["published_at"] == published["published_at"]
    assert sold["sold_at"] >= published["published_at"]
    archived = (await set_status(client, auth, draft["id"], "archived")).json()
    assert archived["sold_at"] == sold["sold_at"]


async def test_publishing_with_no_stock_is_out_of_stock(client: httpx.AsyncClient) -> None:
    auth = await tenant(client)
    product = await create(client, auth, stock_quantity=0)
    assert_problem(await set_status(client, auth, product["id"], "published"), 409, "out_of_stock")
    fetched = (await client.get(f"/api/products/{product['id']}", headers=auth)).json()
    assert fetched["status"] == "draft"
    assert fetched["published_at"] is None
    # Once restocked it can be published.
    restock = await client.patch(f"/api/products/{product['id']}", json={"stock_quantity": 2}, headers=auth)
    assert restock.status_code == 200, restock.text
    assert (await set_status(client, auth, product["id"], "published")).status_code == 200


async def test_invalid_transition_wins_over_out_of_stock(client: httpx.AsyncClient) -> None:
    auth = await tenant(client)
    product = await product_in(client, auth, "sold")
    emptied = await client.patch(f"/api/products/{product['id']}", json={"stock_quantity": 0}, headers=auth)
    assert emptied.status_code == 200, emptied.text
    assert_problem(await set_status(client, auth, product["id"], "published"), 409, "invalid_transition")


@pytest.mark.parametrize("body", [{"status": "gone"}, {}, {"status": "sold", "extra": 1}, {"status": None}])
async def test_bad_status_bodies_are_422(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    auth = await tenant(client)
    product = await create(client, auth)
    response = await client.post(f"/api/products/{product['id']}/status", json=body, headers=auth)
    assert_problem(response, 422, "validation_error")


# --- soft delete ----------------------------------------------------------------------------------


async def test_a_deleted_product_is_gone_everywhere(client: httpx.AsyncClient) -> None:
    auth = await tenant(client)
    kept = await create(client, auth, title="Kept")
    gone = await product_in(client, auth, "published", title="Gone")
    path = f"/api/products/{gone['id']}"
    assert (await client.delete(path, headers=auth)).status_code == 204

    assert_problem(await client.get(path, headers=auth), 404, "not_found")
    assert_problem(await client.patch(path, json={"title": "Back"}, headers=auth), 404, "not_found")
    assert_problem(await set_status(client, auth, gone["id"], "sold"), 404, "not_found")
    assert_problem(await client.delete(path, headers=auth), 404, "not_found")
    listed = (await client.get("/api/products", headers=auth)).json()["items"]
    assert [item["id"] for item in listed] == [kept["id"]]
    searched = (await client.get("/api/products", params={"q": "Gone"}, headers=auth)).json()["items"]
    assert searched == []
    by_status = (await client.get("/api/products", params={"status": "published"}, headers=auth)).json()
    assert by_status["items"] == []


async def test_malformed_or_unknown_ids_are_404(client: httpx.AsyncClient) -> None:
    auth = await tenant(client)
    for raw in ["abc", "0", "-1", "1.5", "99999999999999999999", "2147483648", "999999"]:
        assert_problem(await client.get(f"/api/products/{raw}", headers=auth), 404, "not_found")
        assert_problem(await client.delete(f"/api/products/{raw}", headers=auth), 404, "not_found")
        assert_problem(await set_status(client, auth, raw, "published"), 404, "not_found")  # type: ignore[arg-type]


# --- updates and versions -------------------------------------------------------------------------


async def test_patch_changes_only_the_fields_sent_and_null_clears(client: httpx.AsyncClient) -> None:
    auth = await tenant(client)
    product = await create(client, auth, description="first", brand="zara", color="black", cost_price="3.00")
    response = await client.patch(
        f"/api/products/{product['id']}",
        json={"title": "Renamed", "brand": None, "price": "25.5"},
        headers=auth,
    )
    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["title"] == "Renamed"
    assert updated["price"] == "25.50"
    assert updated["brand"] is None
    assert updated["color"] == "black"
    assert updated["description"] == "first"
    assert updated["cost_price"] == "3.00"
    assert updated["version"] == product["version"] + 1
    assert response.headers["etag"] == f'"{updated["version"]}"'
    assert updated["updated_at"] >= product["updated_at"]


async def test_patch_that_changes_nothing_keeps_the_version(client: httpx.AsyncClient) -> None:
    auth = await tenant(client)
    product = await create(client, auth, title="Same")
    for body in ({}, {"title": "Same"}):
        response = await client.patch(f"/api/products/{product['id']}", json=body, headers=auth)
        assert response.status_code == 200, response.text
        assert response.json()["version"] == product["version"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"title": None}, "title"),
        ({"price": None}, "price"),
        ({"sku": None}, "sku"),
        ({"stock_quantity": -1}, "stock_quantity"),
        ({"status": "published"}, "status"),
        ({"version": 7}, "version"),
        ({"title": "x" * 101}, "title"),
        ({"price": "0"}, "price"),
    ],
)
async def test_bad_patches_are_422_and_change_nothing(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    auth = await tenant(client)
    product = await create(client, auth)
    response = await client.patch(f"/api/products/{product['id']}", json=body, headers=auth)
    problem = assert_problem(response, 422, "validation_error")
    assert ["body", field] in [error["loc"][:2] for error in problem["errors"]]
    fetched = (await client.get(f"/api/products/{product['id']}", headers=auth)).json()
    assert fetched["version"] == product["version"]
    assert fetched["status"] == "draft"


async def test_patch_with_unknown_attribute_is_named(client: httpx.AsyncClient) -> None:
    auth = await tenant(client)
    product = await create(client, auth)
    response = await client.patch(
        f"/api/products/{product['id']}", json={"category": "spaceships"}, headers=auth
    )
    body = assert_problem(response, 422, "unknown_attribute")
    assert body["errors"][0]["loc"] == ["body", "category"]


async def test_archived_products_cannot_be_patched(client: httpx.AsyncClient) -> None:
    auth = await tenant(client)
    product = await product_in(client, auth, "archived")
    response = await client.patch(f"/api/products/{product['id']}", json={"title": "New"}, headers=auth)
    assert_problem(response, 409, "invalid_state")
    # invalid_state answers before a stale If-Match.
    stale = await client.patch(
        f"/api/products/{product['id']}", json={"title": "New"}, headers={**auth, "If-Match": '"1"'}
    )
    assert_problem(stale, 409, "invalid_state")


async def test_sold_products_can_still_be_patched(client: httpx.AsyncClient) -> None:
    auth = await tenant(client)
    product = await product_in(client, auth, "sold")
    response = await client.patch(
        f"/api/products/{product['id']}", json={"description": "sold to Ann"}, headers=auth
    )
    assert response.status_code == 200, response.text


async def test_get_returns_the_version_as_etag(client: httpx.AsyncClient) -> None:
    auth = await tenant(client)
    product = await create(client, auth)
    response = await client.get(f"/api/products/{product['id']}", headers=auth)
    assert response.headers["etag"] == '"1"'
    await client.patch(f"/api/products/{product['id']}", json={"title": "v2"}, headers=auth)
    response = await client.get(f"/api/products/{product['id']}", headers=auth)
    assert response.headers["etag"] == '"2"'
    assert response.json()["version"] == 2


@pytest.mark.parametrize("if_match", ['"1"', 'W/"1"', "*", None, '"7", "1"'])
async def test_if_match_that_matches_or_is_absent_passes(
    client: httpx.AsyncClient, if_match: str | None
) -> None:
    auth = await tenant(client)
    product = await create(client, auth)
    headers = auth if if_match is None else {**auth, "If-Match": if_match}
    response = await client.patch(
        f"/api/products/{product['id']}", json={"title": "Changed"}, headers=headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["version"] == 2


@pytest.mark.parametrize("if_match", ['"2"', 'W/"0"', "1", '"one"', "", 'W/ "1"', '"1'])
async def test_if_match_mismatch_or_malformed_is_412(client: httpx.AsyncClient, if_match: str) -> None:
    auth = await tenant(client)
    product = await create(client, auth, title="Original")
    response = await client.patch(
        f"/api/products/{product['id']}",
        json={"title": "Lost update"},
        headers={**auth, "If-Match": if_match},
    )
    assert_problem(response, 412, "version_conflict")
    fetched = (await client.get(f"/api/products/{product['id']}", headers=auth)).json()
    assert fetched["title"] == "Original"
    assert fetched["version"] == 1


async def test_two_editors_with_the_same_etag_one_wins(client: httpx.AsyncClient) -> None:
    auth = await tenant(client)
    product = await create(client, auth)
    headers = {**auth, "If-Match": '"1"'}
    first = await client.patch(f"/api/products/{product['id']}", json={"title": "Alice"}, headers=headers)
    second = await client.patch(f"/api/products/{product['id']}", json={"title": "Bob"}, headers=headers)
    assert first.status_code == 200
    assert_problem(second, 412, "version_conflict")
    assert (await client.get(f"/api/products/{product['id']}", headers=auth)).json()["title"] == "Alice"


async def test_status_and_delete_honour_if_match(client: httpx.AsyncClient) -> None:
    auth = await tenant(client)
    product = await create(client, auth)
    stale = {**auth, "If-Match": '"9"'}
    response = await client.post(
        f"/api/products/{product['id']}/status", json={"status": "published"}, headers=stale
    )
    assert_problem(response, 412, "version_conflict")
    assert_problem(
        await client.delete(f"/api/products/{product['id']}", headers=stale), 412, "version_conflict"
    )
    fresh = {**auth, "If-Match": '"1"'}
    assert (await client.delete(f"/api/products/{product['id']}", headers=fresh)).status_code == 204
