"""The public marketplace directory: a marketplace's listing, shop or user id → the tenant that owns it.

A webhook names a marketplace id, never our tenant. This lookup table (in `public`, touched alongside one
tenant's transaction only) routes it; past one machine it is the first hop before the tenant → cell directory.
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from persistence.core_models import MarketplaceDirectory


async def register(session: AsyncSession, tenant_id: int, platform: str, kind: str, key: str) -> None:
    """Remember that this tenant owns this listing, shop or user (the latest owner wins)."""
    statement = insert(MarketplaceDirectory).values(
        platform=platform, kind=kind, key=key, tenant_id=tenant_id
    )
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["platform", "kind", "key"], set_={"tenant_id": tenant_id}
        )
    )


async def tenants_of(session: AsyncSession, platform: str, kind: str, key: str) -> list[int]:
    """The tenant that owns this marketplace id (public table only)."""
    rows = await session.scalars(
        select(MarketplaceDirectory.tenant_id).where(
            MarketplaceDirectory.platform == platform,
            MarketplaceDirectory.kind == kind,
            MarketplaceDirectory.key == key,
        )
    )
    return list(rows)


async def forget(session: AsyncSession, platform: str, kind: str, key: str) -> None:
    """Drop one entry (an account deleted at the marketplace)."""
    await session.execute(
        delete(MarketplaceDirectory).where(
            MarketplaceDirectory.platform == platform,
            MarketplaceDirectory.kind == kind,
            MarketplaceDirectory.key == key,
        )
    )
