"""Tenant scoping, in exactly one place.

Every tenant transaction starts with `SET LOCAL search_path` naming that tenant's schema only, so the
scope ends with the transaction and can never leak to the next user of a pooled connection. The hot
paths' single statements name the schema instead (`in_schema`), so they need no transaction of their own.
The schema name is built from the integer tenant id alone, never from input.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from persistence.database import driver_connection


def tenant_schema(prefix: str, tenant_id: int) -> str:
    """Return the schema name of a tenant; refuse anything but a positive integer id."""
    if type(tenant_id) is not int or tenant_id <= 0:
        raise ValueError(f"tenant id must be a positive integer, got {tenant_id!r}")
    return f"{prefix}{tenant_id}"


_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]*")


@lru_cache(maxsize=4096)
def in_schema(statement: str, schema: str) -> str:
    """`statement` with every `{schema}` placeholder replaced by the quoted schema name.

    For a statement sent on its own (no `SET LOCAL search_path`, one round trip): it names every tenant
    table it touches as `{schema}.table`. Cached, so that one tenant's statement is the same string every
    time (asyncpg prepares it once per connection).
    """
    if not _SCHEMA_NAME.fullmatch(schema):
        raise ValueError(f"not a tenant schema name: {schema!r}")
    return statement.replace("{schema}", f'"{schema}"')


def search_path(schema: str) -> str:
    """The `search_path` value naming one tenant schema only (for `SET LOCAL` or `set_config`)."""
    # The schema comes from tenant_schema(): a fixed prefix and an integer, safe to quote as an identifier.
    if not _SCHEMA_NAME.fullmatch(schema):
        raise ValueError(f"not a tenant schema name: {schema!r}")
    return f'"{schema}"'


async def scope_to_tenant(target: AsyncSession | AsyncConnection, schema: str) -> None:
    """Point the current transaction (and only it) at one tenant schema."""
    statement = f"SET LOCAL search_path TO {search_path(schema)}"
    if isinstance(target, AsyncSession):
        # Straight on the session's asyncpg connection, in its transaction: every tenant request does this.
        await (await driver_connection(target)).execute(statement)
        return
    await target.execute(text(statement))


@asynccontextmanager
async def tenant_transaction(
    session_factory: async_sessionmaker[AsyncSession], prefix: str, tenant_id: int
) -> AsyncIterator[AsyncSession]:
    """Open a session whose single transaction is scoped to one tenant; commit on success.

    The context manager for jobs; HTTP requests get the same scoping from the gateway's unit of work.
    """
    schema = tenant_schema(prefix, tenant_id)
    async with session_factory() as session, session.begin():
        await scope_to_tenant(session, schema)
        yield session


@asynccontextmanager
async def tenant_connection(engine: AsyncEngine, prefix: str, tenant_id: int) -> AsyncIterator[Any]:
    """A pooled asyncpg connection in one transaction scoped to one tenant; commit on success.

    For the workers' hot path (a job's claim and its landing, each one statement): BEGIN and the
    `SET LOCAL` go in one round trip, and COMMIT in one more. On any error the connection is discarded
    (closing it ends the transaction on the server), so it never goes back to the pool mid-transaction.
    """
    schema = tenant_schema(prefix, tenant_id)
    async with engine.connect() as connection:
        raw: Any = (await connection.get_raw_connection()).driver_connection
        try:
            # Two statements in one simple query: one round trip. The name is quoted as in scope_to_tenant.
            await raw.execute(f'BEGIN; SET LOCAL search_path TO "{schema}"')
            yield raw
            await raw.execute("COMMIT")
        except BaseException:
            await connection.invalidate()
            raise
