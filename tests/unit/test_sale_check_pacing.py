"""The sale checks' pace: the base interval while the budget is ample, stretched before it runs out."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain.sale_checks import budget_day, paced_interval, seconds_left_today, spendable_now


def test_an_ample_budget_keeps_the_base_interval() -> None:
    interval = paced_interval(
        base_seconds=120, accounts=10, calls_per_check=1, used=0, daily_budget=10_000, seconds_left=86_400
    )
    assert interval == 120


def test_a_tight_budget_spreads_what_is_left_over_the_hours_left() -> None:
    interval = paced_interval(
        base_seconds=60, accounts=200, calls_per_check=1, used=100, daily_budget=500, seconds_left=43_200
    )
    # 400 calls left for 200 accounts over 12 hours: each account every 6 hours.
    assert interval == pytest.approx(200 * 43_200 / 400)
    calls_at_that_pace = 200 * 43_200 / interval
    assert calls_at_that_pace == pytest.approx(400)


def test_a_spent_budget_waits_for_tomorrow() -> None:
    assert paced_interval(
        base_seconds=60, accounts=5, calls_per_check=1, used=500, daily_budget=500, seconds_left=3_600
    ) == pytest.approx(3_600)


def test_the_day_is_utc() -> None:
    now = datetime(2026, 12, 2, 23, 30, tzinfo=UTC)
    assert seconds_left_today(now) == pytest.approx(1_800)
    assert budget_day(now) == "20261202"


def test_spending_follows_an_even_ramp_over_the_day_and_stops_at_the_budget() -> None:
    midnight = datetime(2026, 12, 2, tzinfo=UTC)
    assert spendable_now(daily_budget=500, used=0, now=midnight) == 10  # the burst only
    noon = midnight.replace(hour=12)
    assert spendable_now(daily_budget=500, used=0, now=noon) == 260
    assert spendable_now(daily_budget=500, used=260, now=noon) == 0
    late = midnight.replace(hour=23, minute=59)
    assert spendable_now(daily_budget=500, used=499, now=late) == 1
    assert spendable_now(daily_budget=500, used=500, now=late) == 0
