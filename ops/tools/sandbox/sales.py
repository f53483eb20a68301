"""Buyers in the sandbox: orders on eBay, receipts on Etsy, sales on Vinted, and the webhooks they send.

Control (`/_sandbox/...`): `POST /ebay/orders {"sku","quantity"?}`, `POST /etsy/receipts
{"listing_id","quantity"?}`, `POST /vinted/sales {"item_id"}` make a buyer purchase that listing (201 with
the order); `PUT /webhooks {"url"?, "mode"?}` says where webhooks go and how (`normal`, `forged`,
`duplicated`, `off`: lost). Marketplace side: eBay `getOrders` (Sell Fulfillment, filtered by
`lastmodifieddate`) and the notification public key; Etsy shop receipts; Vinted the member's sold orders.
A listing that sells its last unit ends, as the marketplace ends it.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Literal

import httpx
import structlog
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from ops.tools.sandbox import ebay, etsy, vinted
from ops.tools.sandbox.state import JsonDict, SandboxState, state_of
from ops.tools.sandbox.webhook_signing import new_ebay_key_pair, sign_ebay, sign_etsy

log = structlog.get_logger(__name__)

WebhookMode = Literal["normal", "forged", "duplicated", "off"]
FULFILLMENT = "/sell/fulfillment/v1"
_LAST_MODIFIED = re.compile(r"lastmodifieddate:\[(.*?)\.\.(.*?)\]")


@dataclass
class WebhookConfig:
    """Where webhooks go, how they are signed, and the eBay key pair the sandbox signs with."""

    url: str | None = None
    mode: WebhookMode = "normal"
    etsy_secret: str = "whsec_ZGV2LW9ubHktZXRzeS13ZWJob29rLXNlY3JldA=="  # noqa: S105 - the sandbox's own
    kid: str = field(default_factory=lambda: "sandbox-" + secrets.token_hex(8))
    private_key: ec.EllipticCurvePrivateKey | None = None
    public_pem: str = ""
    #: tests deliver into an in-process gateway through this transport
    transport: httpx.AsyncBaseTransport | None = None
    sent: list[JsonDict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.private_key, self.public_pem = new_ebay_key_pair()


def config_of(request: Request) -> WebhookConfig:
    config: WebhookConfig = request.app.state.webhooks
    return config


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_iso(value: str) -> float | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


# --- webhooks -------------------------------------------------------------------------------------------


async def _deliver(config: WebhookConfig, path: str, body: bytes, headers: dict[str, str]) -> None:
    assert config.url is not None
    copies = 2 if config.mode == "duplicated" else 1
    try:
        async with httpx.AsyncClient(transport=config.transport, timeout=10) as http:
            for _ in range(copies):
                answer = await http.post(
                    config.url.rstrip("/") + path,
                    content=body,
                    headers={"content-type": "application/json", **headers},
                )
                config.sent.append({"path": path, "status": answer.status_code, "mode": config.mode})
    except httpx.HTTPError as error:
        config.sent.append({"path": path, "status": None, "error": str(error), "mode": config.mode})
        log.warning("sandbox_webhook_failed", path=path, error=str(error))


def _send(config: WebhookConfig, path: str, body: bytes, headers: dict[str, str]) -> None:
    if config.url is None or config.mode == "off":
        return
    task = asyncio.get_running_loop().create_task(_deliver(config, path, body, headers))
    _PENDING.add(task)
    task.add_done_callback(_PENDING.discard)


_PENDING: set[asyncio.Task[None]] = set()


def send_ebay_order(config: WebhookConfig, order: JsonDict) -> None:
    """ORDER_CONFIRMATION, signed with the sandbox's key (or forged)."""
    notification = {
        "metadata": {"topic": "ORDER_CONFIRMATION", "schemaVersion": "1.0", "deprecated": False},
        "notification": {
            "notificationId": secrets.token_hex(16),
            "eventDate": order["creationDate"],
            "publishDate": _iso(time.time()),
            "publishAttemptCount": 1,
            "data": order,
        },
    }
    body = json.dumps(notification).encode()
    assert config.private_key is not None
    signed = body if config.mode != "forged" else body.replace(b'"orderId"', b'"orderId" ')
    headers = {"x-ebay-signature": sign_ebay(config.private_key, config.kid, signed)}
    _send(config, "/api/webhooks/ebay", body, headers)


