"""Sales as the API shows them, with the outcome of every job each sale caused."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel

from persistence.tenant_models import Sale


class SaleOutcome(BaseModel):
    """One job a sale caused on another marketplace, with its current status."""

    platform: str
    action: Literal["delist", "update"]
    job_id: uuid.UUID
    status: str


class SaleOut(BaseModel):
    id: int
    product_id: int
    platform: str
    order_id: str
    quantity: int
    sold_at: datetime
    detected_at: datetime
    source: Literal["user", "plugin", "webhook", "poll"]
    #: False when the stock was already gone (the product is oversold)
    took_stock: bool
    outcomes: list[SaleOutcome]

    @classmethod
    def of(cls, sale: Sale, outcomes: list[dict[str, Any]]) -> SaleOut:
        return cls(
            id=sale.id,
            product_id=sale.product_id,
            platform=sale.platform,
            order_id=sale.order_id,
            quantity=sale.quantity,
            sold_at=sale.sold_at,
            detected_at=sale.detected_at,
            source=sale.source,
            took_stock=sale.took_stock,
            outcomes=[SaleOutcome(**outcome) for outcome in outcomes],
        )


class SalePage(BaseModel):
    items: list[SaleOut]
    next_cursor: str | None
