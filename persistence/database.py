"""Engine and session factory: SQLAlchemy 2 asyncio over asyncpg."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection


@dataclass(frozen=True)
class Database:
    """The engine and the session factory built from it, created once per process."""

    engine: AsyncEngine
    session_factory: async_sessionmaker[AsyncSession]

    async def dispose(self) -> None:
        await self.engine.dispose()


def _refuse_closed_connection(
    dbapi_connection: Any, _record: ConnectionPoolEntry, _proxy: PoolProxiedConnection
) -> None:
    """Replace a pooled connection the server has closed (a restart, a terminated backend) at checkout.

    asyncpg notices the server's close on its socket without a round trip; the pool then opens a new
    connection (SQLAlchemy's custom pessimistic disconnect handling). This replaces `pool_pre_ping`, which
    costs three round trips per checkout with asyncpg (BEGIN, `;`, ROLLBACK). A connection that dies
    silently still fails its first statement, and that error invalidates the whole pool.
    """
    if dbapi_connection.driver_connection.is_closed():
        raise DisconnectionError("the server closed this pooled connection")


async def driver_connection(session: AsyncSession) -> Any:
    """The asyncpg connection under the session's transaction, for the hot paths' raw SQL.

    Statements sent on it run in the session's transaction (and its `SET LOCAL search_path`), without
    SQLAlchemy's per-statement work: compiling, caching, result processing. jsonb values cross it as text
    (the dialect's codecs).
    """
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    # SQLAlchemy's asyncpg adapter sends BEGIN with its first statement; a raw statement sent before any
    # of its own would run outside the session's transaction (and a `SET LOCAL` would do nothing), so
    # BEGIN goes first here when it has not been sent yet.
    adapted: Any = raw.dbapi_connection
    if getattr(adapted, "_transaction", False) is None:
        await adapted._start_transaction()
    return raw.driver_connection


def connect_database(url: str, *, pool_size: int = 10, max_overflow: int = 10) -> Database:
    """Build the engine for an `postgresql+asyncpg://` URL; no connection is opened yet."""
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=10,
        # Statement parameters (password hashes, tokens) never travel in an error's text or a log line.
        hide_parameters=True,
        connect_args={
            # A dead server must not hang a request forever.
            "timeout": 5,
            "command_timeout": 60,
            # asyncpg prepares every statement; a cached generic plan ignores the search term's
            # selectivity and can walk a whole table for a rare `q` (see bench/RESULTS.md).
            "server_settings": {"plan_cache_mode": "force_custom_plan"},
        },
    )
    event.listen(engine.sync_engine.pool, "checkout", _refuse_closed_connection)
    return Database(engine=engine, session_factory=async_sessionmaker(engine, expire_on_commit=False))


def asyncpg_dsn(url: str) -> str:
    """The plain `postgresql://` DSN asyncpg takes, from the `postgresql+asyncpg://` URL of the settings."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def connect_raw_pool(url: str, *, size: int, min_size: int = 1) -> Any:
    """An asyncpg pool of its own, without SQLAlchemy, for the hot paths' single statements.

    Same connection settings as `connect_database`, but generic plans. Each statement sent on it runs in
    its own transaction (`persistence.tenancy.in_schema` names the tenant's schema in it); jsonb values
    cross it as text. Nothing sent on it leaves state on the connection (no SET, no advisory lock, no
    LISTEN, no open transaction: a failed statement rolls its own back), so a connection goes back to the
    pool without asyncpg's reset query, one round trip per use saved. A transaction left open (a request
    cancelled in it) is still rolled back on release: asyncpg does that before calling the reset.
    `min_size=0` opens no connection until the first use (a gateway starts while PostgreSQL is down).
    """
    import asyncpg

    return await asyncpg.create_pool(
        asyncpg_dsn(url),
        min_size=min_size,
        max_size=size,
        timeout=5,
        command_timeout=60,
        # Unlike the sessions' pool: the statements sent here (a job's claim and landing) look rows up by
        # primary key, so one generic plan fits every call instead of planning their CTEs again each time.
        server_settings={"plan_cache_mode": "force_generic_plan"},
        reset=_keep_as_is,
    )


async def _keep_as_is(_connection: Any) -> None:
    """The raw pool's reset: nothing to undo (see `connect_raw_pool`)."""
