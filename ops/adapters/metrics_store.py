"""Platform-wide metrics kept in Redis so every process adds to them and `/metrics` reads them whole.

Prometheus scrapes the gateway only; workers and the dispatcher run elsewhere. Each writes its counters
into a few Redis hashes (one round trip per job), and the gateway turns them into metric families.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.asyncio import Redis

_PREFIX = "stoflow:metrics"
JOBS_TOTAL = f"{_PREFIX}:jobs_total"
JOB_DURATION = f"{_PREFIX}:job_duration"
RATE_LIMIT_REJECTIONS = f"{_PREFIX}:rate_limit_rejections"
QUEUE_DEPTH = f"{_PREFIX}:queue_depth"
#: The unfinished rows per platform and state the dispatcher counted, and the oldest pending row's time.
QUEUE_STATES = f"{_PREFIX}:queue_states"
#: One hash per minute (`{MINUTE}:{epoch minute}`): runs finished, failed, seconds spent, and queue depth.
MINUTE = f"{_PREFIX}:minute"
#: Minute hashes outlive the console's hour of history by a margin.
MINUTE_TTL_SECONDS = 2 * 3600
UNFINISHED_STATES = ("pending", "queued", "running", "waiting_plugin", "rate_limited")
DURATION_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


def minute_of(epoch_seconds: float) -> int:
    return int(epoch_seconds // 60)


def minute_key(minute: int) -> str:
    return f"{MINUTE}:{minute}"


async def record_job(redis: Redis, platform: str, action: str, outcome: str, seconds: float) -> None:
    """Count one finished job run and its duration: the one place every run's figures are bumped."""
    bucket = next((str(edge) for edge in DURATION_BUCKETS if seconds <= edge), "+Inf")
    minute = minute_key(minute_of(time.time()))
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hincrby(JOBS_TOTAL, f"{platform}|{action}|{outcome}", 1)
        pipe.hincrby(JOB_DURATION, f"{platform}|bucket|{bucket}", 1)
        pipe.hincrby(JOB_DURATION, f"{platform}|count", 1)
        pipe.hincrbyfloat(JOB_DURATION, f"{platform}|sum", seconds)
        pipe.hincrby(minute, f"{platform}|finished", 1)
        if outcome == "failed":
            pipe.hincrby(minute, f"{platform}|failed", 1)
        pipe.hincrbyfloat(minute, f"{platform}|seconds", seconds)
        pipe.expire(minute, MINUTE_TTL_SECONDS)
        await pipe.execute()


class JobMetricsBatch:
    """A worker's job figures, summed in memory and written to Redis in one round trip per `flush`.

    `record_job` costs a Redis round trip per job; a worker draining a backlog finishes hundreds a second.
    The worker flushes every `FLUSH_SECONDS` (and when it stops), so `/metrics` lags by that much at most.
    """

    FLUSH_SECONDS = 0.25

    def __init__(self) -> None:
        self._jobs: dict[str, int] = {}
        self._durations: dict[str, float] = {}
        self._minutes: dict[str, dict[str, float]] = {}

    def record(self, platform: str, action: str, outcome: str, seconds: float) -> None:
        """Count one finished job run and its duration (as `record_job`), until the next flush."""
        bucket = next((str(edge) for edge in DURATION_BUCKETS if seconds <= edge), "+Inf")
        jobs_key = f"{platform}|{action}|{outcome}"
        self._jobs[jobs_key] = self._jobs.get(jobs_key, 0) + 1
        durations = self._durations
        for field_name, amount in (
            (f"{platform}|bucket|{bucket}", 1.0),
            (f"{platform}|count", 1.0),
            (f"{platform}|sum", seconds),
        ):
            durations[field_name] = durations.get(field_name, 0.0) + amount
        minute = self._minutes.setdefault(minute_key(minute_of(time.time())), {})
        for field_name, amount in (
            (f"{platform}|finished", 1.0),
            (f"{platform}|failed", 1.0 if outcome == "failed" else 0.0),
            (f"{platform}|seconds", seconds),
        ):
            minute[field_name] = minute.get(field_name, 0.0) + amount

    async def flush(self, redis: Redis) -> None:
        """Write what was counted since the last flush; on an error the figures are kept for the next one."""
        if not self._jobs:
            return
        jobs, durations, minutes = self._jobs, self._durations, self._minutes
        self._jobs, self._durations, self._minutes = {}, {}, {}
        try:
            async with redis.pipeline(transaction=False) as pipe:
                for field_name, count in jobs.items():
                    pipe.hincrby(JOBS_TOTAL, field_name, count)
                for field_name, amount in durations.items():
                    if field_name.endswith("|sum"):
                        pipe.hincrbyfloat(JOB_DURATION, field_name, amount)
                    else:
                        pipe.hincrby(JOB_DURATION, field_name, int(amount))
                for key, figures in minutes.items():
                    for field_name, amount in figures.items():
                        if field_name.endswith("|seconds"):
                            pipe.hincrbyfloat(key, field_name, amount)
                        elif amount:
                            pipe.hincrby(key, field_name, int(amount))
                    pipe.expire(key, MINUTE_TTL_SECONDS)
                await pipe.execute()
        except BaseException:
            self._merge(jobs, durations, minutes)
            raise

    def _merge(
        self, jobs: dict[str, int], durations: dict[str, float], minutes: dict[str, dict[str, float]]
    ) -> None:
        for field_name, count in jobs.items():
            self._jobs[field_name] = self._jobs.get(field_name, 0) + count
        for field_name, amount in durations.items():
            self._durations[field_name] = self._durations.get(field_name, 0.0) + amount
        for key, figures in minutes.items():
            minute = self._minutes.setdefault(key, {})
            for field_name, amount in figures.items():
                minute[field_name] = minute.get(field_name, 0.0) + amount