def send_etsy_receipt(config: WebhookConfig, receipt: JsonDict, api_base: str) -> None:
    """order.paid (Standard Webhooks), signed with the signing secret (or forged)."""
    shop, receipt_id = receipt["shop_id"], receipt["receipt_id"]
    payload = {
        "event_type": "order.paid",
        "resource_url": f"{api_base}{etsy.APPLICATION}/shops/{shop}/receipts/{receipt_id}",
        "shop_id": receipt["shop_id"],
    }
    body = json.dumps(payload).encode()
    webhook_id = "msg_" + secrets.token_hex(12)
    timestamp = int(time.time())
    secret = config.etsy_secret if config.mode != "forged" else "whsec_Zm9yZ2Vk"
    headers = {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign_etsy(secret, webhook_id, timestamp, body),
    }
    _send(config, "/api/webhooks/etsy", body, headers)


# --- control --------------------------------------------------------------------------------------------


class EbayOrderRequest(BaseModel):
    sku: str = Field(min_length=1, max_length=50)
    quantity: int = Field(1, ge=1)


class EtsyReceiptRequest(BaseModel):
    listing_id: int = Field(ge=1)
    quantity: int = Field(1, ge=1)


class VintedSaleRequest(BaseModel):
    item_id: int = Field(ge=1)


class WebhookRequest(BaseModel):
    url: str | None = None
    mode: WebhookMode = "normal"


def _not_found(what: str) -> JSONResponse:
    return JSONResponse({"error": f"no live {what}"}, status_code=404)


control = APIRouter(prefix="/_sandbox", tags=["sandbox control"])


@control.put("/webhooks")
async def configure_webhooks(body: WebhookRequest, request: Request) -> JsonDict:
    """Where the sandbox sends webhooks (null: nowhere) and how (normal, forged, duplicated, off)."""
    config = config_of(request)
    config.url, config.mode = body.url, body.mode
    return {"url": config.url, "mode": config.mode, "sent": len(config.sent)}


@control.get("/webhooks")
async def webhook_log(request: Request) -> JsonDict:
    config = config_of(request)
    return {"url": config.url, "mode": config.mode, "sent": list(config.sent)}


@control.post("/ebay/orders", status_code=201, response_model=None)
async def buy_on_ebay(body: EbayOrderRequest, request: Request) -> JsonDict | JSONResponse:
    """A buyer purchases the live listing of this SKU; its last unit ends the listing."""
    state = state_of(request)
    async with state.lock:
        found = next(
            (
                (account, offer)
                for account in state.ebay.accounts.values()
                for offer in account.offers.values()
                if offer.sku == body.sku and offer.listing_id is not None
            ),
            None,
        )
        if found is None:
            return _not_found(f"eBay listing for SKU {body.sku}")
        account, offer = found
        item = account.inventory.get(body.sku) or {}
        availability = item.setdefault("availability", {}).setdefault("shipToLocationAvailability", {})
        left = max(int(availability.get("quantity", 1)) - body.quantity, 0)
        availability["quantity"] = left
        now = _iso(state.clock.now())
        order = {
            "orderId": f"{state.new_id(10_000_000)}-{state.new_id(20_000_000)}",
            "creationDate": now,
            "lastModifiedDate": now,
            "orderFulfillmentStatus": "NOT_STARTED",
            "orderPaymentStatus": "PAID",
            "sellerId": account.account_id,
            "lineItems": [
                {
                    "lineItemId": str(state.new_id(30_000_000)),
                    "legacyItemId": offer.listing_id,
                    "sku": body.sku,
                    "quantity": body.quantity,
                    "title": str(offer.body.get("listingDescription", ""))[:80],
                }
            ],
        }
        if left == 0:
            offer.listing_status = "ENDED"
        state.orders.ebay_orders.append(order)
    send_ebay_order(config_of(request), order)
    return order


@control.post("/etsy/receipts", status_code=201, response_model=None)
async def buy_on_etsy(body: EtsyReceiptRequest, request: Request) -> JsonDict | JSONResponse:
    """A buyer pays for this active listing; its last unit makes it sold out."""
    state = state_of(request)
    async with state.lock:
        listing = state.etsy.listings.get(body.listing_id)
        if listing is None or listing.deleted or listing.fields.get("state") != "active":
            return _not_found(f"Etsy listing {body.listing_id}")
        left = max(int(listing.fields.get("quantity", 1)) - body.quantity, 0)
        listing.fields["quantity"] = left
        if left == 0:
            listing.fields["state"] = "sold_out"
        now = int(state.clock.now())
        listing.fields["updated"] = now
        receipt = {
            "receipt_id": state.new_id(3_000_000_000),
            "shop_id": listing.shop_id,
            "seller_user_id": listing.user_id,
            "status": "Paid",
            "is_paid": True,
            "create_timestamp": now,
            "created_timestamp": now,
            "update_timestamp": now,
            "updated_timestamp": now,
            "transactions": [
                {
                    "transaction_id": state.new_id(4_000_000_000),
                    "listing_id": listing.listing_id,
                    "quantity": body.quantity,
                    "title": listing.fields.get("title", ""),
                    "sku": next(iter(listing.fields.get("skus", []) or [""]), ""),
                }
            ],
        }
        state.orders.etsy_receipts.append(receipt)
    send_etsy_receipt(config_of(request), receipt, str(request.base_url).rstrip("/"))
    return receipt


