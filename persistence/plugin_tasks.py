"""The plugin queue's SQL, read whole: create, claim under a lease and the member's budget, report.

A task is ready while it is unfinished and has no live lease; claiming gives it a new `lease_id` for
LEASE_SECONDS. A task whose lease expires without a result is handed out again with a new lease. A
result is accepted from the current or any earlier lease as long as the task is unfinished. The job's
state is never written here: `persistence.queue` withdraws a task when its job stops waiting.

The hand-out gate: each task's requests are logged per Vinted member in `public.vinted_request_log`
(shared by every tenant that names the member). A task is handed to a plugin for the first time only
while the member's requests first handed out in the last window, plus this task's, stay within the
limit — so however long the plugin was away and however many tasks were released meanwhile, at most
`limit` requests of one member reach Vinted in any window. PostgreSQL holds this, so losing Redis
cannot widen it.

Sale checks (`list_sold_orders` tasks) are handed out last and only within their share: at most
`sale_check_share` of the member's requests in a window are checks, and a check goes only when, after it,
the window still has room for every publish/update/delist task of the member that is waiting.
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
#: The operation of a sale check's task: it reads the member's sold orders (and the new orders' details).
SALE_CHECK_OPERATION = "list_sold_orders"


async def create_task(
    session: AsyncSession,
    *,
    tenant_id: int,
    job_id: uuid.UUID,
    vinted_account_id: int,
    vinted_user_id: str,
    operation: str,
    requests: list[dict[str, Any]],
) -> PluginTask:
    """Queue a task for the tenant's plugin, log its requests for the member, wake long polls on commit."""
    task = PluginTask(
        id=uuid.uuid4(),
        job_id=job_id,
        vinted_account_id=vinted_account_id,
        vinted_user_id=vinted_user_id,
        slots=len(requests),
        operation=operation,
        requests=requests,
        leases=[],
    )
    session.add(task)
    await session.flush()
    await session.execute(
        text(
            "INSERT INTO public.vinted_request_log (task_id, member, tenant_id, slots, sale_check) "
            "VALUES (:task, :member, :tenant, :slots, :sale_check)"
        ),
        {
            "task": task.id,
            "member": vinted_user_id,
            "tenant": tenant_id,
            "slots": len(requests),
            "sale_check": operation == SALE_CHECK_OPERATION,
        },
    )
    await session.execute(
        text("SELECT pg_notify(:channel, :tenant)"), {"channel": NOTIFY_CHANNEL, "tenant": str(tenant_id)}
    )
    return task


_READY = text(
    """
    SELECT task.id, task.slots, task.operation, task.handed_at IS NOT NULL AS handed,
           coalesce(task.vinted_user_id, account.vinted_user_id, 'account:' || task.vinted_account_id)
               AS member
    FROM plugin_tasks AS task
    LEFT JOIN vinted_accounts AS account ON account.id = task.vinted_account_id
    WHERE task.finished_at IS NULL AND (task.lease_expires_at IS NULL OR task.lease_expires_at < now())
    ORDER BY task.created_at
    LIMIT :scan
    FOR UPDATE OF task SKIP LOCKED
    """
)

_LEASE = text(
    """
    WITH leased AS (
        SELECT id, gen_random_uuid() AS lease FROM unnest(CAST(:ids AS uuid[])) AS id
    )
    UPDATE plugin_tasks AS task
    SET lease_id = leased.lease,
        lease_expires_at = now() + make_interval(secs => :lease_seconds),
        leases = task.leases || to_jsonb(leased.lease::text),
        handed_at = coalesce(task.handed_at, now()),
        updated_at = now()
    FROM leased WHERE task.id = leased.id
    RETURNING task.id
    """
)


async def _member_used(session: AsyncSession, member: str, window_seconds: int) -> int:
    """Requests of `member` first handed out within the last window, under the member's lock."""
    # Transaction-scoped: two gateways handing out the same member's tasks take turns.
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": f"vinted:{member}"}
    )
    used = await session.scalar(
        text(
            "SELECT coalesce(sum(slots), 0) FROM public.vinted_request_log "
            "WHERE member = :member AND handed_at > now() - make_interval(secs => :window)"
        ),
        {"member": member, "window": window_seconds},
    )
    return int(used or 0)


async def _checks_used(session: AsyncSession, member: str, window_seconds: int) -> int:
    """Requests of `member`'s sale checks first handed out within the last window (lock already held)."""
    used = await session.scalar(
        text(
            "SELECT coalesce(sum(slots), 0) FROM public.vinted_request_log "
            "WHERE member = :member AND sale_check AND handed_at > now() - make_interval(secs => :window)"
        ),
        {"member": member, "window": window_seconds},
    )
    return int(used or 0)


