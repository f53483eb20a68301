"""Run one hand-off of a queue row: claim under a lease, heartbeat, run the platform step, record.

At-least-once: a crash anywhere leaves a running row whose lease expires; the dispatcher hands it off
again as a new run. Exactly one listing per command comes from the adapters: every step is idempotent
or checked before it is repeated, and finished steps are saved in `progress` before the next starts.
Every state change goes through `persistence.queue`, fenced on this run's lease: a run that lost its
lease is cancelled (the heartbeat stops it) and can change nothing.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from domain.catalogue import ProductSnapshot
from domain.errors import DomainError
from domain.jobs import USER_MESSAGES, JobAction, JobErrorCode, retry_delay
from domain.sales import SaleSource
from ops.adapters import metrics_store
from persistence import credentials as credential_store
from persistence import imports, queue, sales
from persistence.snapshots import snapshot_of
from persistence.tenancy import tenant_schema, tenant_transaction
from workers.context import WorkerApp
from workers.credential_lock import locked_credentials
from workers.errors import LeaseLost, PermanentPlatformError, RateLimited, TransientPlatformError
from workers.platforms.base import JobInput, ListingOutcome

log = structlog.get_logger(__name__)

#: What a user reads when our own code failed; the exception itself goes to the log with the job id.
_UNEXPECTED = "An unexpected error interrupted this attempt; it will be tried again."


@asynccontextmanager
async def _tenant(app: WorkerApp, tenant_id: int) -> AsyncIterator[AsyncSession]:
    async with tenant_transaction(
        app.db.session_factory, app.settings.tenant_schema_prefix, tenant_id
    ) as session:
        yield session


async def run_job(ctx: dict[str, Any], tenant_id: int, job_id: str, run: int) -> str:
    """ARQ entry point: one run of one row of one tenant. Returns what happened, for ARQ's result."""
    app: WorkerApp = ctx["app"]
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(tenant_id=tenant_id, job_id=job_id, platform=app.platform, run=run)
    job = await _claim(app, tenant_id, uuid.UUID(job_id), run)
    if job is None:
        log.info("job_skipped", reason="stale, taken, finished or its product is gone")
        return "skipped"
    inputs = _read_inputs(app, job)
    structlog.contextvars.bind_contextvars(action=job.action, attempt=job.attempts)
    # DEBUG, like `job_succeeded`: the history row records every attempt; at INFO the log keeps what
    # needs a reader (failures, retries, waits), not a line or two per job of a busy pool.
    log.debug("job_started")
    started = time.perf_counter()
    outcome_name = await _run_fenced(app, tenant_id, job, inputs)
    if outcome_name != "lease_lost":
        app.record_job(job.platform, job.action, outcome_name, time.perf_counter() - started)
    return outcome_name


def _schema(app: WorkerApp, tenant_id: int) -> str:
    return tenant_schema(app.settings.tenant_schema_prefix, tenant_id)


async def _claim(app: WorkerApp, tenant_id: int, job_id: uuid.UUID, run: int) -> queue.ClaimedJob | None:
    """The claim in one statement when the row is in the common case, else the general claim."""
    job = await queue.claim_common(app.pg, _schema(app, tenant_id), job_id, run, app.owner, app.lease_seconds)
    if job is None:
        async with _tenant(app, tenant_id) as session:
            job = await queue.claim(session, tenant_id, job_id, run, app.owner, app.lease_seconds)
    return job


async def _run_fenced(app: WorkerApp, tenant_id: int, job: queue.ClaimedJob, inputs: _Inputs) -> str:
    """Run the step while the heartbeat holds the lease; a lost lease cancels the step at once.

    The heartbeat starts only when the step outlives its first beat's time: most steps end before it
    would beat, and the lease the claim took still has `lease_seconds` to run.
    """
    loop = asyncio.get_running_loop()
    step = asyncio.create_task(_execute(app, tenant_id, job, inputs))
    beating: list[asyncio.Task[None]] = []
    held_until = loop.time() + app.lease_seconds

    def start_heartbeat() -> None:
        if not step.done():
            beating.append(asyncio.create_task(_heartbeat(app, tenant_id, job.lease, step, held_until)))

    first_beat = loop.call_later(app.heartbeat_seconds, start_heartbeat)
    try:
        outcome = await step
    except asyncio.CancelledError:
        if not beating or not beating[0].done():
            raise  # the worker itself is stopping
        log.warning("run_stopped", reason="lease lost")
        return "lease_lost"
    except LeaseLost:
        log.warning("run_stopped", reason="lease lost")
        return "lease_lost"
    except RateLimited as limited:
        available_at, reason = limited.available_at, limited.message
        await metrics_store.record_rate_limit_rejection(app.redis, job.platform)
        await _write(
            app,
            tenant_id,
            job,
            lambda session: queue.defer(session, tenant_id, job.lease, available_at, reason),
        )
        log.info("job_rate_limited", next_attempt_at=available_at.isoformat())
        return "rate_limited"
    except (TransientPlatformError, OSError, TimeoutError) as error:
        message = error.message if isinstance(error, TransientPlatformError) else _transient_text(error)
        return await _retry_or_fail(app, tenant_id, job, message, retry_delay_for(error, job.attempts))
    except (PermanentPlatformError, DomainError) as error:
        await _fail(app, tenant_id, job, _error_of(error))
        return "failed"
    except Exception:
        # An unexpected error may be a bug or a passing fault: retry it like a transient one, loudly. Its
        # text (SQL, parameters) is for the log only.
        log.exception("job_crashed")
        return await _retry_or_fail(app, tenant_id, job, _UNEXPECTED, retry_delay(job.attempts))
    finally:
        first_beat.cancel()
        for heartbeat in beating:
            heartbeat.cancel()
            with suppress(asyncio.CancelledError):
                await heartbeat
    return await _succeed(app, tenant_id, job, outcome)


