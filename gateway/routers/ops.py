"""/api/ops: the operator's view of every tenant's queues, pools, failures and Vinted budgets.

Only operators (token `role: operator`) may call these routes; a tenant's token is 403 `forbidden`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Path, Query
from sqlalchemy import Select, and_, or_, select

from domain.errors import NotFound
from domain.jobs import JobStatus
from gateway import publishing
from gateway.console.figures import Overview, read_budgets, read_overview
from gateway.dependencies import CurrentOperator, PublicSession, Services, UnitOfWorkRoute
from gateway.pagination import DEFAULT_LIMIT, MAX_LIMIT, CursorCodec
from gateway.problems import ProblemError
from gateway.schemas.jobs import JobOut
from gateway.schemas.ops import (
    BudgetsOut,
    MemberBudgetOut,
    OpsJobOut,
    OpsJobPage,
    OverviewOut,
    PoolOut,
    WorkerOut,
)
from gateway.services import GatewayServices
from persistence.operator_views import tenant_exists, tenants_to_visit
from persistence.tenancy import scope_to_tenant, tenant_schema, tenant_transaction
from persistence.tenant_models import QueueJob

router = APIRouter(prefix="/api/ops", tags=["operators"], route_class=UnitOfWorkRoute)
log = structlog.get_logger(__name__)

#: Tenant schemas one page of `/api/ops/jobs` may visit: a page can come back short (follow next_cursor).
SCHEMAS_PER_PAGE = 25
_FORBIDDEN: dict[int | str, dict[str, Any]] = {403: {"description": "forbidden (not an operator)"}}


def overview_out(overview: Overview) -> OverviewOut:
    pools = [PoolOut.model_validate(pool, from_attributes=True) for pool in overview.pools]
    workers = [
        WorkerOut(
            pool=beat.pool,
            host=beat.host,
            pid=beat.pid,
            concurrency=beat.concurrency,
            started_at=datetime.fromtimestamp(beat.started_at, UTC) if beat.started_at else None,
            last_beat=datetime.fromtimestamp(beat.last_beat, UTC),
            alive=beat.alive,
        )
        for beat in overview.workers
    ]
    return OverviewOut(
        items=pools,
        platforms={pool.platform: pool for pool in pools},
        workers=workers,
        counted_at=overview.counted_at,
    )


@router.get("/overview", responses=_FORBIDDEN)
async def overview(_operator: CurrentOperator, services: Services) -> OverviewOut:
    """Per platform: unfinished jobs by state, failures in the last hour, pools and their throughput."""
    return overview_out(await read_overview(services.redis))


def _codec(services: GatewayServices) -> CursorCodec:
    return CursorCodec(services.settings.stoflow_secret_key.get_secret_value().encode())


def _position(codec: CursorCodec, cursor: str | None) -> tuple[int, datetime | None, uuid.UUID | None]:
    """(tenant, created_at, id) the page starts after; no created_at: after that whole tenant."""
    if cursor is None:
        return 0, None, None
    position = codec.decode(cursor)
    try:
        tenant = int(position["tenant"])
        if "id" not in position:
            return tenant, None, None
        return tenant, datetime.fromisoformat(str(position["created_at"])), uuid.UUID(str(position["id"]))
    except (KeyError, ValueError, TypeError):
        raise ProblemError(422, "invalid_cursor", "The cursor is not one this API issued.") from None


async def _tenant_jobs(
    services: GatewayServices,
    tenant_id: int,
    filters: list[Any],
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[QueueJob]:
    """One tenant's jobs, newest first, in a transaction of its own scoped to that tenant."""
    statement: Select[QueueJob] = select(QueueJob).where(*filters)
    if after is not None:
        created, last_id = after
        statement = statement.where(
            or_(QueueJob.created_at < created, and_(QueueJob.created_at == created, QueueJob.id < last_id))
        )
    async with tenant_transaction(
        services.db.session_factory, services.settings.tenant_schema_prefix, tenant_id
    ) as session:
        rows = await session.scalars(
            statement.order_by(QueueJob.created_at.desc(), QueueJob.id.desc()).limit(limit)
        )
        return list(rows)


