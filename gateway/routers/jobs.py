"""/api/jobs: follow, cancel and retry the jobs commands created."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from sqlalchemy import Select, and_, or_, select

from domain.errors import NotFound
from domain.jobs import JobAction, JobStatus
from gateway import publishing
from gateway.dependencies import CurrentPrincipal, Services, TenantSession, UnitOfWorkRoute
from gateway.pagination import DEFAULT_LIMIT, MAX_LIMIT, CursorCodec
from gateway.problems import ProblemError
from gateway.request_input import IntId
from gateway.schemas.jobs import JobOut, JobPage
from persistence import queue
from persistence.tenant_models import QueueJob

router = APIRouter(prefix="/api/jobs", tags=["jobs"], route_class=UnitOfWorkRoute)

_NOT_FOUND = "No such job."


async def _job_id(job_id: Annotated[str, Path(description="The job's UUID.")]) -> uuid.UUID:
    try:
        return uuid.UUID(job_id)
    except ValueError:
        raise NotFound(_NOT_FOUND) from None


JobId = Annotated[uuid.UUID, Depends(_job_id)]


async def _job(session: TenantSession, job_id: uuid.UUID, *, for_update: bool = False) -> QueueJob:
    statement: Select[QueueJob] = (
        select(QueueJob).where(QueueJob.id == job_id).execution_options(populate_existing=True)
    )
    if for_update:
        statement = statement.with_for_update()
    job = await session.scalar(statement)
    if job is None:
        raise NotFound(_NOT_FOUND)
    return job


@router.get("")
async def list_jobs(
    session: TenantSession,
    services: Services,
    status: JobStatus | None = None,
    platform: Annotated[str | None, Query(pattern="^(vinted|ebay|etsy|ai)$")] = None,
    action: JobAction | None = None,
    product_id: Annotated[IntId | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> JobPage:
    """Jobs, newest first, with filters."""
    codec = CursorCodec.from_settings(services.settings)
    statement = select(QueueJob)
    if cursor is not None:
        position = codec.decode(cursor)
        try:
            created = datetime.fromisoformat(str(position["created_at"]))
            last_id = uuid.UUID(str(position["id"]))
        except (KeyError, ValueError):
            raise ProblemError(422, "invalid_cursor", "The cursor is not one this API issued.") from None
        statement = statement.where(
            or_(QueueJob.created_at < created, and_(QueueJob.created_at == created, QueueJob.id < last_id))
        )
    if status is not None:
        statement = statement.where(QueueJob.status == status.value)
    if platform is not None:
        statement = statement.where(QueueJob.platform == platform)
    if action is not None:
        statement = statement.where(QueueJob.action == action.value)
    if product_id is not None:
        statement = statement.where(QueueJob.product_id == product_id)
    rows = list(
        await session.scalars(
            statement.order_by(QueueJob.created_at.desc(), QueueJob.id.desc()).limit(limit + 1)
        )
    )
    page = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        last = page[-1]
        next_cursor = codec.encode({"created_at": last.created_at.isoformat(), "id": str(last.id)})
    return JobPage(items=[JobOut.of(job) for job in page], next_cursor=next_cursor)


@router.get("/{job_id}", responses={404: {"description": "not_found"}})
async def get_job(job_id: JobId, session: TenantSession) -> JobOut:
    """One job."""
    return JobOut.of(await _job(session, job_id))


@router.post(
    "/{job_id}/cancel",
    responses={
        404: {"description": "not_found"},
        409: {
            "description": "invalid_state: the job is running, a plugin holds its Vinted task, it is "
            "finished, or it is the delist of a sold, archived or deleted product (never given up: the "
            "product would stay on sale there)"
        },
    },
)
async def cancel_job(job_id: JobId, principal: CurrentPrincipal, session: TenantSession) -> JobOut:
    """Cancel a job that has not started running (a Vinted task only while no plugin holds its lease).

    The delist of a sold, archived or deleted product's listing cannot be cancelled (409 `invalid_state`).
    """
    return JobOut.of(await queue.cancel(session, principal.tenant_id, job_id))


@router.post(
    "/{job_id}/retry",
    status_code=202,
    responses={
        403: {"description": "quota_exceeded"},
        404: {"description": "not_found"},
        409: {
            "description": "invalid_state, out_of_stock, platform_not_connected, already_listed "
            "(a publish is checked like a new publish command)"
        },
    },
)
async def retry_job(job_id: JobId, principal: CurrentPrincipal, session: TenantSession) -> JobOut:
    """Run a failed job again from its first attempt, afresh at the marketplace."""
    return JobOut.of(await publishing.retry(session, principal.tenant_id, job_id))
