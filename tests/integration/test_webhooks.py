"""Marketplace webhooks: signed sales reach the one sale-recording function, anything else changes nothing.

The gateway is the real app; eBay's public key comes from the sandbox (its own key pair), and notifications
are signed as the sandbox signs them. Listings go live through the real pipeline with an in-memory
marketplace whose listing ids are unique across tenants, as a marketplace's are.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from gateway.ebay_keys import EbayKeyring
from gateway.webhook_signatures import ebay_challenge_response
from ops.config.settings import Settings
from ops.tools.sandbox.app import create_sandbox_app
from ops.tools.sandbox.sales import WebhookConfig
from ops.tools.sandbox.webhook_signing import sign_ebay, sign_etsy
from persistence.database import connect_database
from tests.integration.test_pipeline import FakeMarketplace
from tests.integration.test_sales import ETSY_CONNECTION
from tests.pipeline_support import EBAY_CONNECTION, new_sku, running_pipeline, wait_for_job
from tests.support import assert_problem, bearer, register
from workers.platforms.base import JobInput, ListingOutcome


class UniqueIdMarket(FakeMarketplace):
    """Listing ids unique across tenants and tests, as a real marketplace's are."""

    async def publish(self, job: JobInput) -> ListingOutcome:
        assert job.product is not None
        listing_id = self.listings.setdefault(job.product.sku or "", str(uuid.uuid4().int % 10**12))
        return ListingOutcome(external_id=listing_id, url=f"https://market.test/{listing_id}")


@pytest.fixture
async def sandbox(app: FastAPI) -> AsyncIterator[FastAPI]:
    """The sandbox app; the gateway reads eBay's notification key from it."""
    marketplace = create_sandbox_app()
    app.state.ebay_keyring = EbayKeyring(
        app.state.services.settings, transport=httpx.ASGITransport(marketplace)
    )
    try:
        yield marketplace
    finally:
        del app.state.ebay_keyring


@pytest.fixture
async def pipelines(migrated: Settings) -> AsyncIterator[None]:
    market = UniqueIdMarket()
    async with running_pipeline(migrated, "ebay", market), running_pipeline(migrated, "etsy", market):
        yield


async def _tenant(client: httpx.AsyncClient, *, shop_id: int) -> dict[str, str]:
    headers = bearer(await register(client))
    ebay = {**EBAY_CONNECTION, "username": f"seller-{uuid.uuid4().hex[:8]}"}
    for platform, connection in (("ebay", ebay), ("etsy", {**ETSY_CONNECTION, "shop_id": shop_id})):
        response = await client.put(f"/api/integrations/{platform}", json=connection, headers=headers)
        assert response.status_code == 200, response.text
    return headers


async def _live_product(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    body = {"title": "Barbour waxed jacket", "price": "120.00", "sku": new_sku()}
    product = (await client.post("/api/products", json=body, headers=headers)).json()
    accepted = await client.post(
        f"/api/products/{product['id']}/publications", json={"platforms": ["ebay", "etsy"]}, headers=headers
    )
    for job in accepted.json()["jobs"]:
        assert (await wait_for_job(client, headers, job["id"]))["status"] == "succeeded"
    return dict((await client.get(f"/api/products/{product['id']}", headers=headers)).json())


def _listing(product: dict[str, Any], platform: str) -> str:
    return next(str(row["external_id"]) for row in product["listings"] if row["platform"] == platform)


def _ebay_order(listing_id: str, order_id: str) -> bytes:
    data = {
        "orderId": order_id,
        "creationDate": "2026-12-02T10:00:00.000Z",
        "lineItems": [{"lineItemId": "1", "legacyItemId": listing_id, "sku": "X", "quantity": 1}],
    }
    notification = {
        "metadata": {"topic": "ORDER_CONFIRMATION", "schemaVersion": "1.0", "deprecated": False},
        "notification": {"notificationId": uuid.uuid4().hex, "publishAttemptCount": 1, "data": data},
    }
    return json.dumps(notification).encode()


def _signed(sandbox: FastAPI, body: bytes) -> dict[str, str]:
    config: WebhookConfig = sandbox.state.webhooks
    assert config.private_key is not None
    return {
        "x-ebay-signature": sign_ebay(config.private_key, config.kid, body),
        "content-type": "application/json",
    }


def _etsy_headers(settings: Settings, body: bytes, *, sent_at: int | None = None) -> dict[str, str]:
    webhook_id = f"msg_{uuid.uuid4().hex}"
    timestamp = sent_at if sent_at is not None else int(time.time())
    secret = settings.etsy_webhook_secret.get_secret_value()
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign_etsy(secret, webhook_id, timestamp, body),
        "content-type": "application/json",
    }