@control.post("/vinted/sales", status_code=201, response_model=None)
async def buy_on_vinted(body: VintedSaleRequest, request: Request) -> JsonDict | JSONResponse:
    """A buyer purchases this Vinted item (Vinted sends no webhook: the plugin or the check sees it)."""
    state = state_of(request)
    async with state.lock:
        item = state.vinted.items.get(body.item_id)
        if item is None or item.deleted or item.fields.get("is_sold"):
            return _not_found(f"Vinted item {body.item_id}")
        item.fields["is_sold"] = True
        now = state.clock.now()
        sale = {
            "transaction_id": state.new_id(900_000_000),
            "conversation_id": state.new_id(1_900_000_000),
            "item_id": item.item_id,
            "seller_id": item.user_id,
            "buyer_id": state.new_id(700_000_000),
            "title": item.fields.get("title", ""),
            "price": item.fields.get("price"),
            "currency": item.fields.get("currency") or "EUR",
            "photo_id": next(iter(item.fields.get("photo_ids") or []), None),
            "status": "paid",
            "created_at_ts": int(now),
            "updated_at_ts": int(now),
        }
        state.orders.vinted_sales.append(sale)
    return sale


def inspect(state: SandboxState) -> JsonDict:
    """Every order, receipt and sale."""
    return {
        "ebay_orders": list(state.orders.ebay_orders),
        "etsy_receipts": list(state.orders.etsy_receipts),
        "vinted_sales": list(state.orders.vinted_sales),
    }


# --- the marketplaces' own endpoints --------------------------------------------------------------------

router = APIRouter()


@router.get("/commerce/notification/v1/public_key/{kid}", response_model=None)
async def ebay_public_key(kid: str, request: Request) -> JsonDict | JSONResponse:
    """eBay's getPublicKey: the key notifications are signed with (an application token is enough)."""
    if not (request.headers.get("authorization") or "").startswith("Bearer "):
        return JSONResponse(
            {"errors": [{"errorId": 1002, "message": "Missing access token"}]}, status_code=401
        )
    config = config_of(request)
    if kid != config.kid:
        return JSONResponse({"errors": [{"errorId": 195001, "message": "Key not found"}]}, status_code=404)
    return {"algorithm": "ECDSA", "digest": "SHA1", "key": config.public_pem}


