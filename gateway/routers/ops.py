"""/api/ops: the operator's view of every tenant's queues, pools, failures and Vinted budgets.

Only operators (token `role: operator`) may call these routes; a tenant's token is 403 `forbidden`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from domain.jobs import JobStatus
from gateway.console.figures import Overview, read_budgets, read_overview
from gateway.console.jobs import jobs_page, retry_as_operator
from gateway.dependencies import CurrentOperator, PublicSession, Services, UnitOfWorkRoute
from gateway.pagination import DEFAULT_LIMIT, MAX_LIMIT
from gateway.schemas.ops import (
    BudgetsOut,
    MemberBudgetOut,
    OpsJobOut,
    OpsJobPage,
    OverviewOut,
    PoolOut,
    WorkerOut,
)

router = APIRouter(prefix="/api/ops", tags=["operators"], route_class=UnitOfWorkRoute)

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
    return await jobs_page(
        services,
        session,
        status=status.value if status else None,
        platform=platform,
        tenant_id=tenant_id,
        limit=limit,
        cursor=cursor,
    )


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
    return await retry_as_operator(services, session, operator.user_id, tenant_id, job_id)


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