async def _heartbeat(
    app: WorkerApp, tenant_id: int, lease: queue.Lease, step: asyncio.Task[Any], held_until: float
) -> None:
    """Keep the lease alive while the step runs; cancel the step once the lease is lost or expired.

    Started at the time of the first beat; `held_until` is when the lease the claim took runs out.
    """
    loop = asyncio.get_running_loop()
    while True:
        try:
            async with _tenant(app, tenant_id) as session:
                renewed = await queue.renew_lease(session, lease, app.lease_seconds)
        except Exception:  # a missed beat is not fatal while the lease still has time
            log.warning("heartbeat_failed", exc_info=True)
            if loop.time() < held_until - app.heartbeat_seconds / 2:
                await asyncio.sleep(app.heartbeat_seconds)
                continue
            renewed = False
        if not renewed:
            log.warning("lease_lost")
            step.cancel()
            return
        held_until = loop.time() + app.lease_seconds
        await asyncio.sleep(app.heartbeat_seconds)


async def _write(app: WorkerApp, tenant_id: int, job: queue.ClaimedJob, change: Any) -> bool:
    """Apply one fenced queue write in its own transaction; False (nothing written) once the lease is lost."""
    async with _tenant(app, tenant_id) as session:
        done = bool(await change(session))
        if not done:
            await session.rollback()
            log.warning("write_refused", reason="lease lost")
    return done


