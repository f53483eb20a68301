"""Platform-wide metrics kept in Redis so every process adds to them and `/metrics` reads them whole.

Prometheus scrapes the gateway only; workers and the dispatcher run elsewhere. Each writes its counters
into a few Redis hashes (one round trip per job), and the gateway turns them into metric families.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.asyncio import Redis

_PREFIX = "stoflow:metrics"
JOBS_TOTAL = f"{_PREFIX}:jobs_total"
JOB_DURATION = f"{_PREFIX}:job_duration"
RATE_LIMIT_REJECTIONS = f"{_PREFIX}:rate_limit_rejections"
QUEUE_DEPTH = f"{_PREFIX}:queue_depth"
DURATION_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


async def record_job(redis: Redis, platform: str, action: str, outcome: str, seconds: float) -> None:
    """Count one finished job run and its duration."""
    bucket = next((str(edge) for edge in DURATION_BUCKETS if seconds <= edge), "+Inf")
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hincrby(JOBS_TOTAL, f"{platform}|{action}|{outcome}", 1)
        pipe.hincrby(JOB_DURATION, f"{platform}|bucket|{bucket}", 1)
        pipe.hincrby(JOB_DURATION, f"{platform}|count", 1)
        pipe.hincrbyfloat(JOB_DURATION, f"{platform}|sum", seconds)
        await pipe.execute()


async def record_rate_limit_rejection(redis: Redis, platform: str) -> None:
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hincrby(RATE_LIMIT_REJECTIONS, platform, 1)
        await pipe.execute()


async def set_queue_depth(redis: Redis, depth_by_platform: dict[str, int]) -> None:
    if depth_by_platform:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.hset(QUEUE_DEPTH, mapping={name: str(value) for name, value in depth_by_platform.items()})
            await pipe.execute()


class SnapshotCollector(Collector):
    """Metric families built from one read of the Redis hashes."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return iter(self._families)


def _decode(raw: dict[bytes, bytes]) -> dict[str, str]:
    return {key.decode(): value.decode() for key, value in raw.items()}


async def read_families(redis: Redis, platforms: Iterable[str]) -> list[Metric]:
    """Read every shared metric and return Prometheus metric families."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(JOBS_TOTAL)
        pipe.hgetall(JOB_DURATION)
        pipe.hgetall(RATE_LIMIT_REJECTIONS)
        pipe.hgetall(QUEUE_DEPTH)
        jobs_raw, duration_raw, rejections_raw, depth_raw = await pipe.execute()
    jobs = CounterMetricFamily(
        "stoflow_jobs", "Jobs finished by the worker pools.", labels=["platform", "action", "outcome"]
    )
    for key, value in sorted(_decode(jobs_raw).items()):
        platform, action, outcome = key.split("|", 2)
        jobs.add_metric([platform, action, outcome], float(value))
    rejections = CounterMetricFamily(
        "stoflow_rate_limit_rejections", "Jobs deferred for want of rate-limit slots.", labels=["platform"]
    )
    depth = GaugeMetricFamily("stoflow_queue_depth", "Unfinished jobs per platform.", labels=["platform"])
    rejection_values = _decode(rejections_raw)
    depth_values = _decode(depth_raw)
    for platform in platforms:
        rejections.add_metric([platform], float(rejection_values.get(platform, 0)))
        depth.add_metric([platform], float(depth_values.get(platform, 0)))
    duration = HistogramMetricFamily(
        "stoflow_job_duration_seconds", "Time a worker spent on one job run.", labels=["platform"]
    )
    durations = _decode(duration_raw)
    for platform in platforms:
        cumulative = 0.0
        buckets: list[tuple[str, float]] = []
        for edge in [*(str(edge) for edge in DURATION_BUCKETS), "+Inf"]:
            cumulative += float(durations.get(f"{platform}|bucket|{edge}", 0))
            buckets.append((edge, cumulative))
        duration.add_metric([platform], buckets, float(durations.get(f"{platform}|sum", 0)))
    return [jobs, rejections, depth, duration]
