"""Bodies of the operator routes (`/api/ops`)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from gateway.schemas.jobs import JobOut


class PoolOut(BaseModel):
    platform: str
    pending: int
    queued: int
    running: int
    waiting_plugin: int
    rate_limited: int
    failed_last_hour: int
    oldest_pending_seconds: float
    #: alive worker processes (their heartbeat is fresh)
    workers: int
    jobs_per_minute: float
    mean_run_seconds: float
    #: processes Little's law asks for at the measured load (see domain/capacity.py)
    recommended_workers: int


class WorkerOut(BaseModel):
    pool: str
    host: str
    pid: int
    concurrency: int
    started_at: datetime | None
    last_beat: datetime
    alive: bool


class OverviewOut(BaseModel):
    #: one entry per platform, in a fixed order
    items: list[PoolOut]
    #: the same entries keyed by platform
    platforms: dict[str, PoolOut]
    workers: list[WorkerOut]
    #: when the dispatcher last counted the queues
    counted_at: datetime | None


class OpsJobOut(JobOut):
    tenant_id: int


class OpsJobPage(BaseModel):
    items: list[OpsJobOut]
    next_cursor: str | None


class MemberBudgetOut(BaseModel):
    vinted_user_id: str
    tenant_ids: list[int]
    used: int
    limit: int
    remaining: int
    window_seconds: int
    resets_at: datetime | None
    waiting_tasks: int
    waiting_requests: int


class BudgetsOut(BaseModel):
    items: list[MemberBudgetOut]
