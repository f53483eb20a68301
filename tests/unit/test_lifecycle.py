from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from domain.errors import InvalidTransition, NotFound, OutOfStock
from domain.lifecycle import LifecycleState, ProductStatus, change_status

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
EARLIER = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)

ALLOWED = {
    (ProductStatus.DRAFT, ProductStatus.PUBLISHED),
    (ProductStatus.PUBLISHED, ProductStatus.SOLD),
    (ProductStatus.PUBLISHED, ProductStatus.ARCHIVED),
    (ProductStatus.SOLD, ProductStatus.ARCHIVED),
}
ALL_PAIRS = list(itertools.product(ProductStatus, repeat=2))


def state(status: ProductStatus, *, stock: int = 1, deleted: bool = False) -> LifecycleState:
    published = None if status is ProductStatus.DRAFT else EARLIER
    return LifecycleState(
        status=status, stock_quantity=stock, deleted=deleted, published_at=published, sold_at=None
    )


def test_the_table_has_sixteen_pairs() -> None:
    assert len(ALL_PAIRS) == 16


@pytest.mark.parametrize(("source", "target"), sorted(ALLOWED))
def test_allowed_transitions_move_the_product(source: ProductStatus, target: ProductStatus) -> None:
    change = change_status(state(source), target, now=NOW)
    assert change.previous is source
    assert change.status is target


@pytest.mark.parametrize(("source", "target"), [pair for pair in ALL_PAIRS if pair not in ALLOWED])
def test_every_other_pair_is_an_invalid_transition(source: ProductStatus, target: ProductStatus) -> None:
    with pytest.raises(InvalidTransition) as raised:
        change_status(state(source), target, now=NOW)
    assert raised.value.code == "invalid_transition"
    assert source.value in raised.value.detail
    assert target.value in raised.value.detail


def test_publishing_sets_published_at_and_needs_no_delist() -> None:
    change = change_status(state(ProductStatus.DRAFT), ProductStatus.PUBLISHED, now=NOW)
    assert change.published_at == NOW
    assert change.sold_at is None
    assert change.delist_due is False


def test_selling_sets_sold_at_keeps_published_at_and_delists() -> None:
    change = change_status(state(ProductStatus.PUBLISHED), ProductStatus.SOLD, now=NOW)
    assert change.sold_at == NOW
    assert change.published_at == EARLIER
    assert change.delist_due is True


@pytest.mark.parametrize("source", [ProductStatus.PUBLISHED, ProductStatus.SOLD])
def test_archiving_delists_and_keeps_timestamps(source: ProductStatus) -> None:
    sold_at = EARLIER if source is ProductStatus.SOLD else None
    before = LifecycleState(
        status=source, stock_quantity=0, deleted=False, published_at=EARLIER, sold_at=sold_at
    )
    change = change_status(before, ProductStatus.ARCHIVED, now=NOW)
    assert change.delist_due is True
    assert change.published_at == EARLIER
    assert change.sold_at == sold_at


def test_publishing_without_stock_is_out_of_stock() -> None:
    with pytest.raises(OutOfStock):
        change_status(state(ProductStatus.DRAFT, stock=0), ProductStatus.PUBLISHED, now=NOW)


def test_invalid_transition_wins_over_out_of_stock() -> None:
    with pytest.raises(InvalidTransition):
        change_status(state(ProductStatus.SOLD, stock=0), ProductStatus.PUBLISHED, now=NOW)


def test_selling_the_last_item_is_allowed_with_no_stock_left() -> None:
    change = change_status(state(ProductStatus.PUBLISHED, stock=0), ProductStatus.SOLD, now=NOW)
    assert change.status is ProductStatus.SOLD


@pytest.mark.parametrize(("source", "target"), ALL_PAIRS)
def test_a_deleted_product_never_moves(source: ProductStatus, target: ProductStatus) -> None:
    with pytest.raises(NotFound):
        change_status(state(source, deleted=True), target, now=NOW)
