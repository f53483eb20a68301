"""Connected marketplace accounts (tokens sealed by `ops.adapters.secrets_box` before they reach here)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from persistence.core_models import Tenant
from persistence.tenancy import scope_to_tenant, tenant_schema
from persistence.tenant_models import MarketplaceCredential


async def get_credential(session: AsyncSession, platform: str) -> MarketplaceCredential | None:
    return await session.scalar(
        select(MarketplaceCredential).where(MarketplaceCredential.platform == platform)
    )


async def connected_platforms(session: AsyncSession) -> set[str]:
    return set(await session.scalars(select(MarketplaceCredential.platform)))


async def put_credential(
    session: AsyncSession, platform: str, encrypted_tokens: bytes, settings: dict[str, Any]
) -> None:
    """Connect (or reconnect) a platform account."""
    statement = insert(MarketplaceCredential).values(
        platform=platform, encrypted_tokens=encrypted_tokens, settings=settings
    )
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["platform"],
            set_={
                "encrypted_tokens": statement.excluded.encrypted_tokens,
                "settings": statement.excluded.settings,
            },
        )
    )


async def replace_tokens(session: AsyncSession, platform: str, encrypted_tokens: bytes) -> None:
    """Store refreshed tokens (after an OAuth refresh)."""
    credential = await get_credential(session, platform)
    if credential is not None:
        credential.encrypted_tokens = encrypted_tokens
        await session.flush()


async def delete_credential(session: AsyncSession, platform: str) -> None:
    await session.execute(delete(MarketplaceCredential).where(MarketplaceCredential.platform == platform))


@dataclass
class ResealReport:
    """What a pass over every tenant's stored tokens found."""

    tenants: int = 0
    resealed: int = 0
    #: tenant id -> platforms whose tokens no key opens.
    unreadable: dict[int, list[str]] = field(default_factory=dict)


async def reseal_every_tenant(
    engine: AsyncEngine, prefix: str, reseal: Callable[[bytes], bytes], *, write: bool = True
) -> ResealReport:
    """Pass every tenant's sealed tokens through `reseal` (one transaction per tenant, rows locked).

    `reseal` raises ValueError for tokens it cannot open; those are reported and left as they are. With
    `write=False` nothing is stored: a check that every tenant's tokens can be opened.
    """
    report = ResealReport()
    async with engine.connect() as connection:
        tenant_ids = list(await connection.scalars(select(Tenant.id).order_by(Tenant.id)))
    for tenant_id in tenant_ids:
        async with engine.begin() as connection:
            await scope_to_tenant(connection, tenant_schema(prefix, tenant_id))
            rows = await connection.execute(
                select(
                    MarketplaceCredential.platform, MarketplaceCredential.encrypted_tokens
                ).with_for_update()
            )
            for platform, sealed in rows.all():
                try:
                    resealed = reseal(sealed)
                except ValueError:
                    report.unreadable.setdefault(tenant_id, []).append(platform)
                    continue
                if write:
                    await connection.execute(
                        update(MarketplaceCredential)
                        .where(MarketplaceCredential.platform == platform)
                        .values(encrypted_tokens=resealed)
                    )
                    report.resealed += 1
        report.tenants += 1
    return report
