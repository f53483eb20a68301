"""The job queue, read whole: the only code that writes a job's state.

Every caller goes through here — the gateway's commands (enqueue, cancel, retry, a product going away),
the dispatcher (hand-off, sweep), the workers (claim, heartbeat, progress, park, finish, fail, reschedule)
and the plugin routes (a task's result). Each function locks the row, asks `domain.jobs.transition`
what the event does, and writes the new state with the transition's effects in the caller's transaction.

Fencing: a claim gives its run a lease token (`lease_owner`, unique per claim). Every write of a running
job names that token and the run number, so a run whose lease expired — even if a later run of the same
job landed in the same worker process — changes nothing.

All functions run inside a tenant transaction (search_path = the tenant schema) unless they say they
touch `public` only.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import RowMapping, bindparam, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from domain.errors import InvalidState, NotFound
from domain.jobs import (
    DEFAULT_MAX_ATTEMPTS,
    PROGRESS_KEPT_ON_RETRY,
    UNFINISHED,
    USER_MESSAGES,
    Effect,
    IllegalTransition,
    JobAction,
    JobErrorCode,
    JobEvent,
    JobState,
    JobStatus,
    ProductCondition,
    Transition,
    coalesced_due,
    transition,
)
from persistence import directory, listings
from persistence.database import driver_connection
from persistence.snapshots import SNAPSHOT_FIELDS
from persistence.tenancy import in_schema
from persistence.tenant_models import QueueJob

NOTIFY_CHANNEL = "stoflow_jobs"
#: The history message of an attempt whose worker stopped (crash, kill -9) before it finished.
ABANDONED = "The worker running this attempt stopped before it finished."
#: What a user reads when a job was stopped because its product went away.
_PRODUCT_GONE_MESSAGE = USER_MESSAGES[JobErrorCode.PRODUCT_CHANGED]

#: Called with (session, tenant_id, job_id) when a generate_description job ends without its text.
CreditRefund = Callable[[AsyncSession, int, uuid.UUID], Awaitable[None]]
_credit_refunds: list[CreditRefund] = []


def on_credit_refund(refund: CreditRefund) -> None:
    """Register what gives an AI credit back (the AI module registers itself at import)."""
    if refund not in _credit_refunds:
        _credit_refunds.append(refund)


@dataclass(frozen=True)
class Handoff:
    """What the dispatcher needs to hand one row to ARQ."""

    tenant_id: int
    job_id: uuid.UUID
    platform: str
    run: int


@dataclass(frozen=True)
class Lease:
    """One run's hold on a job: every write of the running job names it."""

    job_id: uuid.UUID
    run: int
    token: str


@dataclass(frozen=True)
class ClaimedJob:
    """Everything a run needs of its job, read by the claim."""

    lease: Lease
    product_id: int | None
    platform: str
    action: str
    attempts: int
    max_attempts: int
    payload: dict[str, Any]
    progress: dict[str, Any]
    #: the product is sold, archived or deleted: whatever lands is taken down at once
    product_gone: bool
    history_id: int
    #: what the run reads besides its row, in the claim's statement (None: no such row)
    inputs: JobInputs | None = None


@dataclass(frozen=True)
class StoredCredential:
    """The platform's connected account as stored: tokens still sealed."""

    encrypted_tokens: bytes
    settings: dict[str, Any]


@dataclass(frozen=True)
class JobInputs:
    """What a run reads before its platform step: its product, listing and the platform's account."""

    #: the product's columns the mappers read (even a soft-deleted product's: a delist must still run)
    product: Mapping[str, Any] | None
    #: the product's image storage keys in display order
    image_keys: tuple[str, ...]
    #: the listing's `external_id`, `url` and `data` on the job's platform
    listing: dict[str, Any] | None
    credential: StoredCredential | None


@dataclass(frozen=True)
class Landing:
    """What a successful platform step reports."""

    external_id: str | None = None
    url: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    #: the job's `result` when it is not the listing's ids (e.g. generated text)
    result: dict[str, Any] | None = None


# One row, locked, with what the transition rules need: the product's condition and the job's live task.
_ROW_COLUMNS = """
SELECT j.id, j.product_id, j.platform, j.action, j.status, j.attempts, j.max_attempts, j.runs,
       j.payload, j.progress, j.delist_on_landing, j.lease_owner,
       CASE WHEN j.product_id IS NULL THEN 'none'
            WHEN p.id IS NULL OR p.deleted_at IS NOT NULL OR p.status IN ('sold', 'archived') THEN 'gone'
            ELSE 'available' END AS product,
       CASE WHEN j.status = 'waiting_plugin' THEN coalesce(t.handed_at IS NOT NULL, false)
            ELSE EXISTS (SELECT 1 FROM jsonb_each(j.progress) AS step
                         WHERE step.key <> 'spent_tasks' AND step.value <> 'null'::jsonb) END
           AS reached,
       coalesce(t.lease_expires_at > now(), false) AS task_leased
"""
_ROW_FROM = """
FROM plugin_queue AS j
LEFT JOIN products AS p ON p.id = j.product_id
LEFT JOIN LATERAL (
    SELECT handed_at, lease_expires_at FROM plugin_tasks
    WHERE job_id = j.id AND finished_at IS NULL ORDER BY created_at DESC LIMIT 1
) AS t ON true
"""
_ROW = _ROW_COLUMNS + _ROW_FROM


@dataclass(frozen=True)
class _Row:
    id: uuid.UUID
    product_id: int | None
    platform: str
    action: JobAction
    status: JobStatus
    attempts: int
    max_attempts: int
    runs: int
    payload: dict[str, Any]
    progress: dict[str, Any]
    product: ProductCondition
    state: JobState

    @classmethod
    def of(cls, row: Mapping[str, Any] | RowMapping) -> _Row:
        state = JobState(
            status=JobStatus(row["status"]),
            action=JobAction(row["action"]),
            attempts=int(row["attempts"]),
            max_attempts=int(row["max_attempts"]),
            reached_marketplace=bool(row["reached"]),
            task_leased=bool(row["task_leased"]),
            delist_on_landing=bool(row["delist_on_landing"]),
        )
        return cls(
            id=row["id"],
            product_id=row["product_id"],
            platform=row["platform"],
            action=state.action,
            status=state.status,
            attempts=state.attempts,
            max_attempts=state.max_attempts,
            runs=int(row["runs"]),
            payload=_json(row["payload"]),
            progress=_json(row["progress"]),
            product=ProductCondition(row["product"]),
            state=state,
        )


def _json(value: Any) -> dict[str, Any]:
    """A jsonb value as a dict: SQLAlchemy decodes it, raw asyncpg under its codecs hands over the text."""
    return dict(json.loads(value) if isinstance(value, str | bytes) else value)