@router.get("/jobs", responses=_FORBIDDEN)
async def list_jobs(
    _operator: CurrentOperator,
    services: Services,
    session: PublicSession,
    status: JobStatus | None = None,
    platform: Annotated[str | None, Query(pattern="^(vinted|ebay|etsy|ai)$")] = None,
    tenant_id: Annotated[int | None, Query(ge=1)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> OpsJobPage:
    """Jobs of every tenant, by tenant then newest first.

    Unfinished states visit only the tenants in the work index, `failed` only those in the failure
    index; a page visits at most SCHEMAS_PER_PAGE tenant schemas and may then come back short with a
    `next_cursor` to follow.
    """
    codec = _codec(services)
    start_tenant, created, last_id = _position(codec, cursor)
    filters: list[Any] = []
    if status is not None:
        filters.append(QueueJob.status == status.value)
    if platform is not None:
        filters.append(QueueJob.platform == platform)
    candidates: list[int] = []
    if created is not None and last_id is not None:
        candidates.append(start_tenant)  # the page before stopped inside this tenant
    if tenant_id is not None:
        known = await tenant_exists(session, tenant_id)
        candidates = [tenant_id] if known and (tenant_id > start_tenant or candidates) else []
    else:
        candidates += await tenants_to_visit(
            session,
            status=status.value if status else None,
            after_tenant=start_tenant,
            limit=SCHEMAS_PER_PAGE - len(candidates),
        )
    items: list[OpsJobOut] = []
    next_cursor: str | None = None
    for index, tenant in enumerate(candidates):
        after = (created, last_id) if tenant == start_tenant and created and last_id else None
        wanted = limit - len(items)
        rows = await _tenant_jobs(services, tenant, filters, after, wanted + 1)
        items += [OpsJobOut(**JobOut.of(job).model_dump(), tenant_id=tenant) for job in rows[:wanted]]
        if len(rows) > wanted:
            last = rows[wanted - 1]
            next_cursor = codec.encode(
                {"tenant": tenant, "created_at": last.created_at.isoformat(), "id": str(last.id)}
            )
            break
        if len(items) >= limit or (index == len(candidates) - 1 and len(candidates) == SCHEMAS_PER_PAGE):
            next_cursor = codec.encode({"tenant": tenant}) if tenant_id is None else None
            break
    return OpsJobPage(items=items, next_cursor=next_cursor)


@router.post(
    "/jobs/{tenant_id}/{job_id}/retry",
    status_code=202,
    responses={
        **_FORBIDDEN,
        404: {"description": "not_found"},
        409: {"description": "as the tenant's own retry: invalid_state, out_of_stock, ..."},
    },
)
async def retry_job(
    operator: CurrentOperator,
    services: Services,
    session: PublicSession,
    tenant_id: Annotated[int, Path(ge=1)],
    job_id: Annotated[str, Path(description="The job's UUID.")],
) -> OpsJobOut:
    """Retry a tenant's failed job through the tenant's own retry path (same rules, same answers)."""
    try:
        job_uuid = uuid.UUID(job_id)
    except ValueError:
        raise NotFound("No such job.") from None
    if not await tenant_exists(session, tenant_id):
        raise NotFound("No such job.")
    structlog.contextvars.bind_contextvars(tenant_id=tenant_id, job_id=str(job_uuid))
    await scope_to_tenant(session, tenant_schema(services.settings.tenant_schema_prefix, tenant_id))
    job = await publishing.retry(session, tenant_id, job_uuid)
    log.info("operator_retried_job", operator_id=operator.user_id, platform=job.platform)
    return OpsJobOut(**JobOut.of(job).model_dump(), tenant_id=tenant_id)


@router.get("/vinted-budgets", responses=_FORBIDDEN)
async def vinted_budgets(
    _operator: CurrentOperator, services: Services, session: PublicSession
) -> BudgetsOut:
    """Per Vinted member active in the window: requests used of the limit, reset time, waiting tasks."""
    budgets = await read_budgets(session, services.redis, services.settings)
    return BudgetsOut(
        items=[
            MemberBudgetOut(
                vinted_user_id=budget.member,
                tenant_ids=budget.tenant_ids,
                used=budget.used,
                limit=budget.limit,
                remaining=budget.remaining,
                window_seconds=budget.window_seconds,
                resets_at=budget.resets_at,
                waiting_tasks=budget.waiting_tasks,
                waiting_requests=budget.waiting_requests,
            )
            for budget in budgets
        ]
    )
