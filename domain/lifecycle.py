"""The product lifecycle: statuses as values and one pure transition function over them.

    DRAFT ──▶ PUBLISHED ──▶ SOLD ──▶ ARCHIVED
                  └───────────────────▲

ARCHIVED is terminal. Nothing moves back to DRAFT. A deleted product does not move at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from domain.errors import InvalidTransition, NotFound, OutOfStock


class ProductStatus(StrEnum):
    #: Being written; not offered on any marketplace.
    DRAFT = "draft"
    #: Offered for sale (on zero or more marketplaces).
    PUBLISHED = "published"
    #: Sold; its other listings must be taken down.
    SOLD = "sold"
    #: Withdrawn for good; read-only from now on.
    ARCHIVED = "archived"


ALLOWED_TRANSITIONS: frozenset[tuple[ProductStatus, ProductStatus]] = frozenset(
    {
        (ProductStatus.DRAFT, ProductStatus.PUBLISHED),
        (ProductStatus.PUBLISHED, ProductStatus.SOLD),
        (ProductStatus.PUBLISHED, ProductStatus.ARCHIVED),
        (ProductStatus.SOLD, ProductStatus.ARCHIVED),
    }
)

#: Reaching these ends every live listing: a sold or archived product must not stay on sale anywhere.
DELISTING_STATUSES: frozenset[ProductStatus] = frozenset({ProductStatus.SOLD, ProductStatus.ARCHIVED})


@dataclass(frozen=True)
class LifecycleState:
    """What the lifecycle needs to know about a product."""

    status: ProductStatus
    stock_quantity: int
    deleted: bool
    published_at: datetime | None
    sold_at: datetime | None


@dataclass(frozen=True)
class StatusChange:
    """The outcome of an allowed transition: the new values to store and what must follow."""

    previous: ProductStatus
    status: ProductStatus
    published_at: datetime | None
    sold_at: datetime | None
    #: True when every live listing of the product must get a `delist` job in the same transaction.
    delist_due: bool


def change_status(state: LifecycleState, target: ProductStatus, *, now: datetime) -> StatusChange:
    """Move a product to `target`, or raise NotFound / InvalidTransition / OutOfStock (in that order)."""
    if state.deleted:
        raise NotFound("No such product.")
    if (state.status, target) not in ALLOWED_TRANSITIONS:
        raise InvalidTransition(
            f"A {state.status.value} product cannot become {target.value}.", field="status"
        )
    if target is ProductStatus.PUBLISHED and state.stock_quantity <= 0:
        raise OutOfStock("A product with no stock cannot be published.")
    published_at = now if target is ProductStatus.PUBLISHED else state.published_at
    sold_at = now if target is ProductStatus.SOLD else state.sold_at
    return StatusChange(
        previous=state.status,
        status=target,
        published_at=published_at,
        sold_at=sold_at,
        delist_due=target in DELISTING_STATUSES,
    )
