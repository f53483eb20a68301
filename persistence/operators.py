"""Operator accounts: users with role `operator` and no tenant (public only)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.errors import EmailTaken
from persistence.core_models import User

OPERATOR_ROLE = "operator"


async def set_operator_password(session: AsyncSession, email: str, password_hash: str) -> bool:
    """Create the operator or give it a new password; True when created. EmailTaken for a tenant's user."""
    found = await session.scalar(
        select(User).where(func.lower(User.email) == email.lower()).with_for_update()
    )
    if found is not None and found.role != OPERATOR_ROLE:
        raise EmailTaken("This email belongs to a reseller's account.", field="email")
    if found is not None:
        found.password_hash = password_hash
        await session.flush()
        return False
    session.add(User(tenant_id=None, email=email, password_hash=password_hash, role=OPERATOR_ROLE))
    await session.flush()
    return True