async def claim_ready(
    session: AsyncSession,
    limit: int,
    *,
    budget: int,
    window_seconds: int,
    sale_check_share: int | None = None,
) -> list[PluginTask]:
    """Lease up to `limit` ready tasks, oldest first, within each member's hand-out budget.

    A sale check's first hand-out comes after the other tasks, within `sale_check_share` (None: no share
    of its own), and only while the member's waiting publish/update/delist tasks still fit after it.
    """
    candidates = (await session.execute(_READY, {"scan": max(limit * 4, 50)})).mappings().all()
    chosen: list[uuid.UUID] = []
    first_hand_outs: list[uuid.UUID] = []
    used: dict[str, int] = {}
    #: slots of the member's publish/update/delist tasks that wait (held back, or past `limit`)
    waiting: dict[str, int] = {}
    checks: list[Any] = []
    for member in sorted({str(row["member"]) for row in candidates if not row["handed"]}):
        used[member] = await _member_used(session, member, window_seconds)
        waiting[member] = 0
    for row in candidates:
        if not row["handed"]:
            member = str(row["member"])
            if row["operation"] == SALE_CHECK_OPERATION:
                checks.append(row)
                continue
            if len(chosen) >= limit or used[member] + int(row["slots"]) > budget:
                # its member's window is full (later tasks of other members may still go), or no room
                # in this batch: either way it waits, and a sale check must leave it its slots
                waiting[member] += int(row["slots"])
                continue
            used[member] += int(row["slots"])
            first_hand_outs.append(row["id"])
        elif len(chosen) >= limit:
            continue
        chosen.append(row["id"])
    for row in checks:
        member = str(row["member"])
        slots = int(row["slots"])
        if len(chosen) >= limit or used[member] + waiting[member] + slots > budget:
            continue
        if sale_check_share is not None and (
            await _checks_used(session, member, window_seconds) + slots > sale_check_share
        ):
            continue
        used[member] += slots
        first_hand_outs.append(row["id"])
        chosen.append(row["id"])
    if not chosen:
        return []
    await session.execute(_LEASE, {"ids": chosen, "lease_seconds": LEASE_SECONDS})
    if first_hand_outs:
        await session.execute(
            text(
                "UPDATE public.vinted_request_log SET handed_at = now() "
                "WHERE task_id = ANY(CAST(:ids AS uuid[])) AND handed_at IS NULL"
            ),
            {"ids": first_hand_outs},
        )
    rows = await session.scalars(
        select(PluginTask)
        .where(PluginTask.id.in_(chosen))
        .order_by(PluginTask.created_at)
        .execution_options(populate_existing=True)
    )
    return list(rows)


async def next_hand_out(session: AsyncSession, window_seconds: int) -> datetime | None:
    """When a ready task held back by its member's budget may go (the oldest hand-out leaves the window)."""
    moment: datetime | None = await session.scalar(
        text(
            "SELECT min(log.handed_at) + make_interval(secs => :window) "
            "FROM public.vinted_request_log AS log "
            "WHERE log.handed_at > now() - make_interval(secs => :window) AND log.member IN ("
            "  SELECT vinted_user_id FROM plugin_tasks WHERE finished_at IS NULL AND handed_at IS NULL)"
        ),
        {"window": window_seconds},
    )
    return moment


async def member_releases(
    session: AsyncSession, vinted_user_id: str, window_seconds: int, *, sale_checks_only: bool = False
) -> list[tuple[str, datetime, int]]:
    """(task id, released at, slots) of the member's requests released within the last window."""
    rows = await session.execute(
        text(
            "SELECT task_id, released_at, slots FROM public.vinted_request_log "
            "WHERE member = :member AND released_at > now() - make_interval(secs => :window)"
            + (" AND sale_check" if sale_checks_only else "")
        ),
        {"member": vinted_user_id, "window": window_seconds},
    )
    return [(str(row[0]), row[1], int(row[2])) for row in rows]


_WAITING_PUBLICATIONS = text(
    """
    SELECT coalesce(sum(CASE WHEN j.action = 'publish' THEN 1 + (
               SELECT count(*) FROM product_images AS i WHERE i.product_id = j.product_id)
           ELSE 1 END), 0)
    FROM plugin_queue AS j
    JOIN vinted_accounts AS a ON a.id = (j.payload ->> 'vinted_account_id')::bigint
    WHERE j.platform = 'vinted' AND j.action IN ('publish', 'update', 'delist')
      AND j.status IN ('pending', 'queued', 'running', 'rate_limited')
      AND a.vinted_user_id = :member
      AND NOT EXISTS (SELECT 1 FROM plugin_tasks AS t WHERE t.job_id = j.id AND t.finished_at IS NULL)
    """
)


async def waiting_publication_slots(session: AsyncSession, vinted_user_id: str) -> int:
    """Slots the member's publish/update/delist jobs of this tenant will take when they release their
    task (a publish: one per photo plus the item; an update or delist: one): a sale check leaves them."""
    return int(await session.scalar(_WAITING_PUBLICATIONS, {"member": vinted_user_id}) or 0)


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
            "UPDATE plugin_tasks SET result = :result, finished_at = coalesce(finished_at, now()), "
            "lease_expires_at = NULL, updated_at = now() WHERE id = :id"
        ).bindparams(bindparam("result", type_=JSONB)),
        {"id": task.id, "result": storable(result)},
    )


def storable(value: Any) -> Any:
    """The value with every NUL character removed: PostgreSQL's JSONB cannot hold `\\u0000`."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {storable(key): storable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [storable(item) for item in value]
    return value


async def tasks_of_job(session: AsyncSession, job_id: uuid.UUID) -> list[PluginTask]:
    rows = await session.scalars(select(PluginTask).where(PluginTask.job_id == job_id))
    return list(rows)