async def _lock(session: AsyncSession, job_id: uuid.UUID, lease: Lease | None = None) -> _Row | None:
    """Lock one job row (for a running job's write: only while `lease` still holds it)."""
    where = "WHERE j.id = :id"
    params: dict[str, Any] = {"id": job_id}
    if lease is not None:
        where += " AND j.runs = :run AND j.lease_owner = :token AND j.status = 'running'"
        params |= {"run": lease.run, "token": lease.token}
    row = (await session.execute(text(f"{_ROW} {where} FOR UPDATE OF j"), params)).mappings().first()
    return _Row.of(row) if row is not None else None


async def _lock_many(session: AsyncSession, where: str, params: dict[str, Any]) -> list[_Row]:
    rows = await session.execute(text(f"{_ROW} WHERE {where} ORDER BY j.created_at FOR UPDATE OF j"), params)
    return [_Row.of(row) for row in rows.mappings()]


_WRITE = text(
    """
    UPDATE plugin_queue SET status = CAST(:status AS varchar), error = :error, updated_at = now(),
        next_attempt_at = :next_attempt_at,
        lease_owner = CASE WHEN CAST(:status AS varchar) = 'running' THEN lease_owner END,
        lease_expires_at = CASE WHEN CAST(:status AS varchar) = 'running' THEN lease_expires_at END,
        handed_off_at = CASE WHEN CAST(:status AS varchar) = 'queued' THEN now() END
    WHERE id = :id
    """
).bindparams(bindparam("error", type_=JSONB(none_as_null=True)))


async def _apply(
    session: AsyncSession,
    tenant_id: int,
    row: _Row,
    event: JobEvent,
    *,
    error: dict[str, str] | None = None,
    next_attempt_at: datetime | None = None,
    landing: Landing | None = None,
    history_message: str | None = None,
) -> Transition:
    """Write what `event` does to the locked `row`, with its effects. Raises IllegalTransition."""
    change = transition(row.state, event, row.product)
    if change.error_code is not None and change.status is not JobStatus.SUCCEEDED:
        error = _user_error(change.error_code, error)
    if change.status is JobStatus.CANCELLED and change.error_code is None:
        error = None
    if change.status in (JobStatus.PENDING, JobStatus.RATE_LIMITED) and next_attempt_at is None:
        next_attempt_at = await _now(session)
    # A job keeps a `next_attempt_at` while it waits for a moment: its retry, freed slots, or the next
    # look at a plugin wait the rules never give up.
    timed = (
        change.status in (JobStatus.PENDING, JobStatus.RATE_LIMITED) or Effect.WAIT_AGAIN in change.effects
    )
    await session.execute(
        _WRITE,
        {
            "id": row.id,
            "status": str(change.status),
            "error": error if change.status is not JobStatus.SUCCEEDED else None,
            "next_attempt_at": next_attempt_at if timed else None,
        },
    )
    await _apply_effects(session, tenant_id, row, change, error, landing, history_message)
    if change.status is JobStatus.FAILED:
        await note_tenant_failure(session, tenant_id)
    if change.status in (JobStatus.PENDING, JobStatus.RATE_LIMITED):
        await note_tenant_work(session, tenant_id, due_at=next_attempt_at)
        if change.status is JobStatus.PENDING and event in (JobEvent.PLUGIN_REPORTED, JobEvent.RETRY):
            await _notify(session, tenant_id, row.id, row.platform, row.runs + 1)
    return change


def _user_error(code: str, error: dict[str, str] | None) -> dict[str, str]:
    message = USER_MESSAGES.get(code, "")
    if code == JobErrorCode.ATTEMPTS_EXHAUSTED and error and error.get("message"):
        message = f"{message} Last answer: {error['message']}"
    return {"code": code, "message": message or (error or {}).get("message", code)}


async def _apply_effects(
    session: AsyncSession,
    tenant_id: int,
    row: _Row,
    change: Transition,
    error: dict[str, str] | None,
    landing: Landing | None,
    history_message: str | None,
) -> None:
    effects = change.effects
    product_id = row.product_id
    message = history_message or (error or {}).get("message")
    if Effect.HISTORY_SUCCEEDED in effects:
        await _close_history(session, row.id, "succeeded", None)
    if Effect.HISTORY_RETRYING in effects:
        await _close_history(session, row.id, "retrying", message)
    if Effect.HISTORY_FAILED in effects:
        await _close_history(session, row.id, "failed", message or "Cancelled.")
    if Effect.RESET_PROGRESS in effects:
        kept = sorted(PROGRESS_KEPT_ON_RETRY.get(row.platform, frozenset()))
        await session.execute(
            text(
                "UPDATE plugin_queue SET progress = coalesce((SELECT jsonb_object_agg(key, value) "
                "FROM jsonb_each(progress) WHERE key = ANY(:kept)), '{}'::jsonb), attempts = 0, "
                "result = NULL, delist_on_landing = false WHERE id = :id"
            ),
            {"id": row.id, "kept": kept},
        )
    if Effect.DELIST_ON_LANDING in effects:
        await session.execute(
            text("UPDATE plugin_queue SET delist_on_landing = true WHERE id = :id"), {"id": row.id}
        )
    if Effect.WITHDRAW_TASK in effects:
        await session.execute(
            text(
                "UPDATE plugin_tasks SET withdrawn_at = now(), finished_at = now(), lease_expires_at = NULL, "
                "updated_at = now() WHERE job_id = :id AND finished_at IS NULL"
            ),
            {"id": row.id},
        )
    if Effect.REFUND_CREDIT in effects:
        for refund in _credit_refunds:
            await refund(session, tenant_id, row.id)
    if product_id is None:
        return
    if Effect.RELEASE_LISTING in effects:
        await session.execute(
            text(
                "UPDATE platform_listings SET status = CASE WHEN external_id IS NULL THEN 'failed' "
                "ELSE 'delisted' END, updated_at = now() "
                "WHERE product_id = :product AND platform = :platform AND status = 'pending'"
            ),
            {"product": product_id, "platform": row.platform},
        )
    if Effect.RELISTING in effects:
        account = row.payload.get("vinted_account_id")
        await listings.mark_listing_pending(
            session, product_id, row.platform, account if isinstance(account, int) else None
        )
    landed = landing or Landing()
    if Effect.LISTING_LIVE in effects:
        await listings.set_listing_state(
            session,
            product_id,
            row.platform,
            "live",
            external_id=landed.external_id,
            url=landed.url,
            data=landed.data,
            published=True,
        )
        if landed.external_id is not None:
            await directory.register(session, tenant_id, row.platform, "listing", landed.external_id)
    if Effect.LISTING_SYNCED in effects:
        await listings.set_listing_state(session, product_id, row.platform, "live", data=landed.data)
    if Effect.LISTING_ENDED in effects:
        final = str(row.payload.get("listing_status_after", "delisted"))
        await listings.set_listing_state(session, product_id, row.platform, final, data=landed.data)
    if Effect.ENQUEUE_DELIST in effects:
        payload: dict[str, Any] = {"listing_status_after": "delisted"}
        if isinstance(row.payload.get("vinted_account_id"), int):
            payload["vinted_account_id"] = row.payload["vinted_account_id"]
        await enqueue_job(
            session,
            tenant_id=tenant_id,
            platform=row.platform,
            action=JobAction.DELIST,
            product_id=product_id,
            payload=payload,
        )


