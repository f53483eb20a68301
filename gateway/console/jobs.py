"""Jobs of every tenant for operators: a bounded walk over the tenants that can hold them, and retry.

A page visits at most SCHEMAS_PER_PAGE tenant schemas, each in a short transaction of its own: the
work index (`tenant_work`) names the tenants with unfinished jobs, the failure index
(`tenant_failures`) those that had a job fail, and only an unfiltered listing walks every tenant. A page
can therefore come back short with a `next_cursor`: follow it. The cost of a page is O(SCHEMAS_PER_PAGE)
queries, whatever the number of tenants.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import Select, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.errors import NotFound
from gateway import publishing
from gateway.pagination import CursorCodec
from gateway.problems import ProblemError
from gateway.schemas.jobs import JobOut
from gateway.schemas.ops import OpsJobOut, OpsJobPage
from gateway.services import GatewayServices
from persistence.operator_views import tenant_exists, tenants_failed_lately, tenants_to_visit
from persistence.tenancy import scope_to_tenant, tenant_schema, tenant_transaction
from persistence.tenant_models import QueueJob

log = structlog.get_logger(__name__)

#: Tenant schemas one page may visit: a page can come back short (follow next_cursor).
SCHEMAS_PER_PAGE = 25


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


async def jobs_page(
    services: GatewayServices,
    session: AsyncSession,
    *,
    status: str | None,
    platform: str | None,
    tenant_id: int | None,
    limit: int,
    cursor: str | None,
) -> OpsJobPage:
    """One page of jobs of every tenant (or one), by tenant then newest first."""
    codec = _codec(services)
    start_tenant, created, last_id = _position(codec, cursor)
    filters: list[Any] = []
    if status is not None:
        filters.append(QueueJob.status == status)
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
            status=status,
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


async def recent_failures(services: GatewayServices, session: AsyncSession, *, limit: int) -> list[OpsJobOut]:
    """The latest failures of every tenant, newest first: what the console shows an operator.

    Visits the SCHEMAS_PER_PAGE tenants that failed most recently (the failure index keeps when), so a
    fresh failure shows whatever older ones lower-numbered tenants still hold.
    """
    found: list[OpsJobOut] = []
    for tenant in await tenants_failed_lately(session, limit=SCHEMAS_PER_PAGE):
        rows = await _tenant_jobs(services, tenant, [QueueJob.status == "failed"], None, limit)
        found += [OpsJobOut(**JobOut.of(job).model_dump(), tenant_id=tenant) for job in rows]
    found.sort(key=lambda job: job.updated_at, reverse=True)
    return found[:limit]


async def retry_as_operator(
    services: GatewayServices, session: AsyncSession, operator_id: int, tenant_id: int, job_id: str
) -> OpsJobOut:
    """Retry a tenant's failed job through the tenant's own retry path, in the request's transaction."""
    try:
        job_uuid = uuid.UUID(job_id)
    except ValueError:
        raise NotFound("No such job.") from None
    if not await tenant_exists(session, tenant_id):
        raise NotFound("No such job.")
    structlog.contextvars.bind_contextvars(tenant_id=tenant_id, job_id=str(job_uuid))
    await scope_to_tenant(session, tenant_schema(services.settings.tenant_schema_prefix, tenant_id))
    job = await publishing.retry(session, tenant_id, job_uuid)
    log.info("operator_retried_job", operator_id=operator_id, platform=job.platform)
    return OpsJobOut(**JobOut.of(job).model_dump(), tenant_id=tenant_id)
