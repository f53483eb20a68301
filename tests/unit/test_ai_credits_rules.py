"""Billing periods and debits of AI credits (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain.ai_credits import NoAiCredits, credit_period, current_balance, debit


def _at(year: int, month: int, day: int, hour: int = 12) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


@pytest.mark.parametrize(
    ("anchor", "now", "start", "end"),
    [
        (_at(2026, 3, 15), _at(2026, 11, 20), _at(2026, 11, 15, 0), _at(2026, 12, 15, 0)),
        (_at(2026, 3, 15), _at(2026, 11, 10), _at(2026, 10, 15, 0), _at(2026, 11, 15, 0)),
        # Opened on the 31st: the billing date is the last day of shorter months.
        (_at(2026, 1, 31), _at(2027, 2, 28, 8), _at(2027, 2, 28, 0), _at(2027, 3, 31, 0)),
        (_at(2026, 1, 31), _at(2027, 3, 1), _at(2027, 2, 28, 0), _at(2027, 3, 31, 0)),
        # Across the new year.
        (_at(2026, 5, 20), _at(2027, 1, 5), _at(2026, 12, 20, 0), _at(2027, 1, 20, 0)),
    ],
)
def test_the_period_runs_from_one_billing_date_to_the_next(
    anchor: datetime, now: datetime, start: datetime, end: datetime
) -> None:
    period = credit_period(anchor, now)
    assert (period.start, period.end) == (start, end)


def test_a_balance_of_an_earlier_period_is_a_fresh_allowance() -> None:
    period = credit_period(_at(2026, 3, 15), _at(2026, 11, 20))
    stale = current_balance(monthly=20, remaining=0, period_start=_at(2026, 10, 15, 0), period=period)
    assert stale.remaining == 20
    current = current_balance(monthly=20, remaining=3, period_start=period.start, period=period)
    assert current.remaining == 3
    never = current_balance(monthly=500, remaining=None, period_start=None, period=period)
    assert never.remaining == 500


def test_a_debit_takes_one_credit_and_refuses_at_zero() -> None:
    period = credit_period(_at(2026, 3, 15), _at(2026, 11, 20))
    balance = current_balance(monthly=20, remaining=1, period_start=period.start, period=period)
    spent = debit(balance)
    assert spent.remaining == 0
    with pytest.raises(NoAiCredits) as refused:
        debit(spent)
    assert refused.value.code == "no_ai_credits" and "2026-12-15" in refused.value.detail