async def _close_history(session: AsyncSession, job_id: uuid.UUID, status: str, message: str | None) -> None:
    await session.execute(
        text(
            "UPDATE publications_history SET status = :status, error_message = :message, "
            "completed_at = now() WHERE job_id = :id AND status = 'started'"
        ),
        {"id": job_id, "status": status, "message": message},
    )


async def _now(session: AsyncSession) -> datetime:
    now: datetime = await session.scalar(text("SELECT now()"))
    return now


async def _notify(session: AsyncSession, tenant_id: int, job_id: uuid.UUID, platform: str, run: int) -> None:
    await session.execute(
        text("SELECT pg_notify(:channel, :message)"),
        {"channel": NOTIFY_CHANNEL, "message": f"{tenant_id}:{job_id}:{platform}:{run}"},
    )


# --- commands (gateway) ------------------------------------------------------------------------------


def _pending_row(
    platform: str,
    action: str,
    product_id: int | None,
    payload: dict[str, Any] | None,
    max_attempts: int,
    *,
    next_attempt_at: datetime | None = None,
) -> QueueJob:
    """A new job's row as every enqueue writes it: pending, no attempt made yet."""
    return QueueJob(
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
        next_attempt_at=next_attempt_at,
    )


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
    job = _pending_row(platform, action, product_id, payload, max_attempts)
    session.add(job)
    await session.flush()
    await note_tenant_work(session, tenant_id)
    await _notify(session, tenant_id, job.id, platform, 1)
    await session.refresh(job)
    return job


async def enqueue_coalesced(
    session: AsyncSession,
    *,
    tenant_id: int,
    platform: str,
    action: str,
    product_id: int,
    payload: dict[str, Any] | None = None,
    window: timedelta,
) -> tuple[QueueJob, bool]:
    """One not-yet-started job per (product, platform, action): return it (True when written now).

    A job of this kind that has not started yet reads the product when it runs, so it carries this change
    too: a pending one waits `window` more (capped by `domain.jobs.coalesced_due`), a queued one runs as
    handed. Otherwise a new pending row is written, due `window` from now. With a zero window the row is
    due at once and the dispatcher is woken. The rows are locked: a worker claiming one meanwhile finishes
    its claim first (it then counts as started and a new row carries the change).
    """
    rows = await _lock_many(
        session,
        "j.product_id = :product AND j.platform = :platform AND j.action = :action "
        "AND j.status IN ('pending', 'queued', 'rate_limited')",
        {"product": product_id, "platform": platform, "action": action},
    )
    now = await _now(session)
    if rows:
        row = rows[-1]
        if row.status is JobStatus.PENDING and window > timedelta(0):
            created: datetime = await session.scalar(
                text("SELECT created_at FROM plugin_queue WHERE id = :id"), {"id": row.id}
            )
            due = coalesced_due(now, created, window)
            await session.execute(
                text(
                    "UPDATE plugin_queue SET "
                    "next_attempt_at = greatest(coalesce(next_attempt_at, now()), :due) WHERE id = :id"
                ),
                {"id": row.id, "due": due},
            )
        return await _job(session, row.id), False
    if window <= timedelta(0):
        job = await enqueue_job(
            session,
            tenant_id=tenant_id,
            platform=platform,
            action=action,
            product_id=product_id,
            payload=payload,
        )
        return job, True
    due = now + window
    job = _pending_row(platform, action, product_id, payload, DEFAULT_MAX_ATTEMPTS, next_attempt_at=due)
    session.add(job)
    await session.flush()
    # No NOTIFY: the dispatcher's sweep hands the row off once it is due.
    await note_tenant_work(session, tenant_id, due_at=due)
    await session.refresh(job)
    return job, True


# A publish command's writes in one statement: unless the product is already listed (or being listed)
# on one of the platforms, the product's new status, its pending listings, the pending jobs, the tenant's
# work mark, and the dispatcher's wake-up (NOTIFY, delivered on commit). `{schema}.` before every tenant
# table: dropped on the session (its search_path names the tenant), the schema named on the raw pool.
# A work mark already due only needs to stay: the command holds it shared until it commits, which keeps the
# sweep from settling the tenant before it can see these jobs (`settle_tenant` locks the mark, then reads the
# rows), and a tenant's commands no longer queue behind each other's commit on that row, as they did when
# each one bumped it. A missing mark, or one due later, is written (and bumped) as before.
_PUBLISHES_TEMPLATE = """
WITH listed AS (
    SELECT 1 FROM unnest($2::varchar[]) AS r(platform)
    WHERE EXISTS (SELECT 1 FROM {schema}.platform_listings AS l
                  WHERE l.product_id = $1 AND l.platform = r.platform AND l.status = ANY($9::varchar[]))
       OR EXISTS (SELECT 1 FROM {schema}.plugin_queue AS q
                  WHERE q.product_id = $1 AND q.platform = r.platform AND q.action = 'publish'
                    AND q.status = ANY($10::varchar[]))
), product AS (
    UPDATE {schema}.products SET status = $4, published_at = $5, version = version + 1, updated_at = now()
    WHERE id = $1 AND $4::varchar IS NOT NULL AND NOT EXISTS (SELECT 1 FROM listed)
), listing AS (
    INSERT INTO {schema}.platform_listings (product_id, platform, status, vinted_account_id)
    SELECT $1, r.platform, 'pending', r.account FROM unnest($2::varchar[], $3::int[]) AS r(platform, account)
    WHERE NOT EXISTS (SELECT 1 FROM listed)
    ON CONFLICT (product_id, platform) DO UPDATE
        SET status = 'pending', vinted_account_id = EXCLUDED.vinted_account_id, updated_at = now()
), jobs AS (
    INSERT INTO {schema}.plugin_queue (id, product_id, platform, action, status, attempts, runs,
                                       max_attempts, payload, progress)
    SELECT r.id, $1, r.platform, 'publish', 'pending', 0, 0, $7, r.payload, '{}'::jsonb
    FROM unnest($6::uuid[], $2::varchar[], $8::jsonb[]) AS r(id, platform, payload)
    WHERE NOT EXISTS (SELECT 1 FROM listed)
    RETURNING id, product_id, platform, action, status, attempts, max_attempts, error, result,
              next_attempt_at, created_at, updated_at
), mark AS (
    SELECT due_at FROM public.tenant_work WHERE tenant_id = $11 AND due_at <= now() FOR SHARE
), work AS (
    INSERT INTO public.tenant_work (tenant_id, due_at) SELECT $11, now()
    WHERE EXISTS (SELECT 1 FROM jobs) AND NOT EXISTS (SELECT 1 FROM mark)
    ON CONFLICT (tenant_id) DO UPDATE SET version = public.tenant_work.version + 1,
        due_at = least(public.tenant_work.due_at, EXCLUDED.due_at)
)
SELECT j.*, pg_notify($12, concat_ws(':', $11::text, j.id::text, j.platform, '1')) AS notified FROM jobs AS j
"""
_ENQUEUE_PUBLISHES = _PUBLISHES_TEMPLATE.replace("{schema}.", "")


