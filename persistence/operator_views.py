"""The operator console's reads across tenants, from cluster-local summaries (public only).

Nothing here unions tenant schemas: the per-member Vinted log, the work index (`tenant_work`) and the
failure index (`tenant_failures`) say which members and tenants to look at.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

UNFINISHED = frozenset({"pending", "queued", "running", "waiting_plugin", "rate_limited"})


@dataclass(frozen=True)
class MemberActivity:
    """One Vinted member's recent requests, as `public.vinted_request_log` knows them."""

    member: str
    tenant_ids: list[int]
    #: tasks released to the plugin queue and not yet handed to a plugin
    waiting_tasks: int
    waiting_requests: int
    last_released_at: datetime


async def active_members(
    session: AsyncSession, window_seconds: int, max_age_seconds: int
) -> list[MemberActivity]:
    """Members with requests released in the last window, or tasks still waiting for a plugin."""
    rows = await session.execute(
        text(
            """
            SELECT member, array_agg(DISTINCT tenant_id ORDER BY tenant_id),
                   count(*) FILTER (WHERE handed_at IS NULL),
                   coalesce(sum(slots) FILTER (WHERE handed_at IS NULL), 0),
                   max(released_at)
            FROM public.vinted_request_log
            WHERE released_at > now() - make_interval(secs => :window)
               OR (handed_at IS NULL AND released_at > now() - make_interval(secs => :max_age))
            GROUP BY member ORDER BY member
            """
        ),
        {"window": window_seconds, "max_age": max_age_seconds},
    )
    return [
        MemberActivity(str(row[0]), [int(tenant) for tenant in row[1]], int(row[2]), int(row[3]), row[4])
        for row in rows
    ]


async def tenants_to_visit(
    session: AsyncSession, *, status: str | None, after_tenant: int, limit: int
) -> list[int]:
    """Tenant ids above `after_tenant`, ascending, that can hold jobs of `status` (None: any tenant).

    Unfinished states come from the work index, failures from the failure index; other states (or none)
    need every tenant, visited a bounded number per page.
    """
    if status in UNFINISHED:
        source = "SELECT tenant_id AS id FROM public.tenant_work"
    elif status == "failed":
        source = "SELECT tenant_id AS id FROM public.tenant_failures"
    else:
        source = "SELECT id FROM public.tenants"
    rows = await session.execute(
        text(f"SELECT id FROM ({source}) AS candidates WHERE id > :after ORDER BY id LIMIT :limit"),
        {"after": after_tenant, "limit": limit},
    )
    return [int(row[0]) for row in rows]


async def tenants_failed_lately(session: AsyncSession, *, limit: int) -> list[int]:
    """The tenants whose last job failure is the most recent, newest first (the failure index only)."""
    rows = await session.execute(
        text("SELECT tenant_id FROM public.tenant_failures ORDER BY last_failed_at DESC LIMIT :limit"),
        {"limit": limit},
    )
    return [int(row[0]) for row in rows]


async def tenant_exists(session: AsyncSession, tenant_id: int) -> bool:
    found = await session.scalar(text("SELECT 1 FROM public.tenants WHERE id = :id"), {"id": tenant_id})
    return found is not None
