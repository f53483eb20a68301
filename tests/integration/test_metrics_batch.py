"""A worker's job figures, batched in memory: what reaches Redis is what one write per job writes."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from ops.adapters import metrics_store
from ops.adapters.metrics_store import JobMetricsBatch

RUNS = [
    ("ebay", "publish", "succeeded", 0.02),
    ("ebay", "publish", "succeeded", 0.3),
    ("ebay", "delist", "failed", 4.0),
    ("etsy", "publish", "retrying", 700.0),
]


async def _figures(redis: Redis) -> dict[str, dict[str, float]]:
    keys = sorted(key.decode() for key in await redis.keys(f"{metrics_store.JOBS_TOTAL.rsplit(':', 1)[0]}:*"))
    figures = {}
    for key in keys:
        figures[key] = {field.decode(): float(value) for field, value in (await redis.hgetall(key)).items()}
    return figures


async def test_a_flushed_batch_writes_the_same_figures_as_one_write_per_job(redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    try:
        for run in RUNS:
            await metrics_store.record_job(redis, *run)
        one_by_one = await _figures(redis)
        await redis.flushdb()

        batch = JobMetricsBatch()
        for run in RUNS:
            batch.record(*run)
        assert await _figures(redis) == {}  # nothing written before the flush
        await batch.flush(redis)
        batched = await _figures(redis)
        assert batched.keys() == one_by_one.keys()
        for key, fields in one_by_one.items():
            assert batched[key] == pytest.approx(fields), key
        # A second flush with nothing new writes nothing more.
        await batch.flush(redis)
        assert await _figures(redis) == batched
    finally:
        await redis.aclose()


async def test_figures_a_failed_flush_could_not_write_are_written_by_the_next(redis_url: str) -> None:
    gone = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    redis = Redis.from_url(redis_url)
    try:
        batch = JobMetricsBatch()
        batch.record("ebay", "publish", "succeeded", 0.02)
        with pytest.raises(Exception):  # noqa: B017, PT011 - whatever the client raises for a dead server
            await batch.flush(gone)
        batch.record("ebay", "publish", "succeeded", 0.02)
        await batch.flush(redis)
        totals = await redis.hgetall(metrics_store.JOBS_TOTAL)
        assert totals == {b"ebay|publish|succeeded": b"2"}
    finally:
        await gone.aclose()
        await redis.aclose()
