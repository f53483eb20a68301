"""Worker heartbeats in Redis: alive while the key lives, gone after its TTL, forgotten later."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from ops.adapters import heartbeats


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


async def test_a_beating_process_is_alive_and_one_that_stops_cleanly_leaves(redis: Redis) -> None:
    worker = heartbeats.WorkerBeat("ebay", "host-a", 4242, 10, time.time(), time.time())
    beating = asyncio.create_task(heartbeats.keep_beating(redis, worker, every=0.05))
    await asyncio.sleep(0.2)
    [seen] = await heartbeats.read_beats(redis, time.time())
    assert (seen.pool, seen.host, seen.pid, seen.concurrency, seen.alive) == (
        "ebay",
        "host-a",
        4242,
        10,
        True,
    )
    assert time.time() - seen.last_beat < 1
    beating.cancel()
    with pytest.raises(asyncio.CancelledError):
        await beating
    assert await heartbeats.read_beats(redis, time.time()) == []


async def test_a_process_that_died_shows_gone_then_is_forgotten(redis: Redis) -> None:
    worker = heartbeats.WorkerBeat("vinted", "host-b", 7, 4, 0.0, 0.0)
    now = time.time()
    await heartbeats.beat(redis, worker, now)
    assert 0 < await redis.ttl(f"{heartbeats.INDEX}:{worker.member}") <= heartbeats.TTL_SECONDS
    await redis.delete(f"{heartbeats.INDEX}:{worker.member}")  # what its TTL does when it stops beating
    [gone] = await heartbeats.read_beats(redis, now + heartbeats.TTL_SECONDS + 1)
    assert (gone.pool, gone.pid, gone.alive, gone.last_beat) == ("vinted", 7, False, now)
    assert await heartbeats.read_beats(redis, now + heartbeats.FORGET_SECONDS + 1) == []
