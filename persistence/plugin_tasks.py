"""The plugin queue's SQL, read whole: create, claim under a lease, heartbeat, report, withdraw.

A task is ready while it is unfinished and has no live lease; claiming gives it a new `lease_id` for
LEASE_SECONDS. A task whose lease expires without a result is handed out again with a new lease. A
result is accepted from the current or any earlier lease as long as the task is unfinished.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from persistence.tenant_models import PluginTask

LEASE_SECONDS = 60
NOTIFY_CHANNEL = "stoflow_plugin_tasks"


async def create_task(
    session: AsyncSession,
    *,
    tenant_id: int,
    job_id: uuid.UUID,
    vinted_account_id: int,
    operation: str,
    requests: list[dict[str, Any]],
) -> PluginTask:
    """Queue a task for the tenant's plugin and wake its long polls on commit."""
    task = PluginTask(
        id=uuid.uuid4(),
        job_id=job_id,
        vinted_account_id=vinted_account_id,
        operation=operation,
        requests=requests,
        leases=[],
    )
    session.add(task)
    await session.flush()
    await session.execute(
        text("SELECT pg_notify(:channel, :tenant)"), {"channel": NOTIFY_CHANNEL, "tenant": str(tenant_id)}
    )
    return task


_CLAIM = text(
    """
    WITH ready AS (
        SELECT id FROM plugin_tasks
        WHERE finished_at IS NULL AND (lease_expires_at IS NULL OR lease_expires_at < now())
        ORDER BY created_at
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    ), leased AS (
        SELECT id, gen_random_uuid() AS lease FROM ready
    )
    UPDATE plugin_tasks AS task
    SET lease_id = leased.lease,
        lease_expires_at = now() + make_interval(secs => :lease_seconds),
        leases = task.leases || to_jsonb(leased.lease::text),
        updated_at = now()
    FROM leased WHERE task.id = leased.id
    RETURNING task.id
    """
)


async def claim_ready(session: AsyncSession, limit: int) -> list[PluginTask]:
    """Lease up to `limit` ready tasks, oldest first."""
    ids = list(await session.scalars(_CLAIM, {"limit": limit, "lease_seconds": LEASE_SECONDS}))
    if not ids:
        return []
    rows = await session.scalars(
        select(PluginTask)
        .where(PluginTask.id.in_(ids))
        .order_by(PluginTask.created_at)
        .execution_options(populate_existing=True)
    )
    return list(rows)


async def next_lease_expiry(session: AsyncSession) -> datetime | None:
    """When the soonest live lease expires (its task then becomes ready again)."""
    expiry: datetime | None = await session.scalar(
        text(
            "SELECT min(lease_expires_at) FROM plugin_tasks "
            "WHERE finished_at IS NULL AND lease_expires_at > now()"
        )
    )
    return expiry


async def get_task(
    session: AsyncSession, task_id: uuid.UUID, *, for_update: bool = False
) -> PluginTask | None:
    statement = select(PluginTask).where(PluginTask.id == task_id).execution_options(populate_existing=True)
    if for_update:
        statement = statement.with_for_update()
    return await session.scalar(statement)


async def extend_lease(session: AsyncSession, task: PluginTask) -> datetime:
    """Give the current lease another LEASE_SECONDS."""
    expires: datetime = await session.scalar(
        text(
            "UPDATE plugin_tasks SET lease_expires_at = now() + make_interval(secs => :seconds), "
            "updated_at = now() WHERE id = :id RETURNING lease_expires_at"
        ),
        {"id": task.id, "seconds": LEASE_SECONDS},
    )
    return expires


async def record_result(session: AsyncSession, task: PluginTask, result: dict[str, Any]) -> None:
    """Store the plugin's result; the task is finished and leaves the queue."""
    await session.execute(
        text(
            "UPDATE plugin_tasks SET result = :result, finished_at = now(), lease_expires_at = NULL, "
            "updated_at = now() WHERE id = :id"
        ).bindparams(bindparam("result", type_=JSONB)),
        {"id": task.id, "result": result},
    )


async def withdraw_unclaimed(session: AsyncSession, job_id: uuid.UUID) -> bool:
    """Remove a job's task if the plugin never claimed it; False when it was claimed (or is finished)."""
    removed = await session.scalar(
        text(
            "DELETE FROM plugin_tasks "
            "WHERE job_id = :job AND lease_id IS NULL AND finished_at IS NULL RETURNING id"
        ),
        {"job": job_id},
    )
    return removed is not None


async def tasks_of_job(session: AsyncSession, job_id: uuid.UUID) -> list[PluginTask]:
    rows = await session.scalars(select(PluginTask).where(PluginTask.job_id == job_id))
    return list(rows)