async def _product(client: httpx.AsyncClient, headers: dict[str, str], product_id: int) -> dict[str, Any]:
    return dict((await client.get(f"/api/products/{product_id}", headers=headers)).json())


async def _sales(client: httpx.AsyncClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    return list((await client.get("/api/sales", headers=headers)).json()["items"])


async def test_the_ebay_challenge_answers_with_the_verification_token(
    client: httpx.AsyncClient, migrated: Settings
) -> None:
    answer = await client.get("/api/webhooks/ebay", params={"challenge_code": "a8628072-3d33-45ee"})
    assert answer.status_code == 200
    expected = ebay_challenge_response(
        "a8628072-3d33-45ee",
        migrated.ebay_verification_token.get_secret_value(),
        "http://127.0.0.1:8000/api/webhooks/ebay",
    )
    assert answer.json() == {"challengeResponse": expected}
    assert_problem(await client.get("/api/webhooks/ebay"), 422, "validation_error")


async def test_a_signed_ebay_order_sells_the_product_and_replays_change_nothing(
    client: httpx.AsyncClient, sandbox: FastAPI, pipelines: None
) -> None:
    headers = await _tenant(client, shop_id=uuid.uuid4().int % 10**9)
    product = await _live_product(client, headers)
    body = _ebay_order(_listing(product, "ebay"), "12-34567-89012")
    for _ in range(3):  # the push, eBay's retry, and a replay of the same bytes later
        answer = await client.post("/api/webhooks/ebay", content=body, headers=_signed(sandbox, body))
        assert answer.status_code == 204, answer.text
    after = await _product(client, headers, product["id"])
    assert after["status"] == "sold" and after["stock_quantity"] == 0
    [sale] = await _sales(client, headers)
    assert (sale["platform"], sale["order_id"], sale["source"]) == ("ebay", "12-34567-89012", "webhook")
    [outcome] = sale["outcomes"]
    assert (outcome["platform"], outcome["action"]) == ("etsy", "delist")
    assert (await wait_for_job(client, headers, outcome["job_id"]))["status"] == "succeeded"


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda headers, body: {}, id="unsigned"),
        pytest.param(lambda headers, body: {**headers, "x-ebay-signature": "bm90IGpzb24="}, id="garbage"),
        pytest.param(
            lambda headers, body: {
                **headers,
                "x-ebay-signature": base64.b64encode(
                    json.dumps(
                        {**json.loads(base64.b64decode(headers["x-ebay-signature"])), "kid": "someone-else"}
                    ).encode()
                ).decode(),
            },
            id="unknown-key",
        ),
        pytest.param(lambda headers, body: headers, id="body-changed-after-signing"),
    ],
)
async def test_a_forged_ebay_notification_is_401_and_sells_nothing(
    client: httpx.AsyncClient, sandbox: FastAPI, pipelines: None, forge: Any
) -> None:
    headers = await _tenant(client, shop_id=uuid.uuid4().int % 10**9)
    product = await _live_product(client, headers)
    genuine = _ebay_order(_listing(product, "ebay"), f"ORDER-{uuid.uuid4().hex[:6]}")
    signature = _signed(sandbox, genuine)
    tampered = genuine.replace(b'"quantity": 1', b'"quantity": 3')
    answer = await client.post("/api/webhooks/ebay", content=tampered, headers=forge(signature, tampered))
    assert_problem(answer, 401, "invalid_signature")
    assert (await _product(client, headers, product["id"]))["status"] == "published"
    assert await _sales(client, headers) == []