async def record_failures(redis: Redis, platform: str, count: int) -> None:
    """Count jobs that failed outside a worker run (the dispatcher's sweep: a plugin that never came)."""
    minute = minute_key(minute_of(time.time()))
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hincrby(minute, f"{platform}|failed", count)
        pipe.expire(minute, MINUTE_TTL_SECONDS)
        await pipe.execute()


async def record_rate_limit_rejection(redis: Redis, platform: str) -> None:
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hincrby(RATE_LIMIT_REJECTIONS, platform, 1)
        await pipe.execute()


@dataclass
class QueueStates:
    """Unfinished rows of one platform, as the dispatcher last counted them."""

    counts: dict[str, int] = field(default_factory=dict)
    #: epoch seconds of the oldest pending row, None when nothing is pending
    oldest_pending_at: float | None = None

    def add(self, status: str, count: int, oldest_at: float | None) -> None:
        self.counts[status] = self.counts.get(status, 0) + count
        if status == "pending" and oldest_at is not None:
            known = self.oldest_pending_at
            self.oldest_pending_at = oldest_at if known is None else min(known, oldest_at)

    @property
    def depth(self) -> int:
        return sum(self.counts.get(status, 0) for status in UNFINISHED_STATES)


async def set_queue_states(redis: Redis, states: dict[str, QueueStates], now: float) -> None:
    """Publish the dispatcher's cross-tenant counts (and this minute's depth for the console's charts)."""
    mapping: dict[str, str] = {"updated_at": repr(now)}
    for platform, platform_states in states.items():
        for status in UNFINISHED_STATES:
            mapping[f"{platform}|{status}"] = str(platform_states.counts.get(status, 0))
        mapping[f"{platform}|oldest_pending_at"] = repr(platform_states.oldest_pending_at or 0.0)
    minute = minute_key(minute_of(now))
    async with redis.pipeline(transaction=False) as pipe:
        pipe.delete(QUEUE_STATES)
        pipe.hset(QUEUE_STATES, mapping=mapping)
        pipe.hset(QUEUE_DEPTH, mapping={name: str(value.depth) for name, value in states.items()})
        pipe.hset(minute, mapping={f"{name}|depth": str(value.depth) for name, value in states.items()})
        pipe.expire(minute, MINUTE_TTL_SECONDS)
        await pipe.execute()


async def read_queue_states(redis: Redis) -> tuple[dict[str, QueueStates], float | None]:
    """The dispatcher's last counts per platform, and when it took them (None: never)."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(QUEUE_STATES)
        (answer,) = await pipe.execute()
    raw = _decode(answer)
    states: dict[str, QueueStates] = {}
    for key, value in raw.items():
        platform, _, name = key.partition("|")
        if not name:
            continue
        entry = states.setdefault(platform, QueueStates())
        if name == "oldest_pending_at":
            entry.oldest_pending_at = float(value) or None
        else:
            entry.counts[name] = int(value)
    updated = raw.get("updated_at")
    return states, float(updated) if updated else None


async def read_minutes(redis: Redis, now: float, count: int) -> list[dict[str, str]]:
    """The last `count` minute hashes, oldest first (the current, partial minute last)."""
    last = minute_of(now)
    async with redis.pipeline(transaction=False) as pipe:
        for minute in range(last - count + 1, last + 1):
            pipe.hgetall(minute_key(minute))
        answers = await pipe.execute()
    return [_decode(answer) for answer in answers]


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