@dataclass(frozen=True)
class NewPublish:
    """One platform of a publish command."""

    platform: str
    vinted_account_id: int | None = None


async def enqueue_publishes(
    session: AsyncSession,
    *,
    tenant_id: int,
    product_id: int,
    publishes: list[NewPublish],
    status_change: tuple[str, datetime | None] | None,
) -> list[Mapping[str, Any]] | None:
    """Accept a publish command whose rules passed: one statement writes it all (see `_ENQUEUE_PUBLISHES`).

    `status_change`: the product's new (status, published_at), when it changes. Returns the new jobs' rows
    in `publishes` order, or None (nothing written) when one platform already has a listing or an
    unfinished publish: the check runs in the statement, after the product's row lock was taken.
    """
    return await _enqueue_publishes(
        await driver_connection(session), _ENQUEUE_PUBLISHES, tenant_id, product_id, publishes, status_change
    )


async def enqueue_publishes_in(
    connection: Any,
    schema: str,
    *,
    tenant_id: int,
    product_id: int,
    publishes: list[NewPublish],
    status_change: tuple[str, datetime | None] | None,
) -> list[Mapping[str, Any]] | None:
    """`enqueue_publishes` on a raw asyncpg connection in a transaction, the tenant's schema named."""
    statement = in_schema(_PUBLISHES_TEMPLATE, schema)
    return await _enqueue_publishes(connection, statement, tenant_id, product_id, publishes, status_change)


async def _enqueue_publishes(
    connection: Any,
    statement: str,
    tenant_id: int,
    product_id: int,
    publishes: list[NewPublish],
    status_change: tuple[str, datetime | None] | None,
) -> list[Mapping[str, Any]] | None:
    status, published_at = status_change if status_change is not None else (None, None)
    rows = await connection.fetch(
        statement,
        product_id,
        [publish.platform for publish in publishes],
        [publish.vinted_account_id for publish in publishes],
        status,
        published_at,
        [uuid.uuid4() for _ in publishes],
        DEFAULT_MAX_ATTEMPTS,
        [
            json.dumps({"vinted_account_id": publish.vinted_account_id})
            if publish.vinted_account_id is not None
            else "{}"
            for publish in publishes
        ],
        list(listings.ACTIVE_LISTING_STATES),
        [str(status) for status in UNFINISHED],
        tenant_id,
        NOTIFY_CHANNEL,
    )
    if not rows:
        return None
    order = {publish.platform: index for index, publish in enumerate(publishes)}
    return sorted(rows, key=lambda row: order[row["platform"]])


async def _job(session: AsyncSession, job_id: uuid.UUID) -> QueueJob:
    job = await session.get(QueueJob, job_id, populate_existing=True)
    assert job is not None  # the caller holds its lock
    return job


async def cancel(session: AsyncSession, tenant_id: int, job_id: uuid.UUID) -> QueueJob:
    """The user cancels a job that has not started (a plugin task only while no plugin holds it)."""
    row = await _lock(session, job_id)
    if row is None:
        raise NotFound("No such job.")
    try:
        await _apply(session, tenant_id, row, JobEvent.CANCEL, history_message="Cancelled by the user.")
    except IllegalTransition as refused:
        detail = f"A {row.status} job cannot be cancelled."
        if row.status is JobStatus.WAITING_PLUGIN:
            detail = "The plugin is running this job's Vinted request; it cannot be cancelled now."
        raise InvalidState(refused.reason or detail) from None
    return await _job(session, job_id)


async def lock_for_retry(session: AsyncSession, job_id: uuid.UUID) -> QueueJob:
    """Lock a job the user wants to retry; InvalidState unless it failed (the caller checks its rules)."""
    row = await _lock(session, job_id)
    if row is None:
        raise NotFound("No such job.")
    if row.status is not JobStatus.FAILED:
        raise InvalidState(f"Only a failed job can be retried; this one is {row.status}.")
    return await _job(session, job_id)


async def retry(session: AsyncSession, tenant_id: int, job_id: uuid.UUID) -> QueueJob:
    """Run a failed job again from its first attempt, afresh at the marketplace.

    Only what finds a listing an earlier attempt created is kept (`PROGRESS_KEPT_ON_RETRY`).
    """
    row = await _lock(session, job_id)
    if row is None:
        raise NotFound("No such job.")
    try:
        await _apply(session, tenant_id, row, JobEvent.RETRY)
    except IllegalTransition:
        raise InvalidState(f"Only a failed job can be retried; this one is {row.status}.") from None
    return await _job(session, job_id)


async def product_gone(session: AsyncSession, tenant_id: int, product_id: int) -> None:
    """The product was sold, archived or deleted (its row already says so, in this transaction).

    Unfinished publishes that have not reached the marketplace are cancelled; the others are marked to be
    taken down as soon as they land. Unfinished updates that have not started are cancelled.
    """
    rows = await _lock_many(
        session,
        "j.product_id = :product AND j.action IN ('publish', 'update') AND j.status IN "
        "('pending', 'queued', 'running', 'rate_limited', 'waiting_plugin')",
        {"product": product_id},
    )
    for row in rows:
        await _apply(session, tenant_id, row, JobEvent.PRODUCT_GONE, history_message=_PRODUCT_GONE_MESSAGE)


async def lock_waiting_job(session: AsyncSession, task_id: uuid.UUID) -> None:
    """Lock the job of a plugin task before the task itself is locked (the plugin reporting a result).

    Every writer takes a job's row before its task's: a sale or a cancel withdraws the task of the job it
    holds, the dispatcher expires it, a worker parks the job beside it. The result route locking the task
    first, then the job, waited for a sale that was waiting for it (a deadlock PostgreSQL broke by aborting
    one of them).
    """
    await session.execute(
        text(
            "SELECT 1 FROM plugin_queue WHERE id = (SELECT job_id FROM plugin_tasks WHERE id = :task) "
            "FOR UPDATE"
        ),
        {"task": task_id},
    )


