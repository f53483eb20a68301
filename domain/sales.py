"""Sales as values: where a sale came from, and what it does to the stock (a pure rule).

A sale is recorded whatever the stock says: a buyer paid. When the stock was already gone the sale takes
nothing and the product is oversold (two marketplaces sold the last unit before either came down).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


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
