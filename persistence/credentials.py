"""Connected marketplace accounts (tokens sealed by ops.secrets_box before they reach this module)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

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
