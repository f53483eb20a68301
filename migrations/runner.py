"""Run the two Alembic histories: `core` once, `tenant` in every tenant schema.

Each tenant schema migrates in its own transaction (PostgreSQL DDL is transactional), under an advisory
lock, with its own `alembic_version` table: a crash leaves every schema at a clean revision, and a rerun
finishes the rest. Several schemas migrate at a time.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, MetaData, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from persistence.base import CoreBase, TenantBase
from persistence.tenancy import tenant_schema

log = structlog.get_logger(__name__)

_HERE = Path(__file__).parent
CORE = "core"
TENANT = "tenant"
# Arbitrary constants that name our advisory locks.
_CORE_LOCK = 7_301_001


@dataclass
class MigrationReport:
    """What one `migrate` run did."""

    core_revision: str | None = None
    upgraded: list[int] = field(default_factory=list)
    already_current: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)


def alembic_config(history: str) -> Config:
    """Return an in-memory Alembic config for one history (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", str(_HERE / history))
    return config


_scripts: dict[str, ScriptDirectory] = {}


def script_directory(history: str) -> ScriptDirectory:
    if history not in _scripts:
        _scripts[history] = ScriptDirectory.from_config(alembic_config(history))
    return _scripts[history]


def head_revision(history: str) -> str | None:
    return script_directory(history).get_current_head()


def _run_upgrade(connection: Connection, history: str, schema: str | None, metadata: MetaData) -> bool:
    """Upgrade one history on a connection already inside a transaction; True when anything ran."""
    script = script_directory(history)
    ran: list[str] = []

    def upgrade(revision: Any, _context: MigrationContext) -> Any:
        steps = script._upgrade_revs("head", revision)
        ran.extend(str(step) for step in steps)
        return steps

    with EnvironmentContext(alembic_config(history), script, fn=upgrade) as env:
        env.configure(
            connection=connection,
            target_metadata=metadata,
            version_table_schema=schema,
            transactional_ddl=True,
        )
        env.run_migrations()
    return bool(ran)


def upgrade_tenant_schema_sync(connection: Connection, schema: str) -> bool:
    """Create (if needed) and upgrade one tenant schema inside the caller's transaction."""
    connection.execute(text("SELECT pg_advisory_xact_lock(hashtext(:schema))"), {"schema": schema})
    connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    connection.execute(text(f'SET LOCAL search_path TO "{schema}"'))
    return _run_upgrade(connection, TENANT, schema, TenantBase.metadata)


# Alembic's `op` and `context` are module-global proxies: two upgrades interleaving on one event loop would
# run one tenant's DDL on another tenant's connection. Upgrades in one process therefore take turns (the
# connections, locks and commits of several tenants still overlap).
_upgrade_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def _upgrade_turn() -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    turn = _upgrade_turns.get(loop)
    if turn is None:
        turn = _upgrade_turns[loop] = asyncio.Lock()
    return turn


async def upgrade_tenant_schema(connection: AsyncConnection, schema: str) -> bool:
    async with _upgrade_turn():
        return await connection.run_sync(upgrade_tenant_schema_sync, schema)


def _upgrade_core_sync(connection: Connection) -> bool:
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CORE_LOCK})
    connection.execute(text("CREATE SCHEMA IF NOT EXISTS product_attributes"))
    return _run_upgrade(connection, CORE, "public", CoreBase.metadata)


async def upgrade_core(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade_core_sync)


async def tenant_ids(engine: AsyncEngine) -> list[int]:
    async with engine.connect() as connection:
        rows = await connection.execute(text("SELECT id FROM public.tenants ORDER BY id"))
        return [int(row[0]) for row in rows]


async def migrate_tenants(
    engine: AsyncEngine, prefix: str, ids: Iterable[int], concurrency: int = 4
) -> MigrationReport:
    """Upgrade the given tenants' schemas, `concurrency` at a time; one failure does not stop the rest."""
    report = MigrationReport(core_revision=head_revision(CORE))
    gate = asyncio.Semaphore(concurrency)

    async def one(tenant_id: int) -> None:
        schema = tenant_schema(prefix, tenant_id)
        async with gate:
            try:
                async with engine.begin() as connection:
                    changed = await upgrade_tenant_schema(connection, schema)
            except Exception as error:
                log.error("tenant_migration_failed", tenant_id=tenant_id, error=str(error))
                report.failed[tenant_id] = str(error)
                return
        (report.upgraded if changed else report.already_current).append(tenant_id)

    await asyncio.gather(*(one(tenant_id) for tenant_id in ids))
    report.upgraded.sort()
    report.already_current.sort()
    return report


async def migrate_all(engine: AsyncEngine, prefix: str, concurrency: int = 4) -> MigrationReport:
    """Upgrade core, then every tenant schema."""
    await upgrade_core(engine)
    return await migrate_tenants(engine, prefix, await tenant_ids(engine), concurrency)
