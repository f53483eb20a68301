"""Marketplace connections: secrets in, never out; the tier's max_platforms; Vinted account rules."""

from __future__ import annotations

import httpx
from sqlalchemy import text

from ops.config.settings import Settings
from persistence.database import connect_database
from tests.pipeline_support import EBAY_CONNECTION, new_sku
from tests.support import assert_problem, bearer, register

ETSY_CONNECTION = {
    "shop_id": 123456,
    "access_token": "etsy-access-secret",
    "refresh_token": "etsy-refresh-secret",
    "shipping_profile_id": 987,
}


async def test_connections_never_show_their_tokens(client: httpx.AsyncClient, migrated: Settings) -> None:
    body = await register(client)
    headers = bearer(body)
    ebay = await client.put("/api/integrations/ebay", json=EBAY_CONNECTION, headers=headers)
    etsy = await client.put("/api/integrations/etsy", json=ETSY_CONNECTION, headers=headers)
    assert ebay.status_code == etsy.status_code == 200
    listed = await client.get("/api/integrations", headers=headers)
    assert listed.status_code == 200
    state = listed.json()
    assert state["ebay"]["connected"] is True and state["ebay"]["marketplace_id"] == "EBAY_FR"
    assert state["etsy"]["connected"] is True and state["etsy"]["shop_id"] == "123456"
    assert state["vinted"] == {"connected": False, "accounts": 0}
    for answer in (ebay, etsy, listed):
        for secret in ("sandbox-access", "sandbox-refresh", "etsy-access-secret", "etsy-refresh-secret"):
            assert secret not in answer.text
    # At rest the tokens are sealed, not stored in clear.
    database = connect_database(migrated.async_database_url, pool_size=1)
    try:
        async with database.engine.connect() as connection:
            sealed = await connection.scalar(
                text(
                    f'SELECT encrypted_tokens FROM "user_{body["user"]["tenant_id"]}".marketplace_credentials'
                    " WHERE platform = 'etsy'"
                )
            )
    finally:
        await database.dispose()
    assert sealed is not None and b"etsy-access-secret" not in bytes(sealed)
    assert (await client.delete("/api/integrations/etsy", headers=headers)).status_code == 204
    assert (await client.get("/api/integrations", headers=headers)).json()["etsy"] == {"connected": False}
    assert_problem(await client.delete("/api/integrations/amazon", headers=headers), 404, "not_found")


async def test_max_platforms_of_the_free_tier(client: httpx.AsyncClient) -> None:
    headers = bearer(await register(client))
    assert (
        await client.put("/api/integrations/ebay", json=EBAY_CONNECTION, headers=headers)
    ).status_code == 200
    assert (
        await client.put("/api/integrations/etsy", json=ETSY_CONNECTION, headers=headers)
    ).status_code == 200
    # Reconnecting a connected platform is not one more platform.
    assert (
        await client.put("/api/integrations/ebay", json=EBAY_CONNECTION, headers=headers)
    ).status_code == 200
    third = await client.post(
        "/api/integrations/vinted/accounts", json={"vinted_user_id": 1, "username": "x"}, headers=headers
    )
    assert_problem(third, 403, "quota_exceeded")
    assert (await client.get("/api/integrations", headers=headers)).json()["vinted"]["accounts"] == 0


async def test_vinted_account_rules(client: httpx.AsyncClient) -> None:
    headers = bearer(await register(client))
    first = await client.post(
        "/api/integrations/vinted/accounts",
        json={"vinted_user_id": "555", "username": "alice"},
        headers=headers,
    )
    assert first.status_code == 201, first.text
    assert set(first.json()) >= {"id", "vinted_user_id", "username", "created_at"}
    duplicate = await client.post(
        "/api/integrations/vinted/accounts",
        json={"vinted_user_id": 555, "username": "alice"},
        headers=headers,
    )
    assert duplicate.status_code == 409
    second = await client.post(
        "/api/integrations/vinted/accounts", json={"vinted_user_id": 556, "username": "bob"}, headers=headers
    )
    assert second.status_code == 201
    accounts = (await client.get("/api/integrations/vinted/accounts", headers=headers)).json()["items"]
    assert [account["username"] for account in accounts] == ["alice", "bob"]
    product = await client.post(
        "/api/products", json={"title": "Jupe", "price": "9.00", "sku": new_sku()}, headers=headers
    )
    url = f"/api/products/{product.json()['id']}/publications"
    assert_problem(
        await client.post(url, json={"platforms": ["vinted"]}, headers=headers), 422, "account_required"
    )
    assert_problem(
        await client.post(url, json={"platforms": ["vinted"], "vinted_account_id": 99999}, headers=headers),
        422,
        "unknown_account",
    )
    other = bearer(await register(client))
    foreign = await client.post(
        "/api/integrations/vinted/accounts", json={"vinted_user_id": 777, "username": "eve"}, headers=other
    )
    assert_problem(
        await client.post(
            url,
            json={"platforms": ["vinted"], "vinted_account_id": foreign.json()["id"] + 1000},
            headers=headers,
        ),
        422,
        "unknown_account",
    )
    chosen = await client.post(
        url, json={"platforms": ["vinted"], "vinted_account_id": second.json()["id"]}, headers=headers
    )
    assert chosen.status_code == 202, chosen.text
    limit = await client.get(
        f"/api/integrations/vinted/accounts/{second.json()['id']}/rate-limit", headers=headers
    )
    assert limit.json() == {
        "limit": 40,
        "window_seconds": 7200,
        "used": 0,
        "remaining": 40,
        "resets_at": None,
    }
    assert_problem(
        await client.get("/api/integrations/vinted/accounts/99999/rate-limit", headers=headers),
        404,
        "not_found",
    )
