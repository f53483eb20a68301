"""The operator's figures, read from what the dispatcher and the workers already publish.

Cost per read, whatever the number of tenants: one Redis hash (the dispatcher's cross-tenant counts),
the last hour's minute hashes (one pipelined round trip), the heartbeat index, and for budgets one query
of `public.vinted_request_log` over the members active in the window. No tenant schema is read.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from prometheus_client.core import GaugeMetricFamily, Metric
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from domain.capacity import PoolLoad, recommended_processes
from ops.adapters import heartbeats, metrics_store
from ops.adapters.rate_limit import read_usage, vinted_member_key
from ops.config.settings import Settings
from persistence.operator_views import active_members

PLATFORMS = ("vinted", "ebay", "etsy", "ai")
#: Minutes of history in the charts.
HISTORY_MINUTES = 60
#: Minutes over which `jobs_per_minute` and the run time are averaged.
RATE_MINUTES = 5
#: Worker concurrency assumed for a pool with no live process to ask (`stoflow worker` default).
DEFAULT_CONCURRENCY = 10


@dataclass(frozen=True)
class PoolFigures:
    platform: str
    pending: int
    queued: int
    running: int
    waiting_plugin: int
    rate_limited: int
    failed_last_hour: int
    oldest_pending_seconds: float
    workers: int
    jobs_per_minute: float
    mean_run_seconds: float
    recommended_workers: int
    #: the queue depth (unfinished rows) per minute over the last hour, oldest first; None: no count
    depth_history: list[int | None]
    #: job runs finished per minute over the last hour, oldest first
    throughput_history: list[int]


@dataclass(frozen=True)
class Overview:
    pools: list[PoolFigures]
    #: when the dispatcher last counted the queues (None: it never did)
    counted_at: datetime | None
    workers: list[heartbeats.WorkerBeat]


def _int(minute: dict[str, str], field: str) -> int:
    return int(float(minute.get(field, 0)))


async def read_overview(redis: Redis) -> Overview:
    """Every pool's figures, from Redis only."""
    now = time.time()
    states, counted_at = await metrics_store.read_queue_states(redis)
    minutes = await metrics_store.read_minutes(redis, now, HISTORY_MINUTES)
    beats = await heartbeats.read_beats(redis, now)
    pools: list[PoolFigures] = []
    for platform in PLATFORMS:
        entry = states.get(platform, metrics_store.QueueStates())
        counts = entry.counts
        recent = minutes[-RATE_MINUTES:]
        finished = sum(_int(minute, f"{platform}|finished") for minute in recent)
        seconds = sum(float(minute.get(f"{platform}|seconds", 0)) for minute in recent)
        mean_run = seconds / finished if finished else 0.0
        alive = [beat for beat in beats if beat.pool == platform and beat.alive]
        concurrency = max((beat.concurrency for beat in alive), default=DEFAULT_CONCURRENCY)
        load = PoolLoad(
            arrival_per_second=finished / (RATE_MINUTES * 60),
            mean_run_seconds=mean_run,
            backlog=counts.get("pending", 0) + counts.get("queued", 0),
            concurrency=max(concurrency, 1),
        )
        oldest = entry.oldest_pending_at
        pools.append(
            PoolFigures(
                platform=platform,
                pending=counts.get("pending", 0),
                queued=counts.get("queued", 0),
                running=counts.get("running", 0),
                waiting_plugin=counts.get("waiting_plugin", 0),
                rate_limited=counts.get("rate_limited", 0),
                failed_last_hour=sum(_int(minute, f"{platform}|failed") for minute in minutes),
                oldest_pending_seconds=round(max(now - oldest, 0.0), 1) if oldest else 0.0,
                workers=len(alive),
                jobs_per_minute=round(finished / RATE_MINUTES, 2),
                mean_run_seconds=round(mean_run, 3),
                recommended_workers=recommended_processes(load),
                depth_history=[
                    _int(minute, f"{platform}|depth") if f"{platform}|depth" in minute else None
                    for minute in minutes
                ],
                throughput_history=[_int(minute, f"{platform}|finished") for minute in minutes],
            )
        )
    return Overview(
        pools=pools,
        counted_at=datetime.fromtimestamp(counted_at, UTC) if counted_at else None,
        workers=beats,
    )


