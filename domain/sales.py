"""Sales as values: where a sale came from, and what it does to the stock (a pure rule).

A sale is recorded whatever the stock says: a buyer paid. When the stock was already gone the sale takes
nothing and the product is oversold (two marketplaces sold the last unit before either came down).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class SaleSource(StrEnum):
    #: the user marked the product sold
    USER = "user"
    #: the browser plugin saw the sale on Vinted
    PLUGIN = "plugin"
    #: a marketplace pushed the order to us
    WEBHOOK = "webhook"
    #: the periodic sale check of a connected account found the order
    POLL = "poll"


@dataclass(frozen=True)
class StockAfterSale:
    """What one sale leaves of the stock."""

    #: the sale took at least one unit (False: the stock was already gone)
    took_stock: bool
    stock_after: int
    #: this sale took the last unit: the product becomes SOLD and every other listing comes down
    sold_out: bool
    #: more was sold than there was stock
    oversold: bool


def apply_sale(stock: int, quantity: int) -> StockAfterSale:
    """Take `quantity` units out of `stock`; the stock never goes below zero."""
    if quantity <= 0:
        raise ValueError("a sale takes at least one unit")
    if stock <= 0:
        return StockAfterSale(took_stock=False, stock_after=0, sold_out=False, oversold=True)
    after = max(stock - quantity, 0)
    return StockAfterSale(took_stock=True, stock_after=after, sold_out=after == 0, oversold=quantity > stock)


@dataclass(frozen=True)
class OrderLine:
    """One line of a marketplace order: which listing sold, how many, under which sale key."""

    platform: str
    #: the marketplace's listing id (eBay legacy item id, Etsy listing id, Vinted item id)
    external_id: str
    #: the sale's key on this platform (see `sale_key`)
    order_id: str
    quantity: int
    sold_at: datetime | None = None


def sale_key(order_id: str, line_id: str | None, lines_in_order: int) -> str:
    """The key a sale is recorded under: the order id, plus the line id when the order has several lines.

    The webhook and the sale check read the same order, so both give the same key: seen twice, sold once.
    """
    if lines_in_order <= 1 or not line_id:
        return order_id
    return f"{order_id}/{line_id}"


def _quantity(value: object) -> int:
    return value if isinstance(value, int) and value > 0 else 1


def ebay_order_lines(order: Mapping[str, Any]) -> list[OrderLine]:
    """The lines of an eBay order (a notification's `data`, or one order of getOrders)."""
    order_id = str(order.get("orderId") or "")
    items = order.get("lineItems")
    if not order_id or not isinstance(items, list):
        return []
    return [
        OrderLine(
            platform="ebay",
            external_id=str(item["legacyItemId"]),
            order_id=sale_key(order_id, str(item.get("lineItemId") or ""), len(items)),
            quantity=_quantity(item.get("quantity")),
        )
        for item in items
        if isinstance(item, Mapping) and item.get("legacyItemId")
    ]


def etsy_receipt_lines(receipt: Mapping[str, Any]) -> list[OrderLine]:
    """The lines of a paid Etsy receipt (getShopReceipts); an unpaid one sells nothing yet."""
    receipt_id = str(receipt.get("receipt_id") or "")
    transactions = receipt.get("transactions")
    if not receipt_id or not isinstance(transactions, list) or receipt.get("is_paid") is False:
        return []
    return [
        OrderLine(
            platform="etsy",
            external_id=str(line["listing_id"]),
            order_id=sale_key(receipt_id, str(line.get("transaction_id") or ""), len(transactions)),
            quantity=_quantity(line.get("quantity")),
        )
        for line in transactions
        if isinstance(line, Mapping) and line.get("listing_id")
    ]


def announced_by(line: OrderLine, hints: list[str]) -> bool:
    """Whether a webhook announced this line's order (its key before any `/line` suffix)."""
    return line.order_id.split("/", 1)[0] in hints


#: A Vinted order in one of these `transaction_user_status`es sold nothing (cancelled, refunded).
VINTED_FAILED_STATUSES = frozenset({"failed", "canceled", "cancelled"})


@dataclass(frozen=True)
class VintedSoldOrder:
    """One entry of a member's sold orders: the transaction and the title of what it sold."""

    transaction_id: str
    title: str


def vinted_sold_orders(page: Mapping[str, Any]) -> list[VintedSoldOrder]:
    """The orders of a `GET /api/v2/my_orders?type=sold` page that sold something, newest first.

    Vinted's order list names each order by `transaction_id` (with its title, price, status text, date
    and photo) but not the item it sold: that is read from the transaction itself.
    """
    orders = page.get("my_orders")
    if not isinstance(orders, list):
        return []
    return [
        VintedSoldOrder(transaction_id=str(order["transaction_id"]), title=str(order.get("title") or ""))
        for order in orders
        if isinstance(order, Mapping)
        and order.get("transaction_id")
        and str(order.get("transaction_user_status") or "") not in VINTED_FAILED_STATUSES
    ]


def same_title(order_title: str, listed_title: str) -> bool:
    """Whether an order's title is the one we listed (Vinted shows it as sent, whitespace aside)."""
    return " ".join(order_title.split()).casefold() == " ".join(listed_title.split()).casefold()


def vinted_transaction_lines(body: Mapping[str, Any]) -> list[OrderLine]:
    """The items of one Vinted transaction (`GET /api/v2/transactions/{id}`), one line each.

    A bundle sells several items in one transaction: each is its own sale, keyed `transaction/item`.
    """
    transaction = body.get("transaction")
    if not isinstance(transaction, Mapping) or not transaction.get("id"):
        return []
    transaction_id = str(transaction["id"])
    order = transaction.get("order")
    items = order.get("items") if isinstance(order, Mapping) else None
    item_ids = (
        [str(item["id"]) for item in items if isinstance(item, Mapping) and item.get("id")]
        if isinstance(items, list)
        else []
    )
    if not item_ids and transaction.get("item_id"):
        item_ids = [str(transaction["item_id"])]
    return [
        OrderLine(
            platform="vinted",
            external_id=item_id,
            order_id=sale_key(transaction_id, item_id, len(item_ids)),
            quantity=1,
        )
        for item_id in item_ids
    ]