async def report_plugin_result(session: AsyncSession, tenant_id: int, job_id: uuid.UUID) -> bool:
    """The plugin reported the job's task: the job goes back to its pool to finish from the result.

    The run that released the task and the run that reads its result are one attempt, so the attempt the
    first one counted is given back. False when the job no longer waits (cancelled, expired, not yet parked).
    """
    row = await _lock(session, job_id)
    if row is None or row.status is not JobStatus.WAITING_PLUGIN:
        return False
    await session.execute(
        text("UPDATE plugin_queue SET attempts = greatest(attempts - 1, 0) WHERE id = :id"), {"id": job_id}
    )
    await _apply(session, tenant_id, row, JobEvent.PLUGIN_REPORTED)
    return True


# --- the work index (public) ---------------------------------------------------------------------------


async def note_tenant_work(session: AsyncSession, tenant_id: int, *, due_at: datetime | None = None) -> None:
    """Record that this tenant has rows the sweep must look at, by `due_at` (now when None)."""
    await session.execute(
        text(
            "INSERT INTO public.tenant_work (tenant_id, due_at) VALUES (:tenant, coalesce(:due, now())) "
            "ON CONFLICT (tenant_id) DO UPDATE SET version = public.tenant_work.version + 1, "
            "due_at = least(public.tenant_work.due_at, EXCLUDED.due_at)"
        ),
        {"tenant": tenant_id, "due": due_at},
    )


async def note_tenant_failure(session: AsyncSession, tenant_id: int) -> None:
    """Record that this tenant had a job fail: the operator's failure list visits only such tenants."""
    await session.execute(
        text(
            "INSERT INTO public.tenant_failures (tenant_id) VALUES (:tenant) "
            "ON CONFLICT (tenant_id) DO UPDATE SET last_failed_at = now()"
        ),
        {"tenant": tenant_id},
    )


async def tenants_with_work(session: AsyncSession) -> list[tuple[int, int]]:
    """(tenant id, version) of every tenant that may have unfinished rows, due or not (public only)."""
    rows = await session.execute(text("SELECT tenant_id, version FROM public.tenant_work ORDER BY since"))
    return [(int(row[0]), int(row[1])) for row in rows]


async def due_tenants(session: AsyncSession, limit: int = 1000) -> list[tuple[int, int]]:
    """(tenant id, version) of the tenants the sweep must look at now (public only)."""
    rows = await session.execute(
        text(
            "SELECT tenant_id, version FROM public.tenant_work WHERE due_at <= now() "
            "ORDER BY due_at LIMIT :limit"
        ),
        {"limit": limit},
    )
    return [(int(row[0]), int(row[1])) for row in rows]


async def settle_tenant(
    session: AsyncSession,
    tenant_id: int,
    seen_version: int,
    stale_after: timedelta,
    plugin_max_age: timedelta,
) -> datetime | None:
    """After a sweep of the tenant: forget it (nothing left) or come back when its rows are next due;
    return when (None: forgotten).

    The mark is locked before the rows are read: a publish holds it shared until it commits (see
    `_PUBLISHES_TEMPLATE`) without moving its version, so only rows read after that lock are sure to include
    its jobs. Work that bumped the version meanwhile keeps the tenant due now.
    """
    await session.execute(
        text("SELECT 1 FROM public.tenant_work WHERE tenant_id = :tenant FOR UPDATE"), {"tenant": tenant_id}
    )
    next_due = await next_due_at(session, stale_after, plugin_max_age)
    if next_due is None:
        await session.execute(
            text("DELETE FROM public.tenant_work WHERE tenant_id = :tenant AND version = :version"),
            {"tenant": tenant_id, "version": seen_version},
        )
    else:
        await session.execute(
            text(
                "UPDATE public.tenant_work SET due_at = :due WHERE tenant_id = :tenant AND version = :version"
            ),
            {"tenant": tenant_id, "version": seen_version, "due": next_due},
        )
    return next_due


# --- the dispatcher's sweep ----------------------------------------------------------------------------

#: When a waiting job's newest plugin task was released: its PLUGIN_TASK_MAX_AGE counts from there.
_TASK_SINCE = "coalesce((SELECT max(created_at) FROM plugin_tasks WHERE job_id = j.id), j.updated_at)"


def _wait_ends(max_age: str) -> str:
    """When a waiting job's plugin wait is up: its max age after the task's release, or, for a wait the
    rules never give up (`Effect.WAIT_AGAIN`), the `next_attempt_at` its last look set."""
    return f"coalesce(j.next_attempt_at, {_TASK_SINCE} + make_interval(secs => {max_age}))"


async def next_due_at(
    session: AsyncSession, stale_after: timedelta, plugin_max_age: timedelta
) -> datetime | None:
    """When the sweep must next look at this tenant's rows; None when nothing is unfinished."""
    due: datetime | None = await session.scalar(
        text(
            f"""
            SELECT min(CASE
                WHEN status IN ('pending', 'rate_limited') THEN coalesce(next_attempt_at, created_at)
                WHEN status = 'queued' THEN handed_off_at + make_interval(secs => :stale)
                WHEN status = 'running' THEN lease_expires_at
                WHEN status = 'waiting_plugin' THEN {_wait_ends(":max_age")}
            END)
            FROM plugin_queue AS j
            WHERE status IN ('pending', 'queued', 'running', 'rate_limited', 'waiting_plugin')
            """
        ),
        {"stale": stale_after.total_seconds(), "max_age": plugin_max_age.total_seconds()},
    )
    return due


async def recover_expired_leases(session: AsyncSession, tenant_id: int) -> list[uuid.UUID]:
    """Running rows whose worker vanished: back to pending, or failed when out of attempts."""
    rows = await _lock_many(
        session,
        "j.status = 'running' AND j.lease_expires_at < now()",
        {},
    )
    for row in rows:
        await _apply(
            session,
            tenant_id,
            row,
            JobEvent.LEASE_EXPIRED,
            error={"code": "retrying", "message": ABANDONED},
            history_message=ABANDONED,
        )
    return [row.id for row in rows]


async def expire_plugin_waits(session: AsyncSession, tenant_id: int, max_age: timedelta) -> list[uuid.UUID]:
    """Jobs whose Vinted task nobody claimed or reported within `max_age`: failed, plugin_unavailable;
    return their ids.

    Except where the rules keep waiting (a delist of a sold, archived or deleted product): its task stays
    in the plugin queue and the wait is looked at again `max_age` later (`next_attempt_at`).
    """
    rows = await _lock_many(
        session,
        f"j.status = 'waiting_plugin' AND {_wait_ends(':max_age')} < now() "
        "AND NOT EXISTS (SELECT 1 FROM plugin_tasks WHERE job_id = j.id AND finished_at IS NULL "
        "AND lease_expires_at > now())",
        {"max_age": max_age.total_seconds()},
    )
    failed = []
    again = await _now(session) + max_age
    for row in rows:
        change = await _apply(session, tenant_id, row, JobEvent.PLUGIN_EXPIRED, next_attempt_at=again)
        if change.status is JobStatus.FAILED:
            failed.append(row.id)
    return failed


