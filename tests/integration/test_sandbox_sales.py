"""The sandbox's buyers: eBay orders and getOrders, Etsy receipts, Vinted sales, the notification key.

In process (ASGI): what a marketplace refuses, the sandbox refuses too (no listing, no token, a bad filter).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from ops.tools.sandbox.app import create_sandbox_app
from tests.integration.test_sandbox import INVENTORY, ebay_item, ebay_offer, ebay_seller

FULFILLMENT = "/sell/fulfillment/v1"


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_sandbox_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as http:
        yield http


async def _live_ebay_listing(client: httpx.AsyncClient, headers: dict[str, str], sku: str) -> str:
    await client.put(f"{INVENTORY}/inventory_item/{sku}", json=ebay_item(quantity=1), headers=headers)
    offer_id = (await client.post(f"{INVENTORY}/offer", json=ebay_offer(sku), headers=headers)).json()[
        "offerId"
    ]
    published = await client.post(f"{INVENTORY}/offer/{offer_id}/publish", headers=headers)
    return str(published.json()["listingId"])


async def test_an_ebay_order_is_listed_by_get_orders_within_its_lastmodified_window(
    client: httpx.AsyncClient,
) -> None:
    seller = await ebay_seller(client)
    listing_id = await _live_ebay_listing(client, seller["headers"], "SKU-SOLD")
    order = await client.post("/_sandbox/ebay/orders", json={"sku": "SKU-SOLD"})
    assert order.status_code == 201
    line = order.json()["lineItems"][0]
    assert (line["legacyItemId"], line["sku"], line["quantity"]) == (listing_id, "SKU-SOLD", 1)

    window = "lastmodifieddate:[2020-01-01T00:00:00.000Z..2100-01-01T00:00:00.000Z]"
    found = await client.get(f"{FULFILLMENT}/order", params={"filter": window}, headers=seller["headers"])
    assert found.status_code == 200
    assert [o["orderId"] for o in found.json()["orders"]] == [order.json()["orderId"]]
    before = "lastmodifieddate:[2020-01-01T00:00:00.000Z..2020-01-02T00:00:00.000Z]"
    none = await client.get(f"{FULFILLMENT}/order", params={"filter": before}, headers=seller["headers"])
    assert none.json()["orders"] == []
    bad = await client.get(f"{FULFILLMENT}/order", params={"filter": "nonsense"}, headers=seller["headers"])
    assert bad.status_code == 400
    assert (await client.get(f"{FULFILLMENT}/order")).status_code == 401
    # The last unit sold: the listing ended; a second order of it is refused.
    assert (await client.post("/_sandbox/ebay/orders", json={"sku": "NO-SUCH-SKU"})).status_code == 404
    state = (await client.get("/_sandbox/state")).json()
    assert [o["orderId"] for o in state["orders"]["ebay_orders"]] == [order.json()["orderId"]]


async def test_the_notification_public_key_is_served_by_kid_only(client: httpx.AsyncClient) -> None:
    kid = client._transport.app.state.webhooks.kid  # type: ignore[attr-defined]
    assert (await client.get(f"/commerce/notification/v1/public_key/{kid}")).status_code == 401
    bearer = {"Authorization": "Bearer app-token"}
    key = await client.get(f"/commerce/notification/v1/public_key/{kid}", headers=bearer)
    assert key.status_code == 200 and key.json()["key"].startswith("-----BEGIN PUBLIC KEY-----")
    assert (await client.get("/commerce/notification/v1/public_key/other", headers=bearer)).status_code == 404


async def test_sales_of_missing_listings_are_refused(client: httpx.AsyncClient) -> None:
    assert (await client.post("/_sandbox/etsy/receipts", json={"listing_id": 42})).status_code == 404
    assert (await client.post("/_sandbox/vinted/sales", json={"item_id": 42})).status_code == 404
    assert (await client.post("/_sandbox/ebay/orders", json={})).status_code == 422
