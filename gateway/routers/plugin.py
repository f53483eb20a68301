"""/api/plugin: the browser plugin drains its tenant's Vinted tasks (long poll, leases, results, events).

The gateway only records what the plugin reports; the Vinted pool finishes the job from it.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, Path, Query, Request
from sqlalchemy import select

from domain.errors import NotFound
from domain.sales import SaleSource
from gateway.dependencies import CurrentPrincipal, PublicSession, Services, TenantSession, UnitOfWorkRoute
from gateway.problems import ProblemError
from gateway.request_input import opaque_json
from gateway.schemas.plugin import (
    LeaseBody,
    LeaseOut,
    PluginEvent,
    ResultBody,
    ResultOut,
    TaskBatch,
    TaskOut,
    TaskRequest,
)
from persistence import plugin_tasks, queue, sales
from persistence.tenancy import tenant_transaction
from persistence.tenant_models import PluginTask, VintedAccount

router = APIRouter(prefix="/api/plugin", tags=["plugin"], route_class=UnitOfWorkRoute)
log = structlog.get_logger(__name__)


async def _task_id(task_id: Annotated[str, Path(description="The task's UUID.")]) -> uuid.UUID:
    try:
        return uuid.UUID(task_id)
    except ValueError:
        raise NotFound("No such task.") from None


TaskId = Annotated[uuid.UUID, Depends(_task_id)]


def _task_out(task: PluginTask, vinted_users: dict[int, str]) -> TaskOut:
    assert task.lease_id is not None and task.lease_expires_at is not None
    return TaskOut(
        id=task.id,
        job_id=task.job_id,
        vinted_account_id=task.vinted_account_id,
        vinted_user_id=vinted_users.get(task.vinted_account_id),
        operation=task.operation,
        requests=[TaskRequest.model_validate(request) for request in task.requests],
        lease_id=task.lease_id,
        lease_expires_at=task.lease_expires_at,
    )


@router.get("/tasks")
async def poll_tasks(
    request: Request,
    principal: CurrentPrincipal,
    services: Services,
    session: PublicSession,
    wait: Annotated[int, Query(ge=0, le=30, description="Seconds to wait for a task.")] = 25,
    limit: Annotated[int, Query(ge=1, le=50, description="Most tasks to claim.")] = 10,
) -> TaskBatch:
    """Long poll: claim up to `limit` ready tasks under a 60 s lease, as soon as one is ready.

    A task is handed out for the first time only within its Vinted member's budget (at most
    VINTED_RATE_LIMIT requests of one member handed to plugins in any window), so tasks released while the
    plugin was away reach Vinted at the budget's pace, not in one burst. A client that has gone away
    claims nothing.
    """
    # Waiting must not pin a pooled connection: end the authentication transaction now; each look below
    # is its own short tenant transaction.
    await session.commit()
    settings = services.settings
    prefix = settings.tenant_schema_prefix
    window = settings.vinted_rate_window_seconds
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    with services.plugin_hub.subscription(principal.tenant_id) as woken:
        while True:
            woken.clear()
            if await request.is_disconnected():
                log.info("plugin_poll_abandoned")
                return TaskBatch(tasks=[])
            async with tenant_transaction(services.db.session_factory, prefix, principal.tenant_id) as tenant:
                tasks = await plugin_tasks.claim_ready(
                    tenant,
                    limit,
                    budget=settings.vinted_rate_limit,
                    window_seconds=window,
                    sale_check_share=settings.vinted_sale_check_share,
                )
                if tasks:
                    rows = await tenant.execute(select(VintedAccount.id, VintedAccount.vinted_user_id))
                    users = {int(row[0]): str(row[1]) for row in rows}
                    log.info("plugin_tasks_claimed", count=len(tasks))
                    return TaskBatch(tasks=[_task_out(task, users) for task in tasks])
                wake_ats = [
                    moment
                    for moment in (
                        await plugin_tasks.next_lease_expiry(tenant),
                        await plugin_tasks.next_hand_out(tenant, window),
                    )
                    if moment is not None
                ]
                next_expiry = min(wake_ats) if wake_ats else None
            remaining = deadline - loop.time()
            if remaining <= 0:
                return TaskBatch(tasks=[])
            if next_expiry is not None:
                # A leased task comes back when its lease expires, a held one when its member's window
                # frees: look again then.
                remaining = min(remaining, max((next_expiry - datetime.now(UTC)).total_seconds(), 0) + 0.05)
            try:
                async with asyncio.timeout(remaining):
                    await woken.wait()
            except TimeoutError:
                continue


async def _locked_task(session: TenantSession, task_id: uuid.UUID) -> PluginTask:
    task = await plugin_tasks.get_task(session, task_id, for_update=True)
    if task is None:
        raise NotFound("No such task.")
    return task


def _lease_lost() -> ProblemError:
    return ProblemError(409, "lease_lost", "That lease is no longer yours: the task was handed out again.")


@router.post(
    "/tasks/{task_id}/heartbeat",
    responses={404: {"description": "not_found"}, 409: {"description": "lease_lost"}},
)
async def heartbeat(task_id: TaskId, body: LeaseBody, session: TenantSession) -> LeaseOut:
    """Extend the lease of a task the plugin is still running by 60 s."""
    task = await _locked_task(session, task_id)
    if task.finished_at is not None or task.lease_id != body.lease_id:
        raise _lease_lost()
    expires = await plugin_tasks.extend_lease(session, task)
    return LeaseOut(lease_id=body.lease_id, lease_expires_at=expires)


@router.post(
    "/tasks/{task_id}/result",
    responses={404: {"description": "not_found"}, 409: {"description": "lease_lost or already_reported"}},
)
# What Vinted answered is kept as sent (made storable below), NUL characters and all.
@opaque_json(("responses", "*", "body"), ("error",))
async def report_result(
    task_id: TaskId, body: ResultBody, principal: CurrentPrincipal, session: TenantSession
) -> ResultOut:
    """Record what the plugin got from Vinted; the Vinted pool then finishes the job from it."""
    await queue.lock_waiting_job(session, task_id)
    task = await _locked_task(session, task_id)
    if str(body.lease_id) not in task.leases:
        raise _lease_lost()
    # PostgreSQL cannot store a NUL character; whatever else the plugin sends is kept as sent.
    result = plugin_tasks.storable(body.model_dump(mode="json", exclude={"lease_id"}))
    if task.finished_at is not None and (task.withdrawn_at is None or task.result is not None):
        if task.result == result:
            return ResultOut(id=task.id, status=body.status, job_id=task.job_id)
        raise ProblemError(409, "already_reported", "A different result was already reported for this task.")
    await plugin_tasks.record_result(session, task, result)
    if task.withdrawn_at is not None:
        # The job stopped waiting (cancelled after the lease expired, or expired) but the plugin did run it.
        log.warning("plugin_result_after_withdrawal", task_id=str(task.id), status=body.status)
    else:
        await queue.report_plugin_result(session, principal.tenant_id, task.job_id)
    log.info("plugin_result_recorded", task_id=str(task.id), job_id=str(task.job_id), status=body.status)
    return ResultOut(id=task.id, status=body.status, job_id=task.job_id)


@router.post(
    "/events", status_code=202, responses={404: {"description": "not_found: no such Vinted listing"}}
)
async def report_event(
    body: PluginEvent, principal: CurrentPrincipal, session: TenantSession
) -> dict[str, object]:
    """A sale the plugin saw on Vinted: that listing is sold, stock drops, the other listings follow.

    A Vinted item sells once: the item id is the sale's order key here, while the sale check keys it by
    the Vinted transaction; whichever sees the sale second finds the item's listing `sold` and records
    nothing more.
    """
    external_id = str(body.external_id)
    product = await sales.find_listing_product(session, body.platform, external_id)
    if product is None:
        raise NotFound("No Vinted listing with that id.")
    known = await sales.vinted_item_sale(session, external_id)
    if known is not None and known.order_id != external_id:
        # The sale check recorded this item's sale already (keyed by its transaction): the same sale.
        return {"product_id": product.id, "stock_quantity": product.stock_quantity, "jobs": []}
    recorded = await sales.record_sale(
        session,
        principal.tenant_id,
        product,
        platform=body.platform,
        order_id=external_id,
        source=SaleSource.PLUGIN,
    )
    jobs = recorded.jobs
    return {
        "product_id": product.id,
        "stock_quantity": product.stock_quantity,
        "jobs": [str(job.id) for job in jobs],
    }