def _transient_text(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "The marketplace did not answer in time."
    return "The marketplace could not be reached."


@dataclass(frozen=True)
class _Inputs:
    """What a job reads before its platform step, or the error reading it raised."""

    product: ProductSnapshot | None = None
    listing: dict[str, Any] | None = None
    credential: queue.StoredCredential | None = None
    error: Exception | None = None


def _read_inputs(app: WorkerApp, job: queue.ClaimedJob) -> _Inputs:
    """The product, its listing and the platform's credentials, as the claim's statement read them.

    An error here is kept and raised where the job runs, so that it retries and fails like an error of
    the platform step.
    """
    inputs = job.inputs
    if inputs is None:
        return _Inputs()
    try:
        product = (
            snapshot_of(inputs.product, inputs.image_keys, app.image_url)
            if inputs.product is not None
            else None
        )
    except Exception as error:  # raised again by _execute, inside the job's error handling
        return _Inputs(error=error)
    return _Inputs(product, inputs.listing, inputs.credential)


async def _execute(app: WorkerApp, tenant_id: int, job: queue.ClaimedJob, inputs: _Inputs) -> ListingOutcome:
    if inputs.error is not None:
        raise inputs.error
    adapter = app.adapters.get(job.platform)
    if adapter is None:
        raise PermanentPlatformError("platform_rejected", f"Stoflow cannot reach {job.platform} right now.")
    product, listing, credential = inputs.product, inputs.listing, inputs.credential
    if credential is None and job.platform in ("ebay", "etsy"):
        raise PermanentPlatformError(
            JobErrorCode.NOT_CONNECTED, f"The {job.platform} account is not connected any more."
        )
    progress = dict(job.progress)

    async def save_progress(step: dict[str, Any]) -> None:
        async with _tenant(app, tenant_id) as session:
            if not await queue.save_progress(session, job.lease, step):
                raise LeaseLost()
        progress.update(step)

    async def save_credentials(tokens: dict[str, Any]) -> None:
        async with _tenant(app, tenant_id) as session:
            await credential_store.replace_tokens(session, job.platform, app.box.seal(tokens))

    job_input = JobInput(
        tenant_id=tenant_id,
        job_id=job.lease.job_id,
        action=job.action,
        attempt=job.attempts,
        payload=dict(job.payload),
        progress=progress,
        product=product,
        listing=listing,
        credentials=(
            app.open_tokens(tenant_id, job.platform, credential.encrypted_tokens)
            if credential is not None
            else None
        ),
        credential_settings=dict(credential.settings) if credential is not None else {},
        mappings=app.mappings,
        save_progress=save_progress,
        save_credentials=save_credentials,
        lease=job.lease,
        product_gone=job.product_gone,
        credentials_lock=lambda: locked_credentials(app, tenant_id, job.platform),
    )
    if job.action == JobAction.PUBLISH:
        return await adapter.publish(job_input)
    if job.action == JobAction.UPDATE:
        return await adapter.update(job_input)
    if job.action == JobAction.DELIST:
        return await adapter.delist(job_input)
    if job.action == JobAction.IMPORT and hasattr(adapter, "import_listings"):
        found: ListingOutcome = await adapter.import_listings(job_input)
        return found
    if job.action == JobAction.CHECK_SALES and hasattr(adapter, "check_sales"):
        checked: ListingOutcome = await adapter.check_sales(job_input)
        return checked
    if job.action == JobAction.GENERATE_DESCRIPTION and hasattr(adapter, "generate_description"):
        outcome: ListingOutcome = await adapter.generate_description(job_input)
        return outcome
    raise PermanentPlatformError("platform_rejected", f"{job.platform} cannot {job.action}.")


async def _succeed(app: WorkerApp, tenant_id: int, job: queue.ClaimedJob, outcome: ListingOutcome) -> str:
    if outcome.waiting_plugin:
        # Parked by the adapter in the transaction that released the task.
        log.info("job_waiting_plugin")
        return "waiting_plugin"
    landing = queue.Landing(outcome.external_id, outcome.url, dict(outcome.data), outcome.result)

    async def finish(session: AsyncSession) -> bool:
        finished = landing
        if outcome.imported is not None:
            # The products and the job's result commit together, fenced on this run's lease: the row is
            # locked (and its lease renewed) first, so the sweep cannot take it back while they are written.
            if not await queue.renew_lease(session, job.lease, app.lease_seconds):
                return False
            counts = await imports.record_import(
                session,
                tenant_id=tenant_id,
                job_id=job.lease.job_id,
                found=outcome.imported,
                mappings=app.mappings,
                vinted_account_id=_int_or_none(job.payload.get("vinted_account_id")),
                whole=outcome.imported_whole,
                platform=job.platform,
                sync_only=bool(job.payload.get("sync_only")),
            )
            finished = queue.Landing(result=counts.as_result())
            log.info("import_recorded", found=len(outcome.imported), **counts.as_result())
        if outcome.sales is not None:
            # A sale check: its sales and the job's end commit together, fenced on this run's lease, so
            # a check whose result is read twice (a retried run) records each order once.
            if not await queue.renew_lease(session, job.lease, app.lease_seconds):
                return False
            new = 0
            for line in outcome.sales:
                recorded = await sales.record_order_line(session, tenant_id, line, SaleSource.POLL)
                new += bool(recorded is not None and recorded.created)
            finished = queue.Landing(result={**(outcome.result or {}), "sales": new})
            if new:
                log.info("sale_check_found_sales", sales=new, lines=len(outcome.sales))
        return await queue.succeed(session, tenant_id, job.lease, finished)

    # The common landing: one statement of its own (see queue.land).
    if (
        outcome.imported is None
        and outcome.sales is None
        and await queue.land(app.pg, _schema(app, tenant_id), tenant_id, job, landing)
    ):
        log.debug("job_succeeded", external_id=outcome.external_id)
        return "succeeded"
    if not await _write(app, tenant_id, job, finish):
        return "lease_lost"
    log.debug("job_succeeded", external_id=outcome.external_id)
    return "succeeded"


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _error_of(error: Exception) -> dict[str, str]:
    if isinstance(error, PermanentPlatformError):
        return {"code": error.code, "message": error.message}
    if isinstance(error, DomainError):
        return {"code": error.code, "message": error.detail}
    return {"code": JobErrorCode.INTERNAL, "message": USER_MESSAGES[JobErrorCode.INTERNAL]}


async def _fail(app: WorkerApp, tenant_id: int, job: queue.ClaimedJob, error: dict[str, str]) -> None:
    if await _write(app, tenant_id, job, lambda session: queue.fail(session, tenant_id, job.lease, error)):
        log.warning("job_failed", error_code=error["code"], error_message=error["message"])


async def _retry_or_fail(
    app: WorkerApp, tenant_id: int, job: queue.ClaimedJob, message: str, delay: timedelta
) -> str:
    run_at = datetime.now(UTC) + delay
    status: list[str] = []

    async def reschedule(session: AsyncSession) -> bool:
        outcome = await queue.retry_later(session, tenant_id, job.lease, run_at, message)
        if outcome is not None:
            status.append(str(outcome))
        return outcome is not None

    if not await _write(app, tenant_id, job, reschedule):
        return "lease_lost"
    if status == ["failed"]:
        log.warning("job_failed", error_code=JobErrorCode.ATTEMPTS_EXHAUSTED, error_message=message)
        return "failed"
    log.info("job_retry_scheduled", delay_seconds=round(delay.total_seconds(), 2), reason=message)
    return "retrying"


def retry_delay_for(error: BaseException, attempt: int) -> timedelta:
    """The later of the backoff and what the marketplace asked for (Retry-After, a plugin's pause)."""
    delay = retry_delay(attempt)
    asked = getattr(error, "retry_after", None)
    if isinstance(asked, int | float) and asked > delay.total_seconds():
        return timedelta(seconds=asked)
    return delay
