"""The console's server-side SVG figures."""

from __future__ import annotations

from gateway.console.charts import budget_bar, sparkline


def test_a_sparkline_puts_the_peak_at_the_top_and_zero_at_the_bottom() -> None:
    line = sparkline([0, 5, 10], width=100, height=22)
    assert line.points == "0.0,21.0 50.0,11.0 100.0,1.0"
    assert (line.peak, line.last) == (10, 10)


def test_missing_minutes_and_an_idle_hour_draw_a_flat_line() -> None:
    assert sparkline([None, None]).points.split(" ")[0].endswith(",31.0")
    assert sparkline([]).peak == 0


def test_a_budget_bar_fills_with_use_and_says_when_it_is_spent() -> None:
    assert (budget_bar(0, 40).filled, budget_bar(0, 40).level) == (0, "ok")
    assert (budget_bar(20, 40, width=200).filled, budget_bar(20, 40).percent) == (100, 50)
    assert budget_bar(31, 40).level == "high"
    assert (budget_bar(45, 40, width=200).filled, budget_bar(45, 40).level) == (200, "full")