async def due_handoffs(session: AsyncSession, tenant_id: int, stale_after: timedelta) -> list[Handoff]:
    """Rows to hand to ARQ now: due retries and freed waits, and hand-offs not picked up in time.

    A `queued` row is looked at again only `stale_after` after its hand-off (the dispatcher then checks
    that ARQ still holds the run before handing it again).
    """
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


async def still_due(session: AsyncSession, handoffs: list[Handoff]) -> set[Handoff]:
    """The hand-offs whose row still waits for that run (not claimed, finished or moved on meanwhile).

    The sweep reads its due rows, then asks ARQ which runs it still holds: a run a worker claimed and
    finished in between is gone from ARQ too (no result kept), and without this look it would be handed
    to ARQ again only for its claim to find the row taken (`job_skipped`).
    """
    if not handoffs:
        return set()
    rows = await session.execute(
        text(
            "SELECT q.id FROM plugin_queue AS q "
            "JOIN unnest(CAST(:ids AS uuid[]), CAST(:previous AS int[])) AS due(id, previous) "
            "ON q.id = due.id AND q.runs = due.previous "
            "WHERE q.status IN ('pending', 'rate_limited', 'queued')"
        ),
        {
            "ids": [handoff.job_id for handoff in handoffs],
            "previous": [handoff.run - 1 for handoff in handoffs],
        },
    )
    waiting = {row[0] for row in rows}
    return {handoff for handoff in handoffs if handoff.job_id in waiting}


async def mark_handed_off(session: AsyncSession, handoffs: list[Handoff]) -> None:
    """Rows whose run ARQ now holds become (or stay) queued, stamped with the hand-off time."""
    if not handoffs:
        return
    await session.execute(
        text(
            "UPDATE plugin_queue SET status = 'queued', handed_off_at = now(), updated_at = now() "
            "FROM unnest(CAST(:ids AS uuid[]), CAST(:previous AS int[])) AS handed(id, previous) "
            "WHERE plugin_queue.id = handed.id AND plugin_queue.runs = handed.previous "
            "AND plugin_queue.status IN ('pending', 'rate_limited', 'queued')"
        ),
        {
            "ids": [handoff.job_id for handoff in handoffs],
            "previous": [handoff.run - 1 for handoff in handoffs],
        },
    )


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


# --- the workers ---------------------------------------------------------------------------------------


# The claim's read: the locked row with what the transition rules need, and everything the run reads.
_CLAIM_READ = (
    _ROW_COLUMNS
    + ", "
    + ", ".join(f"p.{name} AS product_{name}" for name in SNAPSHOT_FIELDS)
    + """,
       p.id AS product_row_id,
       (SELECT coalesce(array_agg(i.storage_key ORDER BY i.display_order, i.id), '{}')
        FROM product_images AS i WHERE i.product_id = j.product_id) AS image_keys,
       l.product_id IS NOT NULL AS has_listing, l.external_id AS listing_external_id,
       l.url AS listing_url, l.data AS listing_data,
       c.encrypted_tokens AS credential_tokens, c.settings AS credential_settings
"""
    + _ROW_FROM
    + """
LEFT JOIN platform_listings AS l ON l.product_id = j.product_id AND l.platform = j.platform
LEFT JOIN marketplace_credentials AS c ON c.platform = j.platform
WHERE j.id = $1
FOR UPDATE OF j
"""
)

# The claim's write: the new run under its lease, and its attempt's history row opened (or the one a
# plugin wait left open carried on) in the same statement.
_CLAIM_WRITE = """
WITH claimed AS (
    UPDATE plugin_queue SET status = 'running', runs = runs + 1, attempts = attempts + 1,
        lease_owner = $2, lease_expires_at = now() + make_interval(secs => $3),
        next_attempt_at = NULL, handed_off_at = NULL, error = NULL, updated_at = now()
    WHERE id = $1
    RETURNING id, product_id, platform, action, attempts
), open_row AS (
    SELECT id FROM publications_history WHERE job_id = $1 AND status = 'started' LIMIT 1
), opened AS (
    INSERT INTO publications_history (job_id, product_id, platform, action, attempt, status, started_at)
    SELECT id, product_id, platform, action, attempts, 'started', now() FROM claimed
    WHERE NOT EXISTS (SELECT 1 FROM open_row)
    RETURNING id
)
SELECT id FROM open_row UNION ALL SELECT id FROM opened
"""


def _inputs_of(row: Mapping[str, Any]) -> JobInputs:
    product = (
        {name: row[f"product_{name}"] for name in SNAPSHOT_FIELDS} | {"id": row["product_row_id"]}
        if row["product_row_id"] is not None
        else None
    )
    listing = (
        {
            "external_id": row["listing_external_id"],
            "url": row["listing_url"],
            "data": _json(row["listing_data"]),
        }
        if row["has_listing"]
        else None
    )
    credential = (
        StoredCredential(bytes(row["credential_tokens"]), _json(row["credential_settings"]))
        if row["credential_tokens"] is not None
        else None
    )
    return JobInputs(product, tuple(row["image_keys"]), listing, credential)


async def claim(
    session: AsyncSession, tenant_id: int, job_id: uuid.UUID, run: int, owner: str, lease_seconds: float
) -> ClaimedJob | None:
    """Take run `run` of a row under a new lease; None when that run is stale, taken or finished.

    Two statements: the row locked and read with everything the run needs (product, images, listing,
    credentials), then the run and its history row written. A product sold, archived or deleted before
    its publish reached the marketplace ends the job here (`product_changed`) and None is returned: no
    marketplace call happens.
    """
    # Wait for the row lock rather than skip: the dispatcher marks the row queued just after ARQ has the
    # run, and a worker may already be here; skipping would lose the run.
    connection = await driver_connection(session)
    found = await connection.fetchrow(_CLAIM_READ, job_id)
    if found is None:
        return None
    row = _Row.of(found)
    if row.runs != run - 1:
        return None
    try:
        change = transition(row.state, JobEvent.CLAIMED, row.product)
    except IllegalTransition:
        return None
    token = f"{owner}/{uuid.uuid4().hex[:12]}"
    history_id = await connection.fetchval(_CLAIM_WRITE, job_id, token, float(lease_seconds))
    lease = Lease(job_id, run, token)
    if change.status is not JobStatus.RUNNING:
        # The claim's own transition from the row as it was (a running row cannot be claimed again): the
        # run ends here, its history row (just opened) closes failed, the listing is released.
        await _apply(session, tenant_id, row, JobEvent.CLAIMED, history_message=_PRODUCT_GONE_MESSAGE)
        return None
    return ClaimedJob(
        lease=lease,
        product_id=row.product_id,
        platform=row.platform,
        action=row.action,
        attempts=row.attempts + 1,
        max_attempts=row.max_attempts,
        payload=row.payload,
        progress=row.progress,
        product_gone=row.product is ProductCondition.GONE,
        history_id=int(history_id),
        inputs=_inputs_of(found),
    )