async def test_a_webhook_for_another_tenants_listing_changes_nothing_here(
    client: httpx.AsyncClient, sandbox: FastAPI, pipelines: None
) -> None:
    mine = await _tenant(client, shop_id=uuid.uuid4().int % 10**9)
    theirs = await _tenant(client, shop_id=uuid.uuid4().int % 10**9)
    my_product = await _live_product(client, mine)
    their_product = await _live_product(client, theirs)
    body = _ebay_order(_listing(their_product, "ebay"), "THEIR-ORDER")
    assert (
        await client.post("/api/webhooks/ebay", content=body, headers=_signed(sandbox, body))
    ).status_code == 204
    assert (await _product(client, mine, my_product["id"]))["status"] == "published"
    assert await _sales(client, mine) == []
    assert (await _product(client, theirs, their_product["id"]))["status"] == "sold"
    [sale] = await _sales(client, theirs)
    assert sale["order_id"] == "THEIR-ORDER"


async def test_ebay_account_deletion_disconnects_that_seller(
    client: httpx.AsyncClient, sandbox: FastAPI
) -> None:
    headers = bearer(await register(client))
    username = f"seller-{uuid.uuid4().hex[:8]}"
    connect = await client.put(
        "/api/integrations/ebay", json={**EBAY_CONNECTION, "username": username}, headers=headers
    )
    assert connect.status_code == 200
    other = bearer(await register(client))
    await client.put("/api/integrations/ebay", json={**EBAY_CONNECTION, "username": "someone"}, headers=other)
    notice = {
        "metadata": {"topic": "MARKETPLACE_ACCOUNT_DELETION", "schemaVersion": "1.0", "deprecated": False},
        "notification": {"notificationId": "n-1", "data": {"username": username, "userId": "ma8vp1jySJC"}},
    }
    body = json.dumps(notice).encode()
    assert (
        await client.post("/api/webhooks/ebay", content=body, headers=_signed(sandbox, body))
    ).status_code == 204
    assert (await client.get("/api/integrations", headers=headers)).json()["ebay"] == {"connected": False}
    assert (await client.get("/api/integrations", headers=other)).json()["ebay"]["connected"] is True


async def test_etsy_signatures_forged_replayed_and_duplicated(
    client: httpx.AsyncClient, migrated: Settings
) -> None:
    body = json.dumps(
        {"event_type": "order.paid", "resource_url": "https://x/receipts/1", "shop_id": 1}
    ).encode()
    good = _etsy_headers(migrated, body)
    forged = {**good, "webhook-signature": "v1," + base64.b64encode(b"0" * 32).decode()}
    assert_problem(
        await client.post("/api/webhooks/etsy", content=body, headers=forged), 401, "invalid_signature"
    )
    unsigned = {"content-type": "application/json"}
    assert_problem(
        await client.post("/api/webhooks/etsy", content=body, headers=unsigned), 401, "invalid_signature"
    )
    stale = _etsy_headers(migrated, body, sent_at=int(time.time()) - 3600)
    assert_problem(
        await client.post("/api/webhooks/etsy", content=body, headers=stale), 401, "invalid_signature"
    )
    assert (await client.post("/api/webhooks/etsy", content=body, headers=good)).status_code == 204
    assert (await client.post("/api/webhooks/etsy", content=body, headers=good)).status_code == 204


async def test_an_etsy_order_paid_makes_the_shops_sale_check_due_now(
    client: httpx.AsyncClient, migrated: Settings
) -> None:
    shop_id = uuid.uuid4().int % 10**9
    await _tenant(client, shop_id=shop_id)
    db = connect_database(migrated.async_database_url, pool_size=1)
    try:
        async with db.session_factory() as session:
            await session.execute(
                text(
                    "UPDATE public.sale_checks SET due_at = now() + interval '1 hour' WHERE platform = 'etsy'"
                )
            )
            await session.commit()
        body = json.dumps(
            {
                "event_type": "order.paid",
                "resource_url": f"https://x/shops/{shop_id}/receipts/777",
                "shop_id": shop_id,
            }
        ).encode()
        answer = await client.post("/api/webhooks/etsy", content=body, headers=_etsy_headers(migrated, body))
        assert answer.status_code == 204
        await asyncio.sleep(0)
        async with db.session_factory() as session:
            row = (
                await session.execute(
                    text(
                        "SELECT due_at <= now() AS due, hints FROM public.sale_checks s "
                        "JOIN public.marketplace_directory d ON d.tenant_id = s.tenant_id "
                        "AND d.platform = 'etsy' AND d.kind = 'shop' AND d.key = :shop "
                        "WHERE s.platform = 'etsy'"
                    ),
                    {"shop": str(shop_id)},
                )
            ).one()
        assert row.due is True and row.hints == ["777"]
    finally:
        await db.dispose()
