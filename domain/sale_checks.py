"""How often each connected account's sales are checked, so a shared daily budget lasts the whole day.

eBay and Etsy count calls per application per day, whichever seller they are for. The checks share that
budget: while it is ample every account is checked every `base_seconds`; once the accounts' checks at that
pace would spend more than what is left today, the interval stretches so that what is left is spread over
the hours left. The stretch starts as soon as the pace would overrun, never once the budget is spent; and
spending never runs ahead of an even ramp over the day (`spendable_now`), so no burst spends it early.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def seconds_left_today(now: datetime) -> float:
    """Seconds until the budget's day (UTC) ends."""
    midnight = (now.astimezone(UTC) + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max((midnight - now).total_seconds(), 1.0)


def paced_interval(
    *,
    base_seconds: float,
    accounts: int,
    calls_per_check: float,
    used: int,
    daily_budget: int,
    seconds_left: float,
) -> float:
    """Seconds between two checks of one account: `base_seconds`, or longer so the budget lasts the day."""
    remaining = daily_budget - used
    if remaining <= 0:
        return seconds_left  # nothing left today: the next check is tomorrow
    wanted = max(accounts, 1) * calls_per_check * seconds_left / base_seconds
    if wanted <= remaining:
        return base_seconds
    return max(accounts, 1) * calls_per_check * seconds_left / remaining


def budget_day(now: datetime) -> str:
    """The UTC day a call counts against (the key of the day's counter)."""
    return now.astimezone(UTC).strftime("%Y%m%d")


def burst_allowance(daily_budget: int) -> int:
    """Calls that may run ahead of the day's even spread (a few checks at once when the day starts)."""
    return max(1, daily_budget // 50)


def spendable_now(*, daily_budget: int, used: int, now: datetime) -> int:
    """Calls the checks may make right now: spending follows an even ramp over the day plus a small burst.

    At any moment of the day no more than `budget * elapsed / day + burst` calls are spent, so the budget is
    spread over the whole day and never exceeded: due checks simply wait their turn.
    """
    elapsed = 86_400 - seconds_left_today(now)
    ramp = int(daily_budget * elapsed / 86_400) + burst_allowance(daily_budget)
    return max(min(ramp, daily_budget) - used, 0)


def vinted_check_interval(*, base_seconds: float, window_seconds: float, share: int) -> float:
    """Seconds between two sale checks of one Vinted member: never faster than its share of the window.

    `share` checks per window at most (each at least one request of the member's budget), and never more
    often than `base_seconds`: 12 minutes with the defaults (2 h / 10).
    """
    if share <= 0:
        raise ValueError("a Vinted sale check needs a share of at least 1")
    return max(base_seconds, window_seconds / share)