@router.get(FULFILLMENT + "/order")
async def get_orders(
    request: Request,
    seller: ebay.Seller,
    filter: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> JsonDict:
    """getOrders of the calling seller, `filter=lastmodifieddate:[from..to]`, oldest first."""
    state = state_of(request)
    start: float | None = None
    end: float | None = None
    if filter:
        matched = _LAST_MODIFIED.search(filter)
        if matched is None:
            raise ebay.invalid_request("Invalid filter: use lastmodifieddate:[from..to]")
        start = _parse_iso(matched.group(1)) if matched.group(1) else None
        end = _parse_iso(matched.group(2)) if matched.group(2) else None
    async with state.lock:
        orders = [
            order
            for order in state.orders.ebay_orders
            if order["sellerId"] == seller.account_id
            and (start is None or (_parse_iso(order["lastModifiedDate"]) or 0) >= start)
            and (end is None or (_parse_iso(order["lastModifiedDate"]) or 0) <= end)
        ]
    page = orders[offset : offset + limit]
    answer: JsonDict = {"orders": page, "total": len(orders), "limit": limit, "offset": offset}
    if offset + limit < len(orders):
        answer["next"] = f"{FULFILLMENT}/order?limit={limit}&offset={offset + limit}"
    return answer


EtsyUser = Annotated[int, Depends(etsy.current_user)]


@router.get(etsy.APPLICATION + "/shops/{shop_id}/receipts")
async def get_shop_receipts(
    shop_id: int,
    request: Request,
    user_id: EtsyUser,
    min_last_modified: Annotated[int | None, Query(ge=0)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 25,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> JsonDict:
    """getShopReceipts: the shop's receipts, newest first, from `min_last_modified` (epoch seconds)."""
    state = state_of(request)
    async with state.lock:
        shop = state.etsy.shops.get(shop_id)
        if shop is None or shop.user_id != user_id:
            raise etsy.EtsyApiError(403, "The shop is not yours.")
        receipts = [
            receipt
            for receipt in reversed(state.orders.etsy_receipts)
            if receipt["shop_id"] == shop_id
            and (min_last_modified is None or receipt["updated_timestamp"] >= min_last_modified)
        ]
    return {"count": len(receipts), "results": receipts[offset : offset + limit]}


@router.get(etsy.APPLICATION + "/shops/{shop_id}/receipts/{receipt_id}")
async def get_shop_receipt(shop_id: int, receipt_id: int, request: Request, user_id: EtsyUser) -> JsonDict:
    """getShopReceipt."""
    state = state_of(request)
    async with state.lock:
        for receipt in state.orders.etsy_receipts:
            if receipt["receipt_id"] == receipt_id and receipt["shop_id"] == shop_id:
                return receipt
    raise etsy.EtsyApiError(404, f"Receipt {receipt_id} not found.")


#: What Vinted's order list says of a paid order the seller has still to ship (its words, in French).
_VINTED_SOLD_STATUS = "Commande payée : envoie le colis"


def _vinted_amount(sale: JsonDict) -> JsonDict:
    price = sale.get("price")
    amount = f"{float(price):.1f}" if isinstance(price, int | float) else "0.0"
    return {"amount": amount, "currency_code": sale.get("currency") or "EUR"}


def _vinted_date(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def vinted_order_view(state: SandboxState, sale: JsonDict) -> JsonDict:
    """One entry of `my_orders` as Vinted lists it: the transaction, not the item it sold."""
    photo = state.vinted.photos.get(sale["photo_id"]) if sale.get("photo_id") is not None else None
    return {
        "transaction_id": sale["transaction_id"],
        "conversation_id": sale["conversation_id"],
        "title": sale["title"],
        "price": _vinted_amount(sale),
        "status": _VINTED_SOLD_STATUS,
        "transaction_user_status": "needs_action",
        "date": _vinted_date(sale["created_at_ts"]),
        "photo": (
            {"id": photo.get("id"), "url": photo.get("url"), "dominant_color": "#B5B3AE"}
            if isinstance(photo, dict)
            else None
        ),
    }


@router.get("/api/v2/my_orders")
async def vinted_sold_orders(
    request: Request,
    user_id: Annotated[int, Depends(vinted.current_member)],
    type: Annotated[Literal["sold", "purchased"], Query()] = "sold",
    status: Annotated[Literal["all", "in_progress", "completed", "canceled"], Query()] = "all",
    page: Annotated[int, Query(ge=1)] = 1,
    per_page: Annotated[int, Query(ge=1, le=vinted.PER_PAGE_MAX)] = 20,
) -> JsonDict:
    """The member's orders, newest first (what the plugin's sale-check task reads): `my_orders` entries
    name the transaction, its title, price, status and photo; `pagination` as Vinted pages lists."""
    state = state_of(request)
    async with state.lock:
        sales = [
            sale
            for sale in reversed(state.orders.vinted_sales)
            if (sale["seller_id"] if type == "sold" else sale["buyer_id"]) == user_id
            and status in ("all", "in_progress")
        ]
        orders = [vinted_order_view(state, sale) for sale in sales]
    start = (page - 1) * per_page
    total_pages = max((len(orders) + per_page - 1) // per_page, 1)
    return {
        "my_orders": orders[start : start + per_page],
        "pagination": {
            "current_page": page,
            "total_pages": total_pages,
            "total_entries": len(orders),
            "per_page": per_page,
        },
        "code": 0,
    }


@router.get("/api/v2/transactions/{transaction_id}", response_model=None)
async def vinted_transaction(
    transaction_id: int, request: Request, user_id: Annotated[int, Depends(vinted.current_member)]
) -> JsonDict:
    """One transaction as its seller or buyer sees it: the order's items (ids, titles, prices)."""
    state = state_of(request)
    async with state.lock:
        sale = next(
            (
                sale
                for sale in state.orders.vinted_sales
                if sale["transaction_id"] == transaction_id
                and user_id in (sale["seller_id"], sale["buyer_id"])
            ),
            None,
        )
        if sale is None:
            raise vinted.VintedApiError(404, 404, "Not found", "not_found")
        item = state.vinted.items.get(sale["item_id"])
        item_view = vinted.item_view(state, item) if item is not None else {"id": sale["item_id"]}
    price = _vinted_amount(sale)
    return {
        "transaction": {
            "id": sale["transaction_id"],
            "status": 230,
            "status_title": _VINTED_SOLD_STATUS,
            "msg_thread_id": sale["conversation_id"],
            "item_id": sale["item_id"],
            "seller": {"id": sale["seller_id"]},
            "buyer": {"id": sale["buyer_id"]},
            "offer": {"price": price},
            "order": {
                "items": [
                    {
                        "id": sale["item_id"],
                        "title": item_view.get("title", sale["title"]),
                        "price": price,
                        "photos": item_view.get("photos", []),
                    }
                ]
            },
            "status_updated_at": _vinted_date(sale["updated_at_ts"]),
        },
        "code": 0,
    }
