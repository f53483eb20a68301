"""The fake eBay refuses to publish a listing that lacks an item specific its category requires."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from ops.config.reference_data import load_platform_mappings
from ops.tools.sandbox.app import create_sandbox_app

INVENTORY = "/sell/inventory/v1"


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_sandbox_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as http:
        yield http


async def seller_headers(client: httpx.AsyncClient) -> dict[str, str]:
    response = await client.post("/_sandbox/ebay/accounts", json={"account_id": "aspects-seller"})
    assert response.status_code == 201
    return {"Authorization": f"Bearer {response.json()['access_token']}", "Content-Language": "en-GB"}


def item(aspects: dict[str, list[str]]) -> dict[str, Any]:
    return {
        "availability": {"shipToLocationAvailability": {"quantity": 1}},
        "condition": "USED_EXCELLENT",
        "product": {
            "title": "Robe Zara bleue",
            "description": "Portée deux fois",
            "imageUrls": ["https://img.example/1.jpg"],
            "aspects": aspects,
        },
    }


async def publish(
    client: httpx.AsyncClient, sku: str, aspects: dict[str, list[str]], category_id: str = "63861"
) -> httpx.Response:
    headers = await seller_headers(client)
    put = await client.put(f"{INVENTORY}/inventory_item/{sku}", json=item(aspects), headers=headers)
    assert put.status_code == 204
    offer = {
        "sku": sku,
        "marketplaceId": "EBAY_GB",
        "format": "FIXED_PRICE",
        "availableQuantity": 1,
        "categoryId": category_id,
        "merchantLocationKey": "warehouse-1",
        "pricingSummary": {"price": {"value": "25.00", "currency": "GBP"}},
        "listingPolicies": {"fulfillmentPolicyId": "f1", "paymentPolicyId": "p1", "returnPolicyId": "r1"},
    }
    created = await client.post(f"{INVENTORY}/offer", json=offer, headers=headers)
    assert created.status_code == 201
    return await client.post(f"{INVENTORY}/offer/{created.json()['offerId']}/publish", headers=headers)


async def test_a_dress_without_a_size_is_refused_with_ebays_25002_naming_the_aspect(
    client: httpx.AsyncClient,
) -> None:
    refused = await publish(client, "DRESS-1", {"Brand": ["Zara"], "Department": ["Women"]})

    assert refused.status_code == 400
    errors = refused.json()["errors"]
    assert [(e["errorId"], e["domain"]) for e in errors] == [(25002, "API_INVENTORY")]
    assert errors[0]["message"] == (
        "A user error has occurred. The item specific Size is missing. "
        "Add Size to this listing, enter a valid value, and then try again."
    )
    assert {"name": "2", "value": "Size"} in errors[0]["parameters"]


async def test_blank_aspect_values_do_not_count(client: httpx.AsyncClient) -> None:
    refused = await publish(client, "DRESS-2", {"Brand": [" "], "Size": ["M"], "Department": ["Women"]})

    assert refused.status_code == 400
    assert refused.json()["errors"][0]["parameters"][2] == {"name": "2", "value": "Brand"}


async def test_a_dress_with_its_required_aspects_publishes(client: httpx.AsyncClient) -> None:
    published = await publish(client, "DRESS-3", {"Brand": ["Zara"], "Size": ["M"], "Department": ["Women"]})

    assert published.status_code == 200
    assert published.json()["listingId"]


async def test_every_kids_leaf_our_data_names_per_gender_is_a_category_the_fake_knows(
    client: httpx.AsyncClient,
) -> None:
    dresses = load_platform_mappings()["ebay"]["categories"]["kids_girls_dresses"]
    aspects = {"Brand": ["Zara"], "Size": ["8 Years"], "Department": ["Girls"]}
    for gender, category_id in dresses["category_id_by_gender"].items():
        published = await publish(client, f"KIDS-{gender}", aspects, category_id)
        assert published.status_code == 200, (gender, published.text)

    refused = await publish(client, "KIDS-UNKNOWN", aspects, "99999999")
    assert refused.status_code == 400
    assert [e["errorId"] for e in refused.json()["errors"]] == [25005]
