"""Tenants, users, login sessions and refresh tokens (all in `public`).

A new tenant's schema is created by a `TenantSchemaMigrator` the caller passes in: persistence names what
it needs, and whoever starts the process (the runtime, a test) hands it
`migrations.runner.upgrade_tenant_schema`, so this floor never imports the migrations above it.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from persistence.core_models import LoginSession, RefreshToken, SubscriptionQuota, Tenant, User
from persistence.database import driver_connection
from persistence.tenancy import search_path, tenant_schema

# Serialises registrations so that TENANT_MAX_SCHEMAS is a hard limit.
_REGISTRATION_LOCK = 7_301_002


async def lock_registrations(session: AsyncSession) -> None:
    """Take the registration lock for the rest of the transaction."""
    await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _REGISTRATION_LOCK})


async def count_tenants(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(Tenant)) or 0)


async def tier_exists(session: AsyncSession, tier: str) -> bool:
    return await session.get(SubscriptionQuota, tier) is not None


async def email_registered(session: AsyncSession, email: str) -> bool:
    found = await session.scalar(select(User.id).where(func.lower(User.email) == email.lower()))
    return found is not None


async def add_tenant(session: AsyncSession, *, name: str, tier: str) -> Tenant:
    tenant = Tenant(name=name, tier=tier)
    session.add(tenant)
    await session.flush()
    return tenant


class TenantSchemaMigrator(Protocol):
    """Create `schema` if missing and bring it to the newest tenant migration, on the caller's connection."""

    def __call__(self, connection: AsyncConnection, schema: str, /) -> Awaitable[object]: ...


async def create_tenant_schema(
    session: AsyncSession, prefix: str, tenant_id: int, migrate: TenantSchemaMigrator
) -> str:
    """Create and migrate the tenant's schema inside the caller's transaction."""
    schema = tenant_schema(prefix, tenant_id)
    connection = await session.connection()
    await migrate(connection, schema)
    # The migration scoped the transaction to the new schema; nothing after it needs that.
    await connection.execute(text("SET LOCAL search_path TO public"))
    return schema


async def add_user(session: AsyncSession, user: User) -> User:
    session.add(user)
    await session.flush()
    await session.refresh(user)
    return user


async def find_user_by_email(session: AsyncSession, email: str) -> User | None:
    result = await session.scalars(select(User).where(func.lower(User.email) == email.lower()))
    return result.first()


async def get_user(session: AsyncSession, user_id: int) -> User | None:
    return await session.get(User, user_id)


async def start_login_session(session: AsyncSession, user_id: int, source: str) -> LoginSession:
    login = LoginSession(id=uuid.uuid4(), user_id=user_id, source=source)
    session.add(login)
    await session.flush()
    return login


async def store_refresh_token(
    session: AsyncSession, *, jti: uuid.UUID, session_id: uuid.UUID, expires_at: datetime
) -> None:
    session.add(RefreshToken(jti=jti, session_id=session_id, expires_at=expires_at))
    await session.flush()


async def lock_refresh_token(session: AsyncSession, jti: uuid.UUID) -> RefreshToken | None:
    """Fetch a refresh token row and lock it, so two racing refreshes cannot both spend it."""
    result = await session.scalars(select(RefreshToken).where(RefreshToken.jti == jti).with_for_update())
    return result.first()


async def spend_refresh_token(session: AsyncSession, token: RefreshToken) -> None:
    token.spent_at = datetime.now(UTC)
    await session.flush()


async def revoke_login_chain(session: AsyncSession, session_id: uuid.UUID) -> None:
    """Kill every refresh token of a login and mark the login compromised (its access tokens die too)."""
    now = datetime.now(UTC)
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.session_id == session_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    await session.execute(
        update(LoginSession)
        .where(LoginSession.id == session_id, LoginSession.compromised_at.is_(None))
        .values(compromised_at=now)
    )


async def login_session_usable(session: AsyncSession, session_id: uuid.UUID, user_id: int) -> bool:
    """True when the login exists, belongs to the user, was not ended and was not found compromised."""
    found = await session.scalar(
        select(LoginSession.id).where(
            LoginSession.id == session_id,
            LoginSession.user_id == user_id,
            LoginSession.compromised_at.is_(None),
            LoginSession.ended_at.is_(None),
        )
    )
    return found is not None


async def access_role(
    session: AsyncSession,
    *,
    session_id: uuid.UUID,
    user_id: int,
    tenant_id: int | None,
    scope_to: str | None = None,
) -> str | None:
    """The user's role when the token's user, tenant (None: an operator's) and live login all agree, in one
    query; else None.

    `scope_to`: a tenant schema (from `tenancy.tenant_schema`) the session's transaction is scoped to by
    the same statement when, and only when, the login is live (as `tenancy.scope_to_tenant`, in one round
    trip less).
    """
    # Every authenticated request asks this: straight on the session's asyncpg connection (in its
    # transaction), without SQLAlchemy's statement compiling and result processing.
    connection = await driver_connection(session)
    if scope_to is None:
        role: str | None = await connection.fetchval(_ACCESS_ROLE, session_id, user_id, tenant_id)
        return role
    row = await connection.fetchrow(
        _ACCESS_ROLE_SCOPED, session_id, user_id, tenant_id, search_path(scope_to)
    )
    return None if row is None else str(row["role"])


_ACCESS_ROLE = (
    "SELECT u.role FROM public.users AS u JOIN public.login_sessions AS s ON s.user_id = u.id "
    "WHERE s.id = $1 AND u.id = $2 AND u.tenant_id IS NOT DISTINCT FROM $3::bigint "
    "AND s.compromised_at IS NULL AND s.ended_at IS NULL"
)
# The same, setting the transaction's search_path (`SET LOCAL`) on the row it finds.
_ACCESS_ROLE_SCOPED = (
    "SELECT u.role, set_config('search_path', $4, true) FROM public.users AS u "
    "JOIN public.login_sessions AS s ON s.user_id = u.id "
    "WHERE s.id = $1 AND u.id = $2 AND u.tenant_id IS NOT DISTINCT FROM $3::bigint "
    "AND s.compromised_at IS NULL AND s.ended_at IS NULL"
)


async def end_login_session(session: AsyncSession, session_id: uuid.UUID) -> None:
    """Logout: revoke the login's refresh tokens and refuse its access tokens from now on."""
    now = datetime.now(UTC)
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.session_id == session_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    await session.execute(
        update(LoginSession)
        .where(LoginSession.id == session_id, LoginSession.ended_at.is_(None))
        .values(ended_at=now)
    )