def _claimable_statuses() -> list[str]:
    """The statuses from which the rules start a run whatever the action, the product being there."""
    claimable = []
    for status in JobStatus:
        outcomes: set[JobStatus | None] = set()
        for action in JobAction:
            for product in (ProductCondition.AVAILABLE, ProductCondition.NONE):
                try:
                    outcomes.add(transition(JobState(status, action), JobEvent.CLAIMED, product).status)
                except IllegalTransition:
                    outcomes.add(None)
        if outcomes == {JobStatus.RUNNING}:
            claimable.append(str(status))
    return claimable


#: Asked of the rules once: a row in one of these statuses whose product is there is claimed as running.
_CLAIMABLE = _claimable_statuses()

# The common claim in one statement: the run under its lease, its history row, and what the run reads.
# The common claim, every table named with the tenant's schema (`{schema}`, see `tenancy.in_schema`): one
# statement, sent on its own (its own transaction), so the claim is one round trip.
_CLAIM_COMMON = (
    """
WITH claimed AS (
    UPDATE {schema}.plugin_queue AS j SET status = 'running', runs = j.runs + 1, attempts = j.attempts + 1,
        lease_owner = $2, lease_expires_at = now() + make_interval(secs => $3),
        next_attempt_at = NULL, handed_off_at = NULL, error = NULL, updated_at = now()
    WHERE j.id = $1 AND j.runs = $4 AND j.status = ANY($5::varchar[])
      AND (j.product_id IS NULL OR EXISTS (
          SELECT 1 FROM {schema}.products AS p WHERE p.id = j.product_id AND p.deleted_at IS NULL
          AND p.status NOT IN ('sold', 'archived')))
    RETURNING j.id, j.product_id, j.platform, j.action, j.attempts, j.max_attempts, j.payload, j.progress
), open_row AS (
    SELECT id FROM {schema}.publications_history WHERE job_id = $1 AND status = 'started' LIMIT 1
), opened AS (
    INSERT INTO {schema}.publications_history
        (job_id, product_id, platform, action, attempt, status, started_at)
    SELECT id, product_id, platform, action, attempts, 'started', now() FROM claimed
    WHERE NOT EXISTS (SELECT 1 FROM open_row)
    RETURNING id
)
SELECT c.*, (SELECT id FROM open_row UNION ALL SELECT id FROM opened LIMIT 1) AS history_id, """
    + ", ".join(f"p.{name} AS product_{name}" for name in SNAPSHOT_FIELDS)
    + """,
       p.id AS product_row_id,
       (SELECT coalesce(array_agg(i.storage_key ORDER BY i.display_order, i.id), '{}')
        FROM {schema}.product_images AS i WHERE i.product_id = c.product_id) AS image_keys,
       l.product_id IS NOT NULL AS has_listing, l.external_id AS listing_external_id,
       l.url AS listing_url, l.data AS listing_data,
       cr.encrypted_tokens AS credential_tokens, cr.settings AS credential_settings
FROM claimed AS c
LEFT JOIN {schema}.products AS p ON p.id = c.product_id
LEFT JOIN {schema}.platform_listings AS l ON l.product_id = c.product_id AND l.platform = c.platform
LEFT JOIN {schema}.marketplace_credentials AS cr ON cr.platform = c.platform
"""
)


async def claim_common(
    db: Any, schema: str, job_id: uuid.UUID, run: int, owner: str, lease_seconds: float
) -> ClaimedJob | None:
    """`claim` in one statement of its own on `db` (an asyncpg pool or connection, outside a transaction),
    for the common case (a waiting row whose product is there); None when it did not apply: nothing was
    written, and the caller goes through `claim`.

    Like `claim`, it waits for the row's lock rather than skipping the row.
    """
    token = f"{owner}/{uuid.uuid4().hex[:12]}"
    row = await db.fetchrow(
        in_schema(_CLAIM_COMMON, schema), job_id, token, float(lease_seconds), run - 1, _CLAIMABLE
    )
    if row is None:
        return None
    return ClaimedJob(
        lease=Lease(job_id, run, token),
        product_id=row["product_id"],
        platform=row["platform"],
        action=row["action"],
        attempts=int(row["attempts"]),
        max_attempts=int(row["max_attempts"]),
        payload=_json(row["payload"]),
        progress=_json(row["progress"]),
        product_gone=False,
        history_id=int(row["history_id"]),
        inputs=_inputs_of(row),
    )


async def renew_lease(session: AsyncSession, lease: Lease, lease_seconds: float) -> bool:
    """Extend the lease while the run goes on; False when it was lost (the run must stop)."""
    renewed = await session.scalar(
        text(
            "UPDATE plugin_queue SET lease_expires_at = now() + make_interval(secs => :seconds) "
            "WHERE id = :id AND runs = :run AND lease_owner = :token AND status = 'running' "
            "AND lease_expires_at > now() RETURNING id"
        ),
        {"id": lease.job_id, "run": lease.run, "token": lease.token, "seconds": lease_seconds},
    )
    return renewed is not None


async def save_progress(session: AsyncSession, lease: Lease, progress: dict[str, Any]) -> bool:
    """Record a finished marketplace step before the next one starts; False when the lease was lost."""
    saved = await session.scalar(
        text(
            "UPDATE plugin_queue SET progress = progress || :progress, updated_at = now() "
            "WHERE id = :id AND runs = :run AND lease_owner = :token AND status = 'running' RETURNING id"
        ).bindparams(bindparam("progress", type_=JSONB)),
        {"id": lease.job_id, "run": lease.run, "token": lease.token, "progress": progress},
    )
    return saved is not None


