"""The marketplace sandbox, seen from a client: real request shapes, real error bodies, faults on demand."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from ops.tools.sandbox.app import create_sandbox_app

EBAY_BASIC = "Basic " + base64.b64encode(b"stoflow-app:app-secret").decode()
INVENTORY = "/sell/inventory/v1"


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_sandbox_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as http:
        yield http


# --- eBay -----------------------------------------------------------------------------------------------


def ebay_item(quantity: int = 1) -> dict[str, Any]:
    return {
        "availability": {"shipToLocationAvailability": {"quantity": quantity}},
        "condition": "USED_EXCELLENT",
        "product": {
            "title": "Levi's 501 jean W32 L34",
            "description": "Bon état",
            "imageUrls": ["https://img.example/1.jpg"],
            "aspects": {"Brand": ["Levi's"], "Size": ["W32"], "Department": ["Men"]},
        },
    }


def ebay_offer(sku: str) -> dict[str, Any]:
    return {
        "sku": sku,
        "marketplaceId": "EBAY_FR",
        "format": "FIXED_PRICE",
        "availableQuantity": 1,
        "categoryId": "11483",
        "merchantLocationKey": "warehouse-1",
        "pricingSummary": {"price": {"value": "25.00", "currency": "EUR"}},
        "listingPolicies": {"fulfillmentPolicyId": "f1", "paymentPolicyId": "p1", "returnPolicyId": "r1"},
    }


async def ebay_seller(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.post("/_sandbox/ebay/accounts", json={"account_id": "seller-1"})
    assert response.status_code == 201
    account: dict[str, Any] = response.json()
    account["headers"] = {"Authorization": f"Bearer {account['access_token']}", "Content-Language": "fr-FR"}
    return account


async def test_ebay_refresh_token_grant_issues_a_user_access_token(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/identity/v1/oauth2/token",
        data={"grant_type": "refresh_token", "refresh_token": "some-refresh-token"},
        headers={"Authorization": EBAY_BASIC},
    )

    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "User Access Token"
    assert body["expires_in"] == 7200
    items = await client.get(
        f"{INVENTORY}/inventory_item/NOPE", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert items.status_code == 404
    assert items.json()["errors"][0]["errorId"] == 25710


async def test_ebay_revoked_refresh_token_is_invalid_grant(client: httpx.AsyncClient) -> None:
    seller = await ebay_seller(client)
    await client.post("/_sandbox/ebay/revoke", json={"refresh_token": seller["refresh_token"]})

    response = await client.post(
        "/identity/v1/oauth2/token",
        data={"grant_type": "refresh_token", "refresh_token": seller["refresh_token"]},
        headers={"Authorization": EBAY_BASIC},
    )

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


async def test_ebay_token_endpoint_requires_client_credentials(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/identity/v1/oauth2/token", data={"grant_type": "refresh_token", "refresh_token": "x"}
    )

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


async def test_ebay_calls_without_or_with_unknown_token_are_401_in_ebay_shape(
    client: httpx.AsyncClient,
) -> None:
    missing = await client.get(f"{INVENTORY}/inventory_item/A1")
    unknown = await client.get(f"{INVENTORY}/inventory_item/A1", headers={"Authorization": "Bearer forged"})

    assert missing.status_code == 401
    assert missing.json()["errors"][0]["errorId"] == 1002
    assert unknown.status_code == 401
    error = unknown.json()["errors"][0]
    assert (error["errorId"], error["domain"], error["message"]) == (1001, "OAuth", "Invalid access token")


async def test_ebay_access_token_expires_after_two_hours(client: httpx.AsyncClient) -> None:
    seller = await ebay_seller(client)
    await client.post("/_sandbox/clock/advance", json={"seconds": 7201})

    response = await client.get(f"{INVENTORY}/inventory_item/A1", headers=seller["headers"])

    assert response.status_code == 401
    assert response.json()["errors"][0]["errorId"] == 1001


async def test_ebay_publish_flow_and_publish_is_idempotent(client: httpx.AsyncClient) -> None:
    headers = (await ebay_seller(client))["headers"]

    put = await client.put(f"{INVENTORY}/inventory_item/SKU-1", json=ebay_item(), headers=headers)
    assert put.status_code == 204
    fetched = await client.get(f"{INVENTORY}/inventory_item/SKU-1", headers=headers)
    assert fetched.json()["product"]["title"] == "Levi's 501 jean W32 L34"
    none_yet = await client.get(f"{INVENTORY}/offer", params={"sku": "SKU-1"}, headers=headers)
    assert none_yet.status_code == 404
    assert none_yet.json()["errors"][0]["errorId"] == 25713
    created = await client.post(f"{INVENTORY}/offer", json=ebay_offer("SKU-1"), headers=headers)
    assert created.status_code == 201
    offer_id = created.json()["offerId"]
    first = await client.post(f"{INVENTORY}/offer/{offer_id}/publish", headers=headers)
    again = await client.post(f"{INVENTORY}/offer/{offer_id}/publish", headers=headers)

    assert first.status_code == again.status_code == 200
    assert first.json()["listingId"] == again.json()["listingId"]
    offers = (await client.get(f"{INVENTORY}/offer", params={"sku": "SKU-1"}, headers=headers)).json()
    assert offers["total"] == 1
    assert offers["offers"][0]["status"] == "PUBLISHED"
    assert offers["offers"][0]["listing"]["listingId"] == first.json()["listingId"]
    inspected = (await client.get("/_sandbox/ebay/listings", params={"account": "seller-1"})).json()
    assert inspected["accounts"]["seller-1"]["skus"]["SKU-1"]["live_listing_ids"] == [
        first.json()["listingId"]
    ]


async def test_ebay_second_offer_for_same_sku_is_error_25002(client: httpx.AsyncClient) -> None:
    headers = (await ebay_seller(client))["headers"]
    await client.put(f"{INVENTORY}/inventory_item/SKU-2", json=ebay_item(), headers=headers)
    first = await client.post(f"{INVENTORY}/offer", json=ebay_offer("SKU-2"), headers=headers)

    second = await client.post(f"{INVENTORY}/offer", json=ebay_offer("SKU-2"), headers=headers)

    assert second.status_code == 400
    error = second.json()["errors"][0]
    assert error["errorId"] == 25002
    assert "Offer entity already exists" in error["message"]
    assert error["parameters"] == [{"name": "offerId", "value": first.json()["offerId"]}]


async def test_ebay_withdraw_ends_the_listing_and_republish_gives_a_new_one(
    client: httpx.AsyncClient,
) -> None:
    headers = (await ebay_seller(client))["headers"]
    await client.put(f"{INVENTORY}/inventory_item/SKU-3", json=ebay_item(), headers=headers)
    offer_id = (await client.post(f"{INVENTORY}/offer", json=ebay_offer("SKU-3"), headers=headers)).json()[
        "offerId"
    ]
    listing_id = (await client.post(f"{INVENTORY}/offer/{offer_id}/publish", headers=headers)).json()[
        "listingId"
    ]

    withdrawn = await client.post(f"{INVENTORY}/offer/{offer_id}/withdraw", headers=headers)
    twice = await client.post(f"{INVENTORY}/offer/{offer_id}/withdraw", headers=headers)
    republished = await client.post(f"{INVENTORY}/offer/{offer_id}/publish", headers=headers)

    assert withdrawn.json()["listingId"] == listing_id
    assert twice.status_code == 400
    assert republished.json()["listingId"] != listing_id


async def test_ebay_inventory_item_is_validated_and_needs_content_language(client: httpx.AsyncClient) -> None:
    headers = (await ebay_seller(client))["headers"]
    incomplete = ebay_item()
    del incomplete["product"]["imageUrls"]
    del incomplete["condition"]

    refused = await client.put(f"{INVENTORY}/inventory_item/SKU-4", json=incomplete, headers=headers)
    no_language = await client.put(
        f"{INVENTORY}/inventory_item/SKU-4",
        json=ebay_item(),
        headers={"Authorization": headers["Authorization"]},
    )

    assert refused.status_code == 400
    reasons = {p["value"] for e in refused.json()["errors"] for p in e["parameters"]}
    assert reasons == {"product.imageUrls", "body.condition: Field required"}
    assert {e["errorId"] for e in refused.json()["errors"]} == {2004, 25002}
    assert no_language.status_code == 400
    assert no_language.json()["errors"][0]["errorId"] == 25709


async def test_ebay_offer_updates_and_publish_refuses_missing_policies(client: httpx.AsyncClient) -> None:
    headers = (await ebay_seller(client))["headers"]
    await client.put(f"{INVENTORY}/inventory_item/SKU-5", json=ebay_item(), headers=headers)
    offer = ebay_offer("SKU-5")
    del offer["listingPolicies"]
    offer_id = (await client.post(f"{INVENTORY}/offer", json=offer, headers=headers)).json()["offerId"]

    refused = await client.post(f"{INVENTORY}/offer/{offer_id}/publish", headers=headers)
    create_shape = await client.put(
        f"{INVENTORY}/offer/{offer_id}", json=ebay_offer("SKU-5"), headers=headers
    )
    keys = {"sku", "marketplaceId", "format"}
    update_shape = {k: v for k, v in ebay_offer("SKU-5").items() if k not in keys}
    updated = await client.put(f"{INVENTORY}/offer/{offer_id}", json=update_shape, headers=headers)
    published = await client.post(f"{INVENTORY}/offer/{offer_id}/publish", headers=headers)

    assert refused.status_code == 400
    assert {e["errorId"] for e in refused.json()["errors"]} == {25007, 25008, 25009}
    # updateOffer takes EbayOfferDetailsWithId: the offer's keys are not fields of it.
    assert create_shape.status_code == 400
    assert {p["value"] for e in create_shape.json()["errors"] for p in e["parameters"]} == {
        f"body.{key}: unknown field" for key in keys
    }
    assert updated.status_code == 204
    assert published.status_code == 200


# --- Etsy -----------------------------------------------------------------------------------------------


async def etsy_shop(client: httpx.AsyncClient) -> dict[str, Any]:
    account: dict[str, Any] = (await client.post("/_sandbox/etsy/accounts", json={"shop_id": 555})).json()
    account["headers"] = {
        "x-api-key": "keystring:secret",
        "Authorization": f"Bearer {account['access_token']}",
    }
    return account


def etsy_listing(**overrides: Any) -> dict[str, Any]:
    return {
        "quantity": 1,
        "title": "Veste en jean vintage",
        "description": "Années 90",
        "price": 35.5,
        "who_made": "someone_else",
        "when_made": "1990s",
        "is_supply": False,
        "taxonomy_id": 374,
        "shipping_profile_id": 98765,
        **overrides,
    }


async def test_etsy_refresh_rotates_tokens_and_revoked_is_invalid_grant(client: httpx.AsyncClient) -> None:
    shop = await etsy_shop(client)

    refreshed = await client.post(
        "/v3/public/oauth/token",
        data={
            "grant_type": "refresh_token",
            "client_id": "keystring",
            "refresh_token": shop["refresh_token"],
        },
    )
    # Rotation: the refresh token just used is dead.
    revoked = await client.post(
        "/v3/public/oauth/token",
        data={
            "grant_type": "refresh_token",
            "client_id": "keystring",
            "refresh_token": shop["refresh_token"],
        },
    )

    body = refreshed.json()
    assert body["token_type"] == "Bearer"
    assert body["refresh_token"] != shop["refresh_token"]
    assert body["access_token"].startswith(f"{shop['user_id']}.")
    assert revoked.status_code == 400
    assert revoked.json() == {"error": "invalid_grant", "error_description": "refresh_token is revoked"}


async def test_etsy_requires_api_key_with_shared_secret_and_valid_bearer(client: httpx.AsyncClient) -> None:
    shop = await etsy_shop(client)

    no_key = await client.get("/v3/application/shops/555/listings", headers={"Authorization": "Bearer 1.x"})
    bare_key = await client.get(
        "/v3/application/shops/555/listings",
        headers={"x-api-key": "keystring", "Authorization": shop["headers"]["Authorization"]},
    )
    bad_token = await client.get(
        "/v3/application/shops/555/listings", headers={"x-api-key": "k:s", "Authorization": "Bearer 1.x"}
    )
    await client.post("/_sandbox/clock/advance", json={"seconds": 3601})
    expired = await client.get("/v3/application/shops/555/listings", headers=shop["headers"])

    assert no_key.status_code == 403
    # Since February 2026: the keystring alone is refused.
    assert bare_key.status_code == 403
    assert bare_key.json() == {"error": "Shared secret is required in x-api-key header."}
    assert bad_token.status_code == 401
    assert expired.json() == {"error": "invalid_token", "error_description": "access token is expired"}


def with_shop(shop: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    return etsy_listing(readiness_state_id=shop["readiness_state_id"], **overrides)


async def test_etsy_listing_flow_draft_inventory_image_activate_list_delete(
    client: httpx.AsyncClient,
) -> None:
    shop = await etsy_shop(client)
    headers = shop["headers"]

    created = await client.post("/v3/application/shops/555/listings", data=with_shop(shop), headers=headers)
    listing = created.json()
    listing_id = listing["listing_id"]
    no_image = await client.patch(
        f"/v3/application/shops/555/listings/{listing_id}", data={"state": "active"}, headers=headers
    )
    inventory = await client.put(
        f"/v3/application/listings/{listing_id}/inventory",
        json={
            "products": [
                {
                    "sku": "SKU-E1",
                    "property_values": [],
                    "offerings": [
                        {"price": 30, "quantity": 2, "is_enabled": True, "readiness_state_id": None}
                    ],
                }
            ]
        },
        headers=headers,
    )
    image = await client.post(
        f"/v3/application/shops/555/listings/{listing_id}/images",
        files={"image": ("front.jpg", b"\xff\xd8" + b"jpeg-bytes" * 8, "image/jpeg")},
        headers=headers,
    )
    activated = await client.patch(
        f"/v3/application/shops/555/listings/{listing_id}", data={"state": "active"}, headers=headers
    )
    active = await client.get(
        "/v3/application/shops/555/listings", params={"state": "active"}, headers=headers
    )
    deleted = await client.delete(f"/v3/application/listings/{listing_id}", headers=headers)
    gone = await client.get(f"/v3/application/listings/{listing_id}", headers=headers)

    assert created.status_code == 201
    assert listing["state"] == "draft"
    assert listing["skus"] == []
    assert listing["url"].startswith(f"https://www.etsy.com/listing/{listing_id}/")
    assert listing["price"] == {"amount": 3550, "divisor": 100, "currency_code": "EUR"}
    assert no_image.status_code == 400
    assert "image" in no_image.json()["error"]
    assert inventory.status_code == 200, inventory.text
    assert image.status_code == 201
    assert image.json()["listing_image_id"]
    assert activated.json()["state"] == "active"
    assert activated.json()["price"]["amount"] == 3000
    assert activated.json()["quantity"] == 2
    assert active.json()["count"] == 1
    assert active.json()["results"][0]["skus"] == ["SKU-E1"]
    assert deleted.status_code == 204
    assert gone.status_code == 404
    assert "error" in gone.json()


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"who_made": "a_robot"}, "who_made"),
        ({"when_made": "2020_2023"}, "when_made"),
        ({"title": ""}, "title"),
        ({"title": "Veste 🌸 vintage"}, "title"),
        ({"title": "50% laine 50% coton"}, "title"),
        ({"taxonomy_id": 999999}, "taxonomy_id"),
        ({"skus": "SKU-E1"}, "body.skus: unknown field"),
        ({"state": "active"}, "body.state: unknown field"),
    ],
)
async def test_etsy_refuses_bad_draft_listings(
    client: httpx.AsyncClient, overrides: dict[str, Any], fragment: str
) -> None:
    shop = await etsy_shop(client)

    response = await client.post(
        "/v3/application/shops/555/listings", data=with_shop(shop, **overrides), headers=shop["headers"]
    )

    assert response.status_code == 400
    assert fragment in response.json()["error"]


async def test_etsy_refuses_json_listing_bodies_and_price_on_update(client: httpx.AsyncClient) -> None:
    shop = await etsy_shop(client)
    headers = shop["headers"]
    as_json = await client.post("/v3/application/shops/555/listings", json=with_shop(shop), headers=headers)
    listing_id = (
        await client.post("/v3/application/shops/555/listings", data=with_shop(shop), headers=headers)
    ).json()["listing_id"]

    price_on_patch = await client.patch(
        f"/v3/application/shops/555/listings/{listing_id}",
        data={"price": "30", "quantity": "3"},
        headers=headers,
    )
    no_readiness_key = await client.put(
        f"/v3/application/listings/{listing_id}/inventory",
        json={"products": [{"sku": "S", "offerings": [{"price": 30, "quantity": 1, "is_enabled": True}]}]},
        headers=headers,
    )

    assert as_json.status_code == 400
    assert "must be application/x-www-form-urlencoded" in as_json.json()["error"]
    assert price_on_patch.status_code == 400
    assert "body.price: unknown field" in price_on_patch.json()["error"]
    assert "body.quantity: unknown field" in price_on_patch.json()["error"]
    assert no_readiness_key.status_code == 400
    assert "readiness_state_id: Field required" in no_readiness_key.json()["error"]
    # What a test asks for: the lenient sandbox serves it, and still logs the violation.
    await client.put("/_sandbox/strictness", json={"strict": False})
    lenient = await client.post("/v3/application/shops/555/listings", json=with_shop(shop), headers=headers)
    assert lenient.status_code == 201
    logged = (await client.get("/_sandbox/requests", params={"platform": "etsy", "method": "POST"})).json()
    assert any("Content-Type" in v for r in logged["requests"] for v in r["violations"])


async def test_etsy_return_policy_needed_outside_the_eu(client: httpx.AsyncClient) -> None:
    shop = (await client.post("/_sandbox/etsy/accounts", json={"shop_id": 556, "country_iso": "US"})).json()
    headers = {"x-api-key": "k:s", "Authorization": f"Bearer {shop['access_token']}"}
    listing_id = (
        await client.post("/v3/application/shops/556/listings", data=with_shop(shop), headers=headers)
    ).json()["listing_id"]
    await client.post(
        f"/v3/application/shops/556/listings/{listing_id}/images",
        files={"image": ("a.jpg", b"\xff\xd8" + b"x" * 64, "image/jpeg")},
        headers=headers,
    )

    refused = await client.patch(
        f"/v3/application/shops/556/listings/{listing_id}", data={"state": "active"}, headers=headers
    )
    accepted = await client.patch(
        f"/v3/application/shops/556/listings/{listing_id}",
        data={"state": "active", "return_policy_id": str(shop["return_policy_id"])},
        headers=headers,
    )

    assert refused.status_code == 400
    assert "return policy" in refused.json()["error"]
    assert accepted.status_code == 200


# --- Vinted ---------------------------------------------------------------------------------------------


async def vinted_member(client: httpx.AsyncClient, user_id: int = 4242) -> dict[str, Any]:
    session: dict[str, Any] = (
        await client.post("/_sandbox/vinted/sessions", json={"user_id": user_id})
    ).json()
    client.cookies.set("_vinted_fr_session", session["cookies"]["_vinted_fr_session"])
    return session


async def vinted_photo(client: httpx.AsyncClient, headers: dict[str, str]) -> int:
    response = await client.post(
        "/api/v2/photos",
        data={"photo[type]": "item", "photo[temp_uuid]": ""},
        files={"photo[file]": ("p.jpg", b"\xff\xd8jpeg", "image/jpeg")},
        headers=headers,
    )
    assert response.status_code == 200
    photo_id: int = response.json()["id"]
    return photo_id


def vinted_item(photo_id: int, **overrides: Any) -> dict[str, Any]:
    item = {
        "id": None,
        "currency": "EUR",
        "title": "Pull en laine",
        "description": "Très bon état",
        "brand_id": 53,
        "size_id": 206,
        "catalog_id": 5,
        "status_id": 2,
        "package_size_id": 1,
        "price": 19.9,
        "color_ids": [12],
        "assigned_photos": [{"id": photo_id, "orientation": 0}],
        **overrides,
    }
    return {"item": item, "feedback_id": None, "push_up": False, "parcel": None}


async def test_vinted_without_session_is_401_invalid_authentication_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v2/wardrobe/1/items")

    assert response.status_code == 401
    assert response.json() == {
        "code": 100,
        "message": "Invalid authentication token",
        "message_code": "invalid_authentication_token",
    }


async def test_vinted_writes_need_csrf_and_anon_id_headers(client: httpx.AsyncClient) -> None:
    session = await vinted_member(client)

    no_csrf = await client.post("/api/v2/item_upload/items", json={}, headers={"x-anon-id": "a"})
    wrong_csrf = await client.post(
        "/api/v2/item_upload/items", json={}, headers={"x-csrf-token": "stale", "x-anon-id": "a"}
    )
    no_anon = await client.post(
        "/api/v2/item_upload/items", json={}, headers={"x-csrf-token": session["headers"]["x-csrf-token"]}
    )

    for response in (no_csrf, wrong_csrf, no_anon):
        assert response.status_code == 403
        assert set(response.json()) == {"code", "message", "message_code"}


async def test_vinted_refuses_writes_from_another_origin_and_records_each_origin(
    client: httpx.AsyncClient,
) -> None:
    headers = (await vinted_member(client))["headers"]
    photo = {"photo[type]": "item"}
    jpeg = {"photo[file]": ("p.jpg", b"\xff\xd8jpeg", "image/jpeg")}

    from_extension = await client.post(
        "/api/v2/photos",
        data=photo,
        files=jpeg,
        headers={**headers, "Origin": "chrome-extension://abcdefghijklmnop"},
    )
    from_page = await client.post(
        "/api/v2/photos", data=photo, files=jpeg, headers={**headers, "Origin": "http://sandbox"}
    )
    log = (await client.get("/_sandbox/requests", params={"path_prefix": "/api/v2/photos"})).json()

    assert from_extension.status_code == 403
    assert from_extension.json() == {
        "code": 106,
        "message": "Invalid origin",
        "message_code": "invalid_origin",
    }
    assert from_page.status_code == 200
    assert [(r["origin"], r["status"]) for r in log["requests"]] == [
        ("chrome-extension://abcdefghijklmnop", 403),
        ("http://sandbox", 200),
    ]
    # Nothing was stored for the refused upload.
    assert from_page.json()["id"] == (await vinted_photo(client, headers)) - 1


async def test_vinted_home_page_issues_session_cookie_and_csrf_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/")

    assert response.cookies.get("_vinted_fr_session")
    assert response.cookies.get("anon_id")
    assert 'name="csrf-token"' in response.text


async def test_vinted_item_flow_and_wardrobe_pagination(client: httpx.AsyncClient) -> None:
    session = await vinted_member(client)
    headers = session["headers"]
    photo_id = await vinted_photo(client, headers)

    created = [
        await client.post(
            "/api/v2/item_upload/items", json=vinted_item(photo_id, title=f"Pull {n}"), headers=headers
        )
        for n in range(3)
    ]
    item_id = created[0].json()["item"]["id"]
    updated = await client.put(
        f"/api/v2/item_upload/items/{item_id}", json=vinted_item(photo_id, price=15), headers=headers
    )
    deleted = await client.post(f"/api/v2/items/{item_id}/delete", headers=headers)
    deleted_again = await client.post(f"/api/v2/items/{item_id}/delete", headers=headers)
    page1 = await client.get("/api/v2/wardrobe/4242/items", params={"page": 1, "per_page": 1})

    assert created[0].status_code == 200
    assert created[0].json()["item"]["url"].startswith(f"https://www.vinted.fr/items/{item_id}-")
    assert updated.json()["item"]["price"] == {"amount": "15.00", "currency_code": "EUR"}
    assert deleted.json() == {"code": 0}
    assert deleted_again.status_code == 404
    body = page1.json()
    assert len(body["items"]) == 1
    assert body["pagination"]["total_entries"] == 2
    assert body["pagination"]["total_pages"] == 2


async def test_vinted_validation_errors_list_each_field(client: httpx.AsyncClient) -> None:
    headers = (await vinted_member(client))["headers"]
    photo_id = await vinted_photo(client, headers)

    response = await client.post(
        "/api/v2/item_upload/items",
        json=vinted_item(photo_id, color_ids=[1, 2, 3], price=0, catalog_id=None),
        headers=headers,
    )

    assert response.status_code == 400
    body = response.json()
    assert (body["code"], body["message_code"]) == (99, "validation_error")
    assert {e["field"] for e in body["errors"]} == {"color_ids", "price", "catalog_id"}


async def test_vinted_requests_are_counted_per_member(client: httpx.AsyncClient) -> None:
    await vinted_member(client, user_id=7)
    for _ in range(3):
        await client.get("/api/v2/wardrobe/7/items")
    client.cookies.clear()
    await vinted_member(client, user_id=8)
    await client.get("/api/v2/wardrobe/7/items")

    counts = (await client.get("/_sandbox/requests/counts", params={"platform": "vinted"})).json()

    assert counts["by_account"]["vinted"] == {"7": 3, "8": 1}
    assert counts["by_endpoint"]["vinted"] == {"GET /api/v2/wardrobe/{member_id}/items": 4}


# --- faults ---------------------------------------------------------------------------------------------


async def arm(client: httpx.AsyncClient, **spec: Any) -> None:
    response = await client.post("/_sandbox/faults", json=spec)
    assert response.status_code == 201, response.text


async def test_rate_limit_fault_answers_429_with_retry_after_then_recovers(client: httpx.AsyncClient) -> None:
    headers = (await ebay_seller(client))["headers"]
    await arm(client, platform="ebay", kind="rate_limit", count=2, retry_after=7)

    first = await client.get(f"{INVENTORY}/inventory_item/X", headers=headers)
    second = await client.get(f"{INVENTORY}/inventory_item/X", headers=headers)
    third = await client.get(f"{INVENTORY}/inventory_item/X", headers=headers)

    assert first.status_code == second.status_code == 429
    assert first.headers["Retry-After"] == "7"
    assert "errors" in first.json()
    assert third.status_code == 404


async def test_server_error_fault_only_hits_its_path_prefix(client: httpx.AsyncClient) -> None:
    headers = (await etsy_shop(client))["headers"]
    await arm(
        client, platform="etsy", kind="server_error", status=503, path_prefix="/v3/application/listings/"
    )

    listing = await client.get("/v3/application/listings/1", headers=headers)
    shop = await client.get("/v3/application/shops/555/listings", headers=headers)

    assert listing.status_code == 503
    assert listing.json() == {"error": "Server Error"}
    assert shop.status_code == 200


async def test_latency_fault_delays_responses(client: httpx.AsyncClient) -> None:
    await arm(
        client, platform="vinted", kind="latency", delay_seconds=0.2, max_delay_seconds=0.25, count=None
    )

    started = time.monotonic()
    response = await client.get("/api/v2/wardrobe/1/items")

    assert time.monotonic() - started >= 0.2
    assert response.status_code == 401
    faults = (await client.get("/_sandbox/faults")).json()["faults"]
    assert faults[0]["fired"] == 1


async def test_timeout_fault_outlasts_a_client_timeout_then_answers_504(client: httpx.AsyncClient) -> None:
    await vinted_member(client)
    await arm(client, platform="vinted", kind="timeout", delay_seconds=0.3, count=2)

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(client.get("/api/v2/wardrobe/4242/items"), timeout=0.05)
    late = await client.get("/api/v2/wardrobe/4242/items")

    assert late.status_code == 504


async def test_antibot_fault_returns_a_datadome_or_cloudflare_challenge(client: httpx.AsyncClient) -> None:
    await vinted_member(client)
    await arm(client, platform="vinted", kind="antibot")
    await arm(client, platform="vinted", kind="antibot", mode="cloudflare")

    datadome = await client.get("/api/v2/wardrobe/4242/items")
    cloudflare = await client.get("/api/v2/wardrobe/4242/items")

    assert datadome.status_code == 403
    assert datadome.headers["x-datadome"] == "protected"
    assert datadome.json()["url"].startswith("https://geo.captcha-delivery.com/captcha/")
    assert cloudflare.status_code == 403
    assert cloudflare.headers["cf-mitigated"] == "challenge"
    assert "Just a moment" in cloudflare.text


async def test_response_lost_performs_the_write_but_answers_502(client: httpx.AsyncClient) -> None:
    headers = (await vinted_member(client))["headers"]
    photo_id = await vinted_photo(client, headers)
    await arm(client, platform="vinted", kind="response_lost", path_prefix="/api/v2/item_upload/items")

    lost = await client.post("/api/v2/item_upload/items", json=vinted_item(photo_id), headers=headers)
    wardrobe = await client.get("/api/v2/wardrobe/4242/items")

    assert lost.status_code == 502
    assert wardrobe.json()["pagination"]["total_entries"] == 1


async def test_response_lost_drop_mode_breaks_the_connection_after_the_write(
    client: httpx.AsyncClient,
) -> None:
    headers = (await ebay_seller(client))["headers"]
    await arm(client, platform="ebay", kind="response_lost", mode="drop")

    with pytest.raises(httpx.RemoteProtocolError):
        await client.put(f"{INVENTORY}/inventory_item/SKU-D", json=ebay_item(), headers=headers)
    stored = await client.get(f"{INVENTORY}/inventory_item/SKU-D", headers=headers)

    assert stored.status_code == 200


async def test_token_expired_fault_forces_a_refresh(client: httpx.AsyncClient) -> None:
    seller = await ebay_seller(client)
    await arm(client, platform="ebay", kind="token_expired")

    expired = await client.get(f"{INVENTORY}/inventory_item/X", headers=seller["headers"])
    still_expired = await client.get(f"{INVENTORY}/inventory_item/X", headers=seller["headers"])
    token = await client.post(
        "/identity/v1/oauth2/token",
        data={"grant_type": "refresh_token", "refresh_token": seller["refresh_token"]},
        headers={"Authorization": EBAY_BASIC},
    )
    fresh = await client.get(
        f"{INVENTORY}/inventory_item/X", headers={"Authorization": f"Bearer {token.json()['access_token']}"}
    )

    assert expired.status_code == still_expired.status_code == 401
    assert expired.json()["errors"][0]["errorId"] == 1001
    assert fresh.status_code == 404


async def test_faults_are_refused_for_the_wrong_platform(client: httpx.AsyncClient) -> None:
    response = await client.post("/_sandbox/faults", json={"platform": "ebay", "kind": "antibot"})

    assert response.status_code == 422


# --- inspection and reset -------------------------------------------------------------------------------


async def test_request_log_can_be_windowed_by_time(client: httpx.AsyncClient) -> None:
    await vinted_member(client)
    await client.get("/api/v2/wardrobe/4242/items")
    await client.post("/_sandbox/clock/advance", json={"seconds": 3600})
    boundary = (await client.get("/_sandbox/clock")).json()["now"]
    await client.get("/api/v2/wardrobe/4242/items")
    await client.get("/api/v2/wardrobe/4242/items")

    recent = (await client.get("/_sandbox/requests", params={"platform": "vinted", "since": boundary})).json()
    older = (await client.get("/_sandbox/requests", params={"platform": "vinted", "until": boundary})).json()

    assert recent["count"] == 2
    assert older["count"] == 1
    assert recent["requests"][0]["account"] == "4242"


async def test_faulted_requests_still_count(client: httpx.AsyncClient) -> None:
    await vinted_member(client)
    await arm(client, platform="vinted", kind="rate_limit")

    await client.get("/api/v2/wardrobe/4242/items")

    log = (await client.get("/_sandbox/requests")).json()["requests"]
    assert [(r["status"], r["fault"]) for r in log] == [(429, "rate_limit")]


async def test_reset_forgets_everything(client: httpx.AsyncClient) -> None:
    headers = (await ebay_seller(client))["headers"]
    await client.put(f"{INVENTORY}/inventory_item/SKU-R", json=ebay_item(), headers=headers)
    await arm(client, platform="ebay", kind="server_error", count=None)

    await client.post("/_sandbox/reset")

    state = (await client.get("/_sandbox/state")).json()
    assert state["ebay"] == {"accounts": {}}
    assert (await client.get("/_sandbox/faults")).json() == {"faults": []}
    assert (await client.get("/_sandbox/requests")).json()["count"] == 0
