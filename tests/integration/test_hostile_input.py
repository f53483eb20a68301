"""Hostile and sloppy input over HTTP: 422 `validation_error` or 404, never 400 or 500, never a write."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.support import assert_problem, bearer, register

JSON = {"Content-Type": "application/json"}


async def _product(client: httpx.AsyncClient, tokens: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(
        "/api/products", json={"title": "Veste", "price": "20.00"}, headers=bearer(tokens)
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'{"email": "a@example.com", "password": "abc', id="truncated"),
        pytest.param(b'{"email": "a@example.com", "password": "\xff\xfe"}', id="invalid-utf8"),
        pytest.param(b"[" * 5000 + b"]" * 5000, id="nested-5000-deep"),
        pytest.param(b'{"a":' * 3000 + b"1" + b"}" * 3000, id="objects-3000-deep"),
    ],
)
async def test_a_body_that_is_not_json_is_a_validation_error(client: httpx.AsyncClient, raw: bytes) -> None:
    response = await client.post("/api/auth/login", content=raw, headers=JSON)
    body = assert_problem(response, 422, "validation_error")
    assert body["errors"][0]["loc"][0] == "body"


@pytest.mark.parametrize(
    "escaped", [pytest.param(r"\ud800", id="lone-surrogate"), pytest.param(r"\u0000", id="nul")]
)
async def test_unstorable_text_in_a_product_is_refused_and_nothing_is_written(
    client: httpx.AsyncClient, escaped: str
) -> None:
    tokens = await register(client)
    raw = '{"title": "Veste ' + escaped + '", "price": "20.00"}'
    response = await client.post("/api/products", content=raw.encode(), headers={**JSON, **bearer(tokens)})
    body = assert_problem(response, 422, "validation_error")
    assert body["errors"][0]["loc"] == ["body", "title"]
    listed = await client.get("/api/products", headers=bearer(tokens))
    assert listed.json()["items"] == []


async def test_nul_in_a_query_is_a_validation_error(client: httpx.AsyncClient) -> None:
    tokens = await register(client)
    response = await client.get("/api/products?q=a%00b", headers=bearer(tokens))
    body = assert_problem(response, 422, "validation_error")
    assert body["errors"][0]["loc"] == ["query", "q"]


async def test_nul_in_a_path_is_not_a_server_error(client: httpx.AsyncClient) -> None:
    tokens = await register(client)
    response = await client.get("/api/products/1%00", headers=bearer(tokens))
    assert response.status_code in {404, 422}, response.text


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/auth/login", "email"),
        ("/api/auth/register", "full_name"),
        ("/api/integrations/vinted/accounts", "username"),
        ("/api/integrations/ebay", "fulfillment_policy_id"),
    ],
)
async def test_nul_in_any_json_string_is_a_validation_error(
    client: httpx.AsyncClient, path: str, field: str
) -> None:
    tokens = await register(client)
    bodies: dict[str, dict[str, Any]] = {
        "/api/auth/login": {"email": "a@example.com", "password": "whatever1"},
        "/api/auth/register": {"email": "n@example.com", "password": "whatever1", "full_name": "x"},
        "/api/integrations/vinted/accounts": {"vinted_user_id": "12", "username": "x"},
        "/api/integrations/ebay": {
            "access_token": "a",
            "refresh_token": "r",
            "marketplace_id": "EBAY_FR",
            "fulfillment_policy_id": "f",
            "payment_policy_id": "p",
            "return_policy_id": "r",
            "merchant_location_key": "m",
        },
    }
    payload = {**bodies[path], field: "bad\u0000value"}
    method = "PUT" if path.endswith("/ebay") else "POST"
    response = await client.request(
        method, path, content=json.dumps(payload).encode(), headers={**JSON, **bearer(tokens)}
    )
    body = assert_problem(response, 422, "validation_error")
    assert body["errors"][0]["loc"] == ["body", field]


async def test_ids_past_their_column_range_are_not_server_errors(client: httpx.AsyncClient) -> None:
    tokens = await register(client)
    product = await _product(client, tokens)
    headers = bearer(tokens)
    assert_problem(
        await client.get("/api/integrations/vinted/accounts/2147483648/rate-limit", headers=headers),
        404,
        "not_found",
    )
    assert_problem(await client.get("/api/products/99999999999999999999", headers=headers), 404, "not_found")
    body = assert_problem(
        await client.get("/api/jobs?product_id=99999999999", headers=headers), 422, "validation_error"
    )
    assert body["errors"][0]["loc"] == ["query", "product_id"]
    response = await client.post(
        f"/api/products/{product['id']}/publications",
        json={"platforms": ["vinted"], "vinted_account_id": 2147483648},
        headers=headers,
    )
    body = assert_problem(response, 422, "validation_error")
    assert body["errors"][0]["loc"] == ["body", "vinted_account_id"]
    huge_member = await client.post(
        "/api/integrations/vinted/accounts",
        json={"vinted_user_id": 10**40, "username": "x"},
        headers=headers,
    )
    assert_problem(huge_member, 422, "validation_error")


async def test_a_body_of_many_unknown_keys_gets_a_short_answer(client: httpx.AsyncClient) -> None:
    keys = {f"k{index}": index for index in range(60_000)}
    response = await client.post("/api/auth/register", json=keys)
    body = assert_problem(response, 422, "validation_error")
    assert len(response.content) < 10_000
    assert len(body["errors"]) <= 20


async def test_the_error_list_is_capped(client: httpx.AsyncClient) -> None:
    tokens = await register(client)
    payload = {f"unknown_{index}": 1 for index in range(200)} | {"title": "", "price": "x"}
    response = await client.post("/api/products", json=payload, headers=bearer(tokens))
    body = assert_problem(response, 422, "validation_error")
    assert len(body["errors"]) == 20
