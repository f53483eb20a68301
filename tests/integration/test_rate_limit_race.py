"""Eight OS processes race for one account's budget: no window ever holds more than the limit.

Each process hammers the same key for a few windows, asking for 1-3 slots at a time, and prints every
decision with Redis's timestamp of it. The log of grants is then checked against the rule itself (any window
`[t, t + window)` holds at most `limit` slots), every refusal against the grants live at its moment (it was
justified), and the sorted set left in Redis against the log.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from bisect import bisect_right
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

ROOT = Path(__file__).resolve().parents[2]
PROCESSES = 8
LIMIT = 40
WINDOW_SECONDS = 1
RUN_SECONDS = 3.5  # three windows and a half: slots expire and are taken again under contention
MICROSECONDS = 1_000_000

# argv: redis url, limiter key, ready counter key, start list key, limit, window, run seconds, seed.
# Prints one JSON list of [granted, slots, decided_at in Redis microseconds] per acquisition.
CHILD = """
import asyncio, json, random, sys, time
from datetime import UTC, datetime, timedelta
from redis.asyncio import Redis
from ops.adapters.rate_limit import SlidingWindowLimiter

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

async def main() -> None:
    url, key, ready, start, limit, window, seconds, seed = sys.argv[1:]
    rng = random.Random(int(seed))
    redis = Redis.from_url(url)
    limiter = SlidingWindowLimiter(redis, int(limit), int(window))
    records = []
    try:
        await redis.rpush(ready, 1)
        await redis.blpop([start], timeout=30)
        deadline = time.monotonic() + float(seconds)
        while time.monotonic() < deadline:
            slots = rng.randint(1, 3)
            reservation = await limiter.acquire(key, slots)
            at = (reservation.decided_at - EPOCH) // timedelta(microseconds=1)
            records.append([reservation.granted, slots, at])
            if not reservation.granted:
                await asyncio.sleep(rng.uniform(0, 0.003))
    finally:
        await redis.aclose()
    print(json.dumps(records))

asyncio.run(main())
"""


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


async def test_processes_racing_for_one_account_never_exceed_the_limit(redis: Redis, redis_url: str) -> None:
    prefix = f"test:{uuid.uuid4().hex}"
    key = f"{prefix}:ratelimit:{{vinted:{prefix}:a1}}"
    ready, start = f"{prefix}:ready", f"{prefix}:start"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CHILD,
            redis_url,
            key,
            ready,
            start,
            str(LIMIT),
            str(WINDOW_SECONDS),
            str(RUN_SECONDS),
            str(seed),
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for seed in range(PROCESSES)
    ]
    try:
        async with asyncio.timeout(15):
            # Start them together: every process is connected and waiting before the first acquisition.
            for _ in range(PROCESSES):
                await redis.blpop([ready])
            await redis.rpush(start, *range(PROCESSES))
            outputs = [await child.communicate() for child in children]
        for child, (_out, err) in zip(children, outputs, strict=True):
            assert child.returncode == 0, err.decode()
        decisions = [[(bool(g), int(s), int(at)) for g, s, at in json.loads(out)] for out, _err in outputs]

        seconds, microseconds = await redis.time()
        now = seconds * MICROSECONDS + microseconds
        stored = [int(score) for _member, score in await redis.zrange(key, 0, -1, withscores=True)]
    finally:
        for child in children:
            if child.returncode is None:
                child.kill()
                await child.wait()
        await redis.delete(key, ready, start)

    window = WINDOW_SECONDS * MICROSECONDS
    every = [decision for log in decisions for decision in log]
    granted = sorted(at for ok, slots, at in every if ok for _ in range(slots))
    refusals = [(slots, at) for ok, slots, at in every if not ok]

    # It really raced: several processes got slots, others were turned away, and slots came back.
    assert sum(1 for log in decisions if any(ok for ok, _slots, _at in log)) >= 2
    assert refusals
    assert len(granted) > 2 * LIMIT

    # The rule: a slot taken at t counts until t + window, so the (limit + 1)-th slot after any slot
    # must come at least one window later.
    crowded = [
        (granted[i], granted[i + LIMIT])
        for i in range(len(granted) - LIMIT)
        if granted[i + LIMIT] - granted[i] < window
    ]
    assert not crowded, f"more than {LIMIT} slots within one window: {crowded[:3]}"

    # Every refusal was justified: the slots live at its moment plus the ones it asked for exceed the
    # limit. (Grants in the very same microsecond may have come after it; counting them only eases this.)
    def live_at(moment: int) -> int:
        return bisect_right(granted, moment) - bisect_right(granted, moment - window)

    unjustified = [(slots, at) for slots, at in refusals if live_at(at) + slots <= LIMIT]
    assert not unjustified, f"refused with slots free: {unjustified[:3]}"

    # What Redis holds for the current window is exactly what the processes were told they got.
    assert Counter(at for at in stored if at > now - window) == Counter(
        at for at in granted if at > now - window
    )