# A run's success in one statement, for the common case the transition rules were asked about beforehand
# (see `_landing_in_one`): fenced on the run's lease like every write of a running job, and on the row
# still being what the rules assumed (no "delist when it lands", the product still there when it matters).
_SUCCEED = """
WITH done AS (
    UPDATE {schema}.plugin_queue SET status = 'succeeded', error = NULL, result = $4::jsonb,
        updated_at = now(), next_attempt_at = NULL, lease_owner = NULL, lease_expires_at = NULL,
        handed_off_at = NULL
    WHERE id = $1 AND runs = $2 AND lease_owner = $3 AND status = 'running' AND NOT delist_on_landing
      AND (NOT $5::boolean OR EXISTS (
          SELECT 1 FROM {schema}.products AS p WHERE p.id = plugin_queue.product_id AND p.deleted_at IS NULL
          AND p.status NOT IN ('sold', 'archived')))
    RETURNING id, product_id, platform
), history AS (
    UPDATE {schema}.publications_history AS h
    SET status = 'succeeded', error_message = NULL, completed_at = now()
    FROM done WHERE h.job_id = done.id AND h.status = 'started'
), listing AS (
    UPDATE {schema}.platform_listings AS l SET status = $6, external_id = coalesce($7, l.external_id),
        url = coalesce($8, l.url), data = l.data || $9::jsonb, last_synced_at = now(), updated_at = now(),
        published_at = CASE WHEN $10::boolean THEN now() ELSE l.published_at END
    FROM done WHERE $6::varchar IS NOT NULL AND l.product_id = done.product_id AND l.platform = done.platform
), directory AS (
    -- What `directory.register` does on the general path: a webhook about this listing finds its tenant.
    INSERT INTO public.marketplace_directory (platform, kind, key, tenant_id)
    SELECT done.platform, 'listing', $7, $11 FROM done WHERE $10::boolean AND $7::varchar IS NOT NULL
    ON CONFLICT (platform, kind, key) DO UPDATE SET tenant_id = EXCLUDED.tenant_id
)
SELECT count(*) FROM done
"""
#: The effects `_SUCCEED` applies; a success with any other effect takes the general path.
_ONE_STATEMENT_EFFECTS = frozenset(
    {Effect.HISTORY_SUCCEEDED, Effect.LISTING_LIVE, Effect.LISTING_SYNCED, Effect.LISTING_ENDED}
)


def _landing_in_one(job: ClaimedJob) -> tuple[str | None, bool, bool] | None:
    """(listing status, whether the product's condition matters, whether it goes live) when `_SUCCEED`
    can land `job` as the transition rules would; None when the general path must decide.

    The rules are asked about the row as the claim left it; `_SUCCEED` writes only while that still holds.
    """
    state = JobState(
        status=JobStatus.RUNNING,
        action=JobAction(job.action),
        attempts=job.attempts,
        max_attempts=job.max_attempts,
        reached_marketplace=True,
    )
    available = transition(state, JobEvent.SUCCEEDED, ProductCondition.AVAILABLE)
    gone = transition(state, JobEvent.SUCCEEDED, ProductCondition.GONE)
    if available.status is not JobStatus.SUCCEEDED or not available.effects <= _ONE_STATEMENT_EFFECTS:
        return None
    unreached = state.evolve(reached_marketplace=False)
    if transition(unreached, JobEvent.SUCCEEDED, ProductCondition.AVAILABLE) != available:
        return None
    effects = available.effects
    status = None
    if Effect.LISTING_LIVE in effects or Effect.LISTING_SYNCED in effects:
        status = "live"
    elif Effect.LISTING_ENDED in effects:
        status = str(job.payload.get("listing_status_after", "delisted"))
    if job.product_id is None:
        status = None
    return status, gone != available, Effect.LISTING_LIVE in effects


async def succeed(session: AsyncSession, tenant_id: int, lease: Lease, landing: Landing) -> bool:
    """The platform step is done: record its listing and result; False when the lease was lost."""
    row = await _lock(session, lease.job_id, lease)
    if row is None:
        return False
    result = (
        landing.result
        if landing.result is not None
        else {"external_id": landing.external_id, "url": landing.url}
    )
    await session.execute(
        text("UPDATE plugin_queue SET result = :result WHERE id = :id").bindparams(
            bindparam("result", type_=JSONB)
        ),
        {"id": row.id, "result": result},
    )
    await _apply(session, tenant_id, row, JobEvent.SUCCEEDED, landing=landing)
    return True


async def land(db: Any, schema: str, tenant_id: int, job: ClaimedJob, landing: Landing) -> bool:
    """`succeed` in one statement of its own on `db` (an asyncpg pool or connection, outside a
    transaction), for the common case; False when it did not apply (the lease was lost, or the row is
    not what the rules were asked about): nothing was written, and the caller goes through `succeed`.
    """
    fast = _landing_in_one(job)
    if fast is None:
        return False
    listing_status, product_matters, published = fast
    result = (
        landing.result
        if landing.result is not None
        else {"external_id": landing.external_id, "url": landing.url}
    )
    landed = await db.fetchval(
        in_schema(_SUCCEED, schema),
        job.lease.job_id,
        job.lease.run,
        job.lease.token,
        json.dumps(result),
        product_matters,
        listing_status,
        landing.external_id if published else None,
        landing.url if published else None,
        json.dumps(landing.data or {}),
        published,
        tenant_id,
    )
    return bool(landed)


async def fail(session: AsyncSession, tenant_id: int, lease: Lease, error: dict[str, str]) -> bool:
    """The step was refused for good (`error` is written for the user); False when the lease was lost."""
    row = await _lock(session, lease.job_id, lease)
    if row is None:
        return False
    await _apply(session, tenant_id, row, JobEvent.PERMANENT_FAILURE, error=error)
    return True


async def retry_later(
    session: AsyncSession, tenant_id: int, lease: Lease, run_at: datetime, message: str
) -> JobStatus | None:
    """A passing failure: try again at `run_at`, or fail when out of attempts. None: lease lost."""
    row = await _lock(session, lease.job_id, lease)
    if row is None:
        return None
    change = await _apply(
        session,
        tenant_id,
        row,
        JobEvent.TRANSIENT_FAILURE,
        error={"code": "retrying", "message": message},
        next_attempt_at=run_at,
    )
    return change.status


async def defer(session: AsyncSession, tenant_id: int, lease: Lease, run_at: datetime, message: str) -> bool:
    """No rate-limit slots: wait until `run_at` without spending an attempt; False when the lease was lost."""
    row = await _lock(session, lease.job_id, lease)
    if row is None:
        return False
    await session.execute(
        text("UPDATE plugin_queue SET attempts = greatest(attempts - 1, 0) WHERE id = :id"), {"id": row.id}
    )
    await _apply(
        session, tenant_id, row, JobEvent.RATE_LIMITED, next_attempt_at=run_at, history_message=message
    )
    return True


async def park_for_plugin(session: AsyncSession, tenant_id: int, lease: Lease, task_id: uuid.UUID) -> bool:
    """The run released a plugin task (in this transaction): the job waits for its result.

    The plugin may report between the task's release and this transition. Both sides lock the job row
    first, so exactly one of them sees the other's work: if the result is already in, the job goes straight
    back to its pool instead of waiting forever.
    """
    row = await _lock(session, lease.job_id, lease)
    if row is None:
        return False
    await session.execute(
        text("UPDATE plugin_queue SET progress = progress || :step WHERE id = :id").bindparams(
            bindparam("step", type_=JSONB)
        ),
        {"id": row.id, "step": {"task_id": str(task_id)}},
    )
    await _apply(session, tenant_id, row, JobEvent.PARKED)
    reported = await session.scalar(
        text("SELECT finished_at IS NOT NULL FROM plugin_tasks WHERE id = :task"), {"task": task_id}
    )
    if reported:
        await report_plugin_result(session, tenant_id, lease.job_id)
    return True
