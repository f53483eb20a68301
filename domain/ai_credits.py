"""AI credits: a tier's monthly allowance, spent one per description, renewed on the billing date.

A tenant's billing date is the day of the month its account was opened (the 31st falls on the last
day of shorter months). Credits are renewed lazily: the first debit or read after the boundary sees
the full allowance again, so no scheduled job is needed.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime

from domain.errors import DomainError

#: What one `generate_description` job costs.
CREDITS_PER_DESCRIPTION = 1


class NoAiCredits(DomainError):
    """The tenant's credits for this billing period are spent (answered 402)."""

    code = "no_ai_credits"


@dataclass(frozen=True)
class CreditPeriod:
    """One billing period: credits spent in it count against one allowance."""

    start: datetime
    end: datetime


def _boundary(year: int, month: int, anchor: datetime) -> datetime:
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return datetime(year, month, day, tzinfo=UTC)


def _shift(year: int, month: int, months: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + months
    return index // 12, index % 12 + 1


def credit_period(anchor: datetime, now: datetime) -> CreditPeriod:
    """The billing period containing `now`, for an account opened at `anchor` (both timezone-aware)."""
    now = now.astimezone(UTC)
    anchor = anchor.astimezone(UTC)
    start = _boundary(now.year, now.month, anchor)
    if start > now:
        start = _boundary(*_shift(now.year, now.month, -1), anchor)
    end = _boundary(*_shift(start.year, start.month, 1), anchor)
    return CreditPeriod(start=start, end=end)


@dataclass(frozen=True)
class CreditBalance:
    """What a tenant may still spend in the current period."""

    monthly: int
    remaining: int
    period: CreditPeriod


def current_balance(
    *, monthly: int, remaining: int | None, period_start: datetime | None, period: CreditPeriod
) -> CreditBalance:
    """The balance now: the stored one if it belongs to this period, else a fresh allowance."""
    if remaining is None or period_start is None or period_start < period.start:
        return CreditBalance(monthly=monthly, remaining=monthly, period=period)
    return CreditBalance(monthly=monthly, remaining=max(0, min(remaining, monthly)), period=period)


def debit(balance: CreditBalance) -> CreditBalance:
    """Spend the credits of one description, or raise NoAiCredits when too few are left."""
    if balance.remaining < CREDITS_PER_DESCRIPTION:
        raise NoAiCredits(
            f"Your {balance.monthly} AI credits for this month are spent; they renew on "
            f"{balance.period.end.date().isoformat()}."
        )
    return CreditBalance(balance.monthly, balance.remaining - CREDITS_PER_DESCRIPTION, balance.period)
