"""Run one hand-off of a queue row: claim under a lease, heartbeat, run the platform step, record.

At-least-once: a crash anywhere leaves a running row whose lease expires; the dispatcher hands it off
again as a new run. Exactly one listing per command comes from the adapters: every step is idempotent
or checked before it is repeated, and finished steps are saved in `progress` before the next starts.
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
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from domain.catalogue import ProductSnapshot
from domain.errors import DomainError
from domain.jobs import JobAction, JobErrorCode, JobStatus, retry_delay
from ops import metrics_store
from persistence import credentials as credential_store
from persistence import listings, queue
from persistence.snapshots import load_product_snapshot
from persistence.tenancy import tenant_transaction
from persistence.tenant_models import MarketplaceCredential, PlatformListing, QueueJob
from workers.context import WorkerApp
from workers.errors import PermanentPlatformError, RateLimited, TransientPlatformError
from workers.platforms.base import JobInput, ListingOutcome

log = structlog.get_logger(__name__)


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
    row_id = uuid.UUID(job_id)
    async with _tenant(app, tenant_id) as session:
        job = await queue.claim_job(session, row_id, run, app.owner, app.lease_seconds)
        if job is None:
            log.info("job_skipped", reason="stale, taken or cancelled")
            return "skipped"
        history_id = await listings.start_history(
            session,
            job_id=job.id,
            product_id=job.product_id,
            platform=job.platform,
            action=job.action,
            attempt=job.attempts,
        )
        # Read in the claim's transaction: one transaction (and its round trips) less per job.
        inputs = await _read_inputs(session, app, job)
    structlog.contextvars.bind_contextvars(action=job.action, attempt=job.attempts)
    log.info("job_started")
    started = time.perf_counter()
    heartbeat = asyncio.create_task(_heartbeat(app, tenant_id, row_id))
    try:
        outcome = await _execute(app, tenant_id, job, inputs)
    except RateLimited as limited:
        heartbeat.cancel()
        await metrics_store.record_rate_limit_rejection(app.redis, job.platform)
        await _defer(app, tenant_id, job, history_id, limited)
        return "rate_limited"
    except (TransientPlatformError, OSError, TimeoutError) as error:
        heartbeat.cancel()
        outcome_name = await _retry_or_fail(app, tenant_id, job, history_id, error)
        await metrics_store.record_job(
            app.redis, job.platform, job.action, outcome_name, time.perf_counter() - started
        )
        return outcome_name
    except (PermanentPlatformError, DomainError) as error:
        heartbeat.cancel()
        await _fail(app, tenant_id, job, history_id, _error_of(error))
        await metrics_store.record_job(
            app.redis, job.platform, job.action, "failed", time.perf_counter() - started
        )
        return "failed"
    except Exception as error:
        # An unexpected error may be a bug or a passing fault: retry it like a transient one, loudly.
        heartbeat.cancel()
        log.exception("job_crashed")
        outcome_name = await _retry_or_fail(app, tenant_id, job, history_id, error)
        await metrics_store.record_job(
            app.redis, job.platform, job.action, outcome_name, time.perf_counter() - started
        )
        return outcome_name
    finally:
        heartbeat.cancel()
        with suppress(asyncio.CancelledError):
            await heartbeat
    await _succeed(app, tenant_id, job, history_id, outcome)
    name = "waiting_plugin" if outcome.waiting_plugin else "succeeded"
    await metrics_store.record_job(app.redis, job.platform, job.action, name, time.perf_counter() - started)
    return name


async def _heartbeat(app: WorkerApp, tenant_id: int, job_id: uuid.UUID) -> None:
    """Keep the lease alive while the job runs; a lost lease is logged (the finish will then be refused)."""
    while True:
        await asyncio.sleep(app.heartbeat_seconds)
        try:
            async with _tenant(app, tenant_id) as session:
                if not await queue.renew_lease(session, job_id, app.owner, app.lease_seconds):
                    log.warning("lease_lost")
                    return
        except Exception:  # a missed beat is not fatal: the lease still has time
            log.warning("heartbeat_failed", exc_info=True)


@dataclass(frozen=True)
class _Inputs:
    """What a job reads before its platform step, or the error reading it raised."""

    product: ProductSnapshot | None = None
    listing_row: PlatformListing | None = None
    credential: MarketplaceCredential | None = None
    error: Exception | None = None


async def _read_inputs(session: AsyncSession, app: WorkerApp, job: QueueJob) -> _Inputs:
    """Read the product, its listing and the platform's credentials inside the claim's transaction.

    A database error rolls the claim back with it (the run stays queued and the sweep hands it off
    again, as for a failed claim); any other error is kept and raised where the job runs, so that it
    retries and fails like an error of the platform step.
    """
    try:
        product = (
            await load_product_snapshot(session, job.product_id, app.image_url)
            if job.product_id is not None
            else None
        )
        listing_row = (
            await listings.get_listing(session, job.product_id, job.platform) if job.product_id else None
        )
        credential = await credential_store.get_credential(session, job.platform)
    except DBAPIError:
        raise
    except Exception as error:  # raised again by _execute, inside the job's error handling
        return _Inputs(error=error)
    return _Inputs(product, listing_row, credential)


async def _execute(app: WorkerApp, tenant_id: int, job: QueueJob, inputs: _Inputs) -> ListingOutcome:
    if inputs.error is not None:
        raise inputs.error
    adapter = app.adapters.get(job.platform)
    if adapter is None:
        raise PermanentPlatformError("platform_rejected", f"No adapter for platform {job.platform!r}.")
    product, listing_row, credential = inputs.product, inputs.listing_row, inputs.credential
    listing = (
        {"external_id": listing_row.external_id, "url": listing_row.url, "data": dict(listing_row.data)}
        if listing_row is not None
        else None
    )
    if credential is None and job.platform in ("ebay", "etsy"):
        raise PermanentPlatformError(
            JobErrorCode.NOT_CONNECTED, f"The {job.platform} account is not connected any more."
        )

    async def save_progress(step: dict[str, Any]) -> None:
        async with _tenant(app, tenant_id) as session:
            if not await queue.save_progress(session, job.id, app.owner, step):
                raise TransientPlatformError("The lease was lost while the job ran.")
        job.progress = {**job.progress, **step}

    async def save_credentials(tokens: dict[str, Any]) -> None:
        async with _tenant(app, tenant_id) as session:
            await credential_store.replace_tokens(session, job.platform, app.box.seal(tokens))

    job_input = JobInput(
        tenant_id=tenant_id,
        job_id=job.id,
        action=job.action,
        attempt=job.attempts,
        payload=dict(job.payload),
        progress=dict(job.progress),
        product=product,
        listing=listing,
        credentials=app.box.open(credential.encrypted_tokens) if credential is not None else None,
        credential_settings=dict(credential.settings) if credential is not None else {},
        mappings=app.mappings,
        save_progress=save_progress,
        save_credentials=save_credentials,
    )
    if job.action == JobAction.PUBLISH:
        return await adapter.publish(job_input)
    if job.action == JobAction.UPDATE:
        return await adapter.update(job_input)
    if job.action == JobAction.DELIST:
        return await adapter.delist(job_input)
    if job.action == JobAction.GENERATE_DESCRIPTION and hasattr(adapter, "generate_description"):
        outcome: ListingOutcome = await adapter.generate_description(job_input)
        return outcome
    raise PermanentPlatformError("platform_rejected", f"{job.platform} cannot {job.action}.")


async def _succeed(
    app: WorkerApp, tenant_id: int, job: QueueJob, history_id: int, outcome: ListingOutcome
) -> None:
    async with _tenant(app, tenant_id) as session:
        if outcome.waiting_plugin:
            # Usually already parked by the adapter in the transaction that released the task.
            await queue.await_plugin(session, tenant_id, job.id, app.owner)
            return
        result = (
            outcome.result
            if outcome.result is not None
            else {"external_id": outcome.external_id, "url": outcome.url}
        )
        if not await queue.finish_job(session, job.id, app.owner, JobStatus.SUCCEEDED, result=result):
            # Another run owns the row now; it will redo the (idempotent) step and record it.
            log.warning("finish_refused", reason="lease lost")
            await session.rollback()
            return
        await listings.close_history(session, history_id, "succeeded")
        if job.product_id is not None:
            await _record_listing(session, job, outcome)
    log.info("job_succeeded", external_id=outcome.external_id)


async def _record_listing(session: AsyncSession, job: QueueJob, outcome: ListingOutcome) -> None:
    assert job.product_id is not None
    if job.action == JobAction.PUBLISH:
        await listings.set_listing_state(
            session,
            job.product_id,
            job.platform,
            "live",
            external_id=outcome.external_id,
            url=outcome.url,
            data=outcome.data,
            published=True,
        )
    elif job.action == JobAction.UPDATE:
        await listings.set_listing_state(session, job.product_id, job.platform, "live", data=outcome.data)
    elif job.action == JobAction.DELIST:
        final = str(job.payload.get("listing_status_after", "delisted"))
        await listings.set_listing_state(session, job.product_id, job.platform, final, data=outcome.data)


def _error_of(error: Exception) -> dict[str, str]:
    if isinstance(error, PermanentPlatformError):
        return {"code": error.code, "message": error.message}
    if isinstance(error, DomainError):
        return {"code": error.code, "message": error.detail}
    return {"code": JobErrorCode.PLATFORM_REJECTED, "message": str(error)}


async def _fail(
    app: WorkerApp, tenant_id: int, job: QueueJob, history_id: int, error: dict[str, str]
) -> None:
    async with _tenant(app, tenant_id) as session:
        if not await queue.finish_job(session, job.id, app.owner, JobStatus.FAILED, error=error):
            await session.rollback()
            return
        await listings.close_history(session, history_id, "failed", error["message"])
        if job.product_id is not None and job.action == JobAction.PUBLISH:
            await listings.set_listing_state(session, job.product_id, job.platform, "failed")
    log.warning("job_failed", error_code=error["code"], error_message=error["message"])


async def _retry_or_fail(
    app: WorkerApp, tenant_id: int, job: QueueJob, history_id: int, error: BaseException
) -> str:
    message = getattr(error, "message", None) or str(error) or type(error).__name__
    if job.attempts >= job.max_attempts:
        await _fail(
            app,
            tenant_id,
            job,
            history_id,
            {
                "code": JobErrorCode.ATTEMPTS_EXHAUSTED,
                "message": f"Gave up after {job.attempts} attempts: {message}",
            },
        )
        return "failed"
    delay = retry_delay(job.attempts)
    retry_after = getattr(error, "retry_after", None)
    if isinstance(retry_after, int | float) and retry_after > delay.total_seconds():
        delay = timedelta(seconds=retry_after)
    run_at = datetime.now(UTC) + delay
    async with _tenant(app, tenant_id) as session:
        if await queue.reschedule_job(
            session,
            job.id,
            app.owner,
            status=JobStatus.PENDING,
            run_at=run_at,
            error={"code": "retrying", "message": message},
        ):
            await listings.close_history(session, history_id, "retrying", message)
    log.info("job_retry_scheduled", delay_seconds=round(delay.total_seconds(), 2), reason=message)
    return "retrying"


async def _defer(
    app: WorkerApp, tenant_id: int, job: QueueJob, history_id: int, limited: RateLimited
) -> None:
    async with _tenant(app, tenant_id) as session:
        if await queue.reschedule_job(
            session,
            job.id,
            app.owner,
            status=JobStatus.RATE_LIMITED,
            run_at=limited.available_at,
            error=None,
            refund_attempt=True,
        ):
            await listings.close_history(session, history_id, "retrying", limited.message)
    log.info("job_rate_limited", next_attempt_at=limited.available_at.isoformat())
