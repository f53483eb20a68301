"""How many worker processes a pool needs, by Little's law.

Little's law: the number of jobs in service L = λ · W, with λ the arrival rate (jobs per second) and W the
time one job holds a worker slot. A pool of processes each running `concurrency` jobs at once needs
L / concurrency processes to keep up; running them at a target utilisation below 1 leaves room for
bursts (queueing delay grows without bound as utilisation nears 1). A backlog already waiting adds the rate
needed to drain it within `drain_seconds`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Keep each slot busy at most this share of the time.
TARGET_UTILISATION = 0.7
#: A backlog should be gone within this many seconds.
DRAIN_SECONDS = 300.0


@dataclass(frozen=True)
class PoolLoad:
    """What was measured of one pool over a recent window."""

    #: job runs finished per second (in a steady state, the arrival rate)
    arrival_per_second: float
    #: mean seconds a run held a worker slot
    mean_run_seconds: float
    #: jobs waiting to be handed to a worker now (pending + queued)
    backlog: int
    #: jobs each process runs at once
    concurrency: int


def slots_in_use(load: PoolLoad) -> float:
    """L = λ · W: the slots the measured load keeps busy on average (backlog draining included)."""
    rate = load.arrival_per_second + load.backlog / DRAIN_SECONDS
    return rate * load.mean_run_seconds


def recommended_processes(load: PoolLoad, utilisation: float = TARGET_UTILISATION) -> int:
    """Worker processes the pool should run: never 0 while it has work or a backlog."""
    if load.concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    if not 0 < utilisation <= 1:
        raise ValueError("utilisation must be in (0, 1]")
    busy = slots_in_use(load)
    if busy <= 0:
        return 1 if load.backlog > 0 else 0
    return max(1, math.ceil(busy / (load.concurrency * utilisation)))