@dataclass(frozen=True)
class MemberBudget:
    member: str
    tenant_ids: list[int]
    used: int
    limit: int
    remaining: int
    window_seconds: int
    resets_at: datetime | None
    waiting_tasks: int
    waiting_requests: int


async def read_budgets(session: AsyncSession, redis: Redis, settings: Settings) -> list[MemberBudget]:
    """Each active Vinted member's budget: Redis's window, PostgreSQL's waiting tasks."""
    window = settings.vinted_rate_window_seconds
    members = await active_members(session, window, settings.plugin_task_max_age)
    budgets: list[MemberBudget] = []
    for member in members:
        usage = await read_usage(
            redis, vinted_member_key(member.member), limit=settings.vinted_rate_limit, window_seconds=window
        )
        budgets.append(
            MemberBudget(
                member=member.member,
                tenant_ids=member.tenant_ids,
                used=usage.used,
                limit=usage.limit,
                remaining=usage.remaining,
                window_seconds=window,
                resets_at=usage.resets_at,
                waiting_tasks=member.waiting_tasks,
                waiting_requests=member.waiting_requests,
            )
        )
    return budgets


def metric_families(overview: Overview, budgets: list[MemberBudget]) -> list[Metric]:
    """The console's figures as Prometheus metric families (served by /metrics beside the job metrics)."""
    states = GaugeMetricFamily(
        "stoflow_queue_jobs",
        "Unfinished jobs per platform and state (the dispatcher's count).",
        labels=["platform", "state"],
    )
    oldest = GaugeMetricFamily(
        "stoflow_queue_oldest_pending_seconds", "Age of the oldest pending job.", labels=["platform"]
    )
    failed = GaugeMetricFamily(
        "stoflow_jobs_failed_last_hour", "Job runs that failed in the last hour.", labels=["platform"]
    )
    rate = GaugeMetricFamily(
        "stoflow_jobs_per_minute", "Job runs finished per minute (last 5 minutes).", labels=["platform"]
    )
    run_time = GaugeMetricFamily(
        "stoflow_job_mean_run_seconds", "Mean run time of a job (last 5 minutes).", labels=["platform"]
    )
    alive = GaugeMetricFamily(
        "stoflow_workers_alive", "Worker processes with a fresh heartbeat.", labels=["platform"]
    )
    recommended = GaugeMetricFamily(
        "stoflow_workers_recommended",
        "Worker processes Little's law asks for at the measured load.",
        labels=["platform"],
    )
    for pool in overview.pools:
        for state in metrics_store.UNFINISHED_STATES:
            states.add_metric([pool.platform, state], float(getattr(pool, state)))
        oldest.add_metric([pool.platform], pool.oldest_pending_seconds)
        failed.add_metric([pool.platform], float(pool.failed_last_hour))
        rate.add_metric([pool.platform], pool.jobs_per_minute)
        run_time.add_metric([pool.platform], pool.mean_run_seconds)
        alive.add_metric([pool.platform], float(pool.workers))
        recommended.add_metric([pool.platform], float(pool.recommended_workers))
    used = GaugeMetricFamily(
        "stoflow_vinted_budget_used", "Requests of a Vinted member in the current window.", labels=["member"]
    )
    limit = GaugeMetricFamily(
        "stoflow_vinted_budget_limit", "A Vinted member's requests per window.", labels=["member"]
    )
    waiting = GaugeMetricFamily(
        "stoflow_vinted_waiting_tasks",
        "A member's tasks released and not yet handed to a plugin.",
        labels=["member"],
    )
    for budget in budgets:
        used.add_metric([budget.member], float(budget.used))
        limit.add_metric([budget.member], float(budget.limit))
        waiting.add_metric([budget.member], float(budget.waiting_tasks))
    return [states, oldest, failed, rate, run_time, alive, recommended, used, limit, waiting]
