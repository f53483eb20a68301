"""The Vinted sale check's pure rules: its pace, its setting, and how Vinted's answers are read."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from domain.sale_checks import vinted_check_interval
from domain.sales import (
    OrderLine,
    VintedSoldOrder,
    same_title,
    vinted_sold_orders,
    vinted_transaction_lines,
)
from ops.config.settings import Settings


def test_checks_are_paced_at_the_share_of_the_window_never_faster_than_the_base_interval() -> None:
    # The defaults: 2 h / 10 checks = 12 minutes, slower than SALE_CHECK_INTERVAL_SECONDS (2 minutes).
    assert vinted_check_interval(base_seconds=120, window_seconds=7200, share=10) == 720
    assert vinted_check_interval(base_seconds=1800, window_seconds=7200, share=10) == 1800
    assert vinted_check_interval(base_seconds=60, window_seconds=7200, share=40) == 180
    with pytest.raises(ValueError, match="share"):
        vinted_check_interval(base_seconds=60, window_seconds=7200, share=0)


def test_the_share_defaults_to_ten_and_may_not_exceed_the_rate_limit() -> None:
    assert Settings(stoflow_env="test").vinted_sale_check_share == 10
    assert Settings(stoflow_env="test", vinted_sale_check_share=40).vinted_sale_check_share == 40
    assert Settings(stoflow_env="test", vinted_sale_check_share=0).vinted_sale_check_share == 0
    with pytest.raises(ValidationError, match="VINTED_SALE_CHECK_SHARE"):
        Settings(stoflow_env="test", vinted_sale_check_share=41)
    with pytest.raises(ValidationError, match="VINTED_SALE_CHECK_SHARE"):
        Settings(stoflow_env="test", vinted_rate_limit=5, vinted_sale_check_share=6)
    with pytest.raises(ValidationError):
        Settings(stoflow_env="test", vinted_sale_check_share=-1)


MY_ORDERS = {
    "my_orders": [
        {
            "transaction_id": 17275949793,
            "conversation_id": 19929346371,
            "title": "Robe  Zara fleurie",
            "price": {"amount": "15.0", "currency_code": "EUR"},
            "status": "Commande payée : envoie le colis",
            "transaction_user_status": "needs_action",
            "date": "2026-12-03T08:01:02+01:00",
            "photo": {"id": 8000000001, "url": "https://images1.vinted.net/1.jpeg"},
        },
        {"transaction_id": 17275949700, "title": "Jean", "transaction_user_status": "failed"},
        {"transaction_id": 17275949600, "title": "Pull", "transaction_user_status": "completed"},
        {"title": "no transaction id"},
        "not an order",
    ],
    "pagination": {"current_page": 1, "total_pages": 1, "total_entries": 5},
}


def test_the_sold_orders_that_sold_something_are_read_newest_first() -> None:
    assert vinted_sold_orders(MY_ORDERS) == [
        VintedSoldOrder("17275949793", "Robe  Zara fleurie"),
        VintedSoldOrder("17275949600", "Pull"),
    ]
    assert vinted_sold_orders({"my_orders": None}) == []
    assert vinted_sold_orders({}) == []


def test_an_order_title_matches_the_listed_title_whatever_the_spacing_and_case() -> None:
    assert same_title("Robe  Zara fleurie", "robe zara Fleurie")
    assert not same_title("Robe Zara", "Robe Zara fleurie")


def test_a_transaction_names_the_items_it_sold_one_line_each() -> None:
    single = {"transaction": {"id": 17275949793, "order": {"items": [{"id": 4000000007}]}}}
    assert vinted_transaction_lines(single) == [OrderLine("vinted", "4000000007", "17275949793", 1)]
    bundle = {"transaction": {"id": 5, "order": {"items": [{"id": 1}, {"id": 2}, {"title": "no id"}]}}}
    assert vinted_transaction_lines(bundle) == [
        OrderLine("vinted", "1", "5/1", 1),
        OrderLine("vinted", "2", "5/2", 1),
    ]
    # An older transaction shape names only its item.
    assert vinted_transaction_lines({"transaction": {"id": 6, "item_id": 9}}) == [
        OrderLine("vinted", "9", "6", 1)
    ]
    assert vinted_transaction_lines({"transaction": {"order": {"items": [{"id": 1}]}}}) == []
    assert vinted_transaction_lines({"code": 0}) == []
