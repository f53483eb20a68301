"""Server-side SVG for the console: sparklines of the last hour and budget bars (no JavaScript)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Sparkline:
    width: int
    height: int
    #: the polyline's `points` attribute (numbers only)
    points: str
    peak: int
    last: int


def sparkline(values: Sequence[int | None], width: int = 180, height: int = 32) -> Sparkline:
    """A polyline over the values, oldest left; missing minutes are drawn at 0."""
    numbers = [value or 0 for value in values] or [0]
    peak = max(numbers)
    step = width / max(len(numbers) - 1, 1)
    usable = height - 2
    points = " ".join(
        f"{index * step:.1f},{height - 1 - (value / peak * usable if peak else 0):.1f}"
        for index, value in enumerate(numbers)
    )
    return Sparkline(width, height, points, peak, numbers[-1])


@dataclass(frozen=True)
class Bar:
    width: int
    height: int
    filled: int
    #: share of the budget spent, 0..100
    percent: int
    #: "ok", "high" (past 75 %) or "full"
    level: str


def budget_bar(used: int, limit: int, width: int = 220, height: int = 14) -> Bar:
    """A horizontal bar of `used` out of `limit`."""
    share = min(used / limit, 1.0) if limit > 0 else 1.0
    level = "full" if share >= 1 else "high" if share > 0.75 else "ok"
    return Bar(width, height, round(width * share), round(share * 100), level)
