"""The job queue's SQL, read whole: enqueue, hand-off, claim, lease, finish, sweep.

All functions run inside a tenant transaction (search_path = the tenant schema), except the
`tenant_work` ones, which touch `public` only. A row's `runs` counter guards every transition: a worker
may only claim run N+1 of a row whose `runs` is N, and only the lease owner may finish it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from domain.jobs import DEFAULT_MAX_ATTEMPTS, JobStatus
from persistence.tenant_models import QueueJob

NOTIFY_CHANNEL = "stoflow_jobs"
#: The history message of an attempt whose worker stopped (crash, kill -9) before it finished.
_ABANDONED = "The worker running this attempt stopped before it finished."


@dataclass(frozen=True)
class Handoff:
    """What the dispatcher needs to hand one row to ARQ."""

    tenant_id: int
    job_id: uuid.UUID
    platform: str
    run: int


async def enqueue_job(
    session: AsyncSession,
    *,
    tenant_id: int,
    platform: str,
    action: str,
    product_id: int | None,
    payload: dict[str, Any] | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
) -> QueueJob:
    """Write a pending row, mark the tenant as having work, and notify the dispatcher on commit."""
    job = QueueJob(
        id=uuid.uuid4(),
        product_id=product_id,
        platform=platform,
        action=action,
        status=JobStatus.PENDING,
        attempts=0,
        runs=0,
        max_attempts=max_attempts,
        payload=payload or {},
        progress={},
    )
    session.add(job)
    await session.flush()
    await note_tenant_work(session, tenant_id)
    await session.execute(
        text("SELECT pg_notify(:channel, :message)"),
        {"channel": NOTIFY_CHANNEL, "message": f"{tenant_id}:{job.id}:{platform}:1"},
    )
    await session.refresh(job)
    return job


async def note_tenant_work(session: AsyncSession, tenant_id: int) -> None:
    """Record that this tenant has unfinished rows (the sweep visits only such tenants)."""
    await session.execute(
        text(
            "INSERT INTO public.tenant_work (tenant_id) VALUES (:tenant) "
            "ON CONFLICT (tenant_id) DO UPDATE SET version = public.tenant_work.version + 1"
        ),
        {"tenant": tenant_id},
    )


async def tenants_with_work(session: AsyncSession) -> list[tuple[int, int]]:
    """(tenant id, version) of every tenant that may have unfinished rows."""
    rows = await session.execute(text("SELECT tenant_id, version FROM public.tenant_work ORDER BY since"))
    return [(int(row[0]), int(row[1])) for row in rows]


async def forget_idle_tenant(session: AsyncSession, tenant_id: int, seen_version: int) -> None:
    """Drop a tenant from the work index unless new work arrived since it was read."""
    await session.execute(
        text("DELETE FROM public.tenant_work WHERE tenant_id = :tenant AND version = :version"),
        {"tenant": tenant_id, "version": seen_version},
    )


async def mark_handed_off(session: AsyncSession, job_id: uuid.UUID, run: int) -> None:
    """A pending row whose run was given to ARQ becomes queued."""
    await session.execute(
        text(
            "UPDATE plugin_queue SET status = 'queued', handed_off_at = now(), updated_at = now() "
            "WHERE id = :id AND runs = :previous AND status IN ('pending', 'rate_limited')"
        ),
        {"id": job_id, "previous": run - 1},
    )


_CLAIM = text(
    """
    WITH candidate AS (
        SELECT id FROM plugin_queue
        WHERE id = :id AND runs = :previous AND status IN ('pending', 'queued', 'rate_limited')
        -- Wait for a lock rather than skip: the dispatcher marks the row queued just after ARQ has the
        -- run, and a worker may already be here; skipping would lose the run.
        FOR UPDATE
    )
    UPDATE plugin_queue AS job
    SET status = 'running', runs = job.runs + 1, attempts = job.attempts + 1,
        lease_owner = :owner, lease_expires_at = now() + make_interval(secs => :lease),
        next_attempt_at = NULL, error = NULL, updated_at = now()
    FROM candidate WHERE job.id = candidate.id
    RETURNING job.id
    """
)


async def claim_job(
    session: AsyncSession, job_id: uuid.UUID, run: int, owner: str, lease_seconds: float
) -> QueueJob | None:
    """Take run `run` of a row under a lease; None when that run is stale, taken or cancelled."""
    claimed = await session.scalar(
        _CLAIM, {"id": job_id, "previous": run - 1, "owner": owner, "lease": lease_seconds}
    )
    if claimed is None:
        return None
    return await session.get(QueueJob, job_id, populate_existing=True)


async def renew_lease(session: AsyncSession, job_id: uuid.UUID, owner: str, lease_seconds: float) -> bool:
    """Extend the lease while the job runs; False when the lease was lost."""
    renewed = await session.scalar(
        text(
            "UPDATE plugin_queue SET lease_expires_at = now() + make_interval(secs => :lease) "
            "WHERE id = :id AND lease_owner = :owner AND status = 'running' RETURNING id"
        ),
        {"id": job_id, "owner": owner, "lease": lease_seconds},
    )
    return renewed is not None


async def save_progress(
    session: AsyncSession, job_id: uuid.UUID, owner: str, progress: dict[str, Any]
) -> bool:
    """Record a finished marketplace step before the next one starts."""
    saved = await session.scalar(
        text(
            "UPDATE plugin_queue SET progress = progress || :progress, updated_at = now() "
            "WHERE id = :id AND lease_owner = :owner AND status = 'running' RETURNING id"
        ).bindparams(bindparam("progress", type_=JSONB)),
        {"id": job_id, "owner": owner, "progress": progress},
    )
    return saved is not None


async def finish_job(
    session: AsyncSession,
    job_id: uuid.UUID,
    owner: str,
    status: JobStatus,
    *,
    result: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
) -> bool:
    """End a running row (succeeded/failed/waiting_plugin); False when this worker no longer owns it."""
    finished = await session.scalar(
        text(
            "UPDATE plugin_queue SET status = :status, result = :result, error = :error, "
            "lease_owner = NULL, lease_expires_at = NULL, updated_at = now() "
            "WHERE id = :id AND lease_owner = :owner AND status = 'running' RETURNING id"
        ).bindparams(bindparam("result", type_=JSONB), bindparam("error", type_=JSONB)),
        {"id": job_id, "owner": owner, "status": str(status), "result": result, "error": error},
    )
    return finished is not None


async def reschedule_job(
    session: AsyncSession,
    job_id: uuid.UUID,
    owner: str,
    *,
    status: JobStatus,
    run_at: datetime,
    error: dict[str, Any] | None,
    refund_attempt: bool = False,
) -> bool:
    """Put a running row back to wait until `run_at` (pending retry, or rate_limited)."""
    rescheduled = await session.scalar(
        text(
            "UPDATE plugin_queue SET status = :status, next_attempt_at = :run_at, error = :error, "
            "attempts = attempts - CASE WHEN :refund THEN 1 ELSE 0 END, "
            "lease_owner = NULL, lease_expires_at = NULL, handed_off_at = NULL, updated_at = now() "
            "WHERE id = :id AND lease_owner = :owner AND status = 'running' RETURNING id"
        ).bindparams(bindparam("error", type_=JSONB)),
        {
            "id": job_id,
            "owner": owner,
            "status": str(status),
            "run_at": run_at,
            "error": error,
            "refund": refund_attempt,
        },
    )
    return rescheduled is not None


async def recover_expired_leases(session: AsyncSession) -> list[uuid.UUID]:
    """Running rows whose worker vanished: back to pending, or failed when out of attempts.

    The vanished run's history row, left `started`, is closed too (`retrying` or `failed`).
    """
    await session.execute(
        text(
            "WITH gone AS ("
            "  UPDATE plugin_queue SET status = 'failed', lease_owner = NULL, lease_expires_at = NULL, "
            "  error = jsonb_build_object('code', 'attempts_exhausted', 'message', "
            "  'The job did not finish after ' || attempts || ' attempts.'), updated_at = now() "
            "  WHERE status = 'running' AND lease_expires_at < now() AND attempts >= max_attempts "
            "  RETURNING id, product_id, platform, action), "
            "listing AS ("
            "  UPDATE platform_listings SET status = 'failed', updated_at = now() FROM gone "
            "  WHERE gone.action = 'publish' AND platform_listings.product_id = gone.product_id "
            "  AND platform_listings.platform = gone.platform AND platform_listings.status = 'pending') "
            "UPDATE publications_history SET status = 'failed', error_message = :message, "
            "completed_at = now() WHERE status = 'started' AND job_id IN (SELECT id FROM gone)"
        ),
        {"message": _ABANDONED},
    )
    rows = await session.execute(
        text(
            "WITH recovered AS ("
            "  UPDATE plugin_queue SET status = 'pending', lease_owner = NULL, lease_expires_at = NULL, "
            "  next_attempt_at = now(), handed_off_at = NULL, updated_at = now() "
            "  WHERE status = 'running' AND lease_expires_at < now() RETURNING id), "
            "closed AS ("
            "  UPDATE publications_history SET status = 'retrying', error_message = :message, "
            "  completed_at = now() WHERE status = 'started' AND job_id IN (SELECT id FROM recovered)) "
            "SELECT id FROM recovered"
        ),
        {"message": _ABANDONED},
    )
    return [row[0] for row in rows]


async def due_handoffs(session: AsyncSession, tenant_id: int, stale_after: timedelta) -> list[Handoff]:
    """Rows that should be (re)handed to ARQ now: due retries, lost hand-offs, expired waits."""
    rows = await session.execute(
        text(
            """
            SELECT id, platform, runs FROM plugin_queue
            WHERE (status IN ('pending', 'rate_limited')
                   AND coalesce(next_attempt_at, created_at) <= now()
                   AND (handed_off_at IS NULL OR handed_off_at < now() - make_interval(secs => :stale)))
               OR (status = 'queued' AND handed_off_at < now() - make_interval(secs => :stale))
            ORDER BY coalesce(next_attempt_at, created_at)
            LIMIT 500
            """
        ),
        {"stale": stale_after.total_seconds()},
    )
    return [Handoff(tenant_id, row[0], row[1], int(row[2]) + 1) for row in rows]


async def has_unfinished(session: AsyncSession) -> bool:
    found = await session.scalar(
        text(
            "SELECT 1 FROM plugin_queue WHERE status IN "
            "('pending','queued','running','rate_limited','waiting_plugin') LIMIT 1"
        )
    )
    return found is not None


async def status_counts(session: AsyncSession) -> list[tuple[str, str, int, datetime | None]]:
    """(platform, status, count, oldest created_at) over unfinished and failed rows."""
    rows = await session.execute(
        text(
            "SELECT platform, status, count(*), min(created_at) FROM plugin_queue "
            "WHERE status IN ('pending','queued','running','rate_limited','waiting_plugin','failed') "
            "GROUP BY platform, status"
        )
    )
    return [(row[0], row[1], int(row[2]), row[3]) for row in rows]


async def resume_after_plugin(session: AsyncSession, tenant_id: int, job_id: uuid.UUID) -> bool:
    """The plugin reported a task's result: hand the job back to its pool to finish from it.

    The run that released the task and the run that reads its result are one attempt, so the
    attempt counted by the first is given back.
    """
    runs = await session.scalar(
        text(
            "UPDATE plugin_queue SET status = 'pending', attempts = greatest(attempts - 1, 0), "
            "next_attempt_at = now(), handed_off_at = NULL, updated_at = now() "
            "WHERE id = :id AND status = 'waiting_plugin' RETURNING runs"
        ),
        {"id": job_id},
    )
    if runs is None:
        return False
    await note_tenant_work(session, tenant_id)
    platform = await session.scalar(text("SELECT platform FROM plugin_queue WHERE id = :id"), {"id": job_id})
    await session.execute(
        text("SELECT pg_notify(:channel, :message)"),
        {"channel": NOTIFY_CHANNEL, "message": f"{tenant_id}:{job_id}:{platform}:{int(runs) + 1}"},
    )
    return True


async def await_plugin(session: AsyncSession, tenant_id: int, job_id: uuid.UUID, owner: str) -> bool:
    """Park a running job until the plugin reports its task; False when this worker no longer owns it.

    The plugin may report between the task's release and this transition. Both sides lock the task row
    first (the gateway's result handler does too), so exactly one of them sees the other's work: if the
    result is already in, the job goes straight back to its pool instead of waiting forever.
    """
    task_id = await session.scalar(
        text(
            "SELECT progress->>'task_id' FROM plugin_queue "
            "WHERE id = :id AND lease_owner = :owner AND status = 'running' FOR UPDATE"
        ),
        {"id": job_id, "owner": owner},
    )
    reported = False
    if task_id:
        reported = bool(
            await session.scalar(
                text("SELECT finished_at IS NOT NULL FROM plugin_tasks WHERE id = :task FOR UPDATE"),
                {"task": task_id},
            )
        )
    if not await finish_job(session, job_id, owner, JobStatus.WAITING_PLUGIN):
        return False
    if reported:
        await resume_after_plugin(session, tenant_id, job_id)
    return True
