"""Little's law sizing of worker pools."""

from __future__ import annotations

import pytest

from domain.capacity import PoolLoad, recommended_processes, slots_in_use


def test_slots_in_use_is_arrival_rate_times_duration() -> None:
    assert slots_in_use(PoolLoad(2.0, 3.0, 0, 10)) == pytest.approx(6.0)


def test_a_pool_at_70_percent_of_its_slots_needs_one_more_process_past_it() -> None:
    # 7 busy slots on processes of 10 at 70 % is exactly one process; 7.1 needs two.
    assert recommended_processes(PoolLoad(7.0, 1.0, 0, 10)) == 1
    assert recommended_processes(PoolLoad(7.1, 1.0, 0, 10)) == 2


def test_a_backlog_adds_the_rate_that_drains_it_in_five_minutes() -> None:
    # 3,000 waiting jobs of 2 s: 10 jobs/s more, 20 slots, 3 processes of 10 at 70 %.
    assert recommended_processes(PoolLoad(0.0, 2.0, 3000, 10)) == 3


def test_an_idle_pool_needs_none_and_a_backlog_without_measurements_needs_one() -> None:
    assert recommended_processes(PoolLoad(0.0, 0.0, 0, 10)) == 0
    assert recommended_processes(PoolLoad(0.0, 0.0, 5, 10)) == 1


def test_nonsense_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="concurrency"):
        recommended_processes(PoolLoad(1.0, 1.0, 0, 0))
    with pytest.raises(ValueError, match="utilisation"):
        recommended_processes(PoolLoad(1.0, 1.0, 0, 10), utilisation=1.5)
