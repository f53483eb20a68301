"""The two migration histories: all tenants upgraded, idempotent, resumable, crash-safe, as the models say."""

from __future__ import annotations

import asyncio
import importlib
import os
import pkgutil
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, ForeignKeyConstraint, text

import persistence
from migrations.runner import head_revision, migrate_tenants
from ops.config.settings import Settings
from persistence.base import CoreBase, TenantBase
from persistence.database import Database, connect_database
from persistence.tenancy import tenant_schema
from tests.scale import KILLED_MIGRATION_TENANTS, MIGRATION_TENANTS
from tests.support import pg_connection, schema_names, schema_tables
from tests.tenant_schemas import replayed_tenant_migration

ROOT = Path(__file__).resolve().parents[2]
CORE_SCHEMAS = {"public", "product_attributes"}

# Register every model module's tables on the two metadata objects.
for _module in pkgutil.iter_modules(persistence.__path__):
    if _module.name.endswith("_models"):
        importlib.import_module(f"persistence.{_module.name}")

TENANT_TABLES = set(TenantBase.metadata.tables) | {"alembic_version"}


@pytest.fixture
async def database(migrated: Settings) -> AsyncIterator[Database]:
    database = connect_database(migrated.async_database_url, pool_size=4, max_overflow=0)
    try:
        yield database
    finally:
        await database.dispose()


async def _new_tenants(connection: asyncpg.Connection, count: int, label: str) -> list[int]:
    """Tenant rows without schemas, as if created before a migration ran."""
    rows = await connection.fetch(
        "INSERT INTO public.tenants (name, tier) SELECT $1 || n, 'free' FROM generate_series(1, $2) AS n "
        "RETURNING id",
        label,
        count,
    )
    return sorted(int(row["id"]) for row in rows)


async def _version(connection: asyncpg.Connection, schema: str) -> str | None:
    if "alembic_version" not in await schema_tables(connection, schema):
        return None
    value: str | None = await connection.fetchval(f'SELECT version_num FROM "{schema}".alembic_version')
    return value


async def _assert_at_head(connection: asyncpg.Connection, schema: str) -> None:
    await _assert_all_at_head(connection, [schema])


async def _assert_all_at_head(connection: asyncpg.Connection, schemas: list[str]) -> None:
    """Every schema holds exactly the tenant tables, with alembic_version at the head revision."""
    rows = await connection.fetch(
        "SELECT n.nspname AS schema, array_agg(c.relname::text) AS tables FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = ANY($1::text[]) AND c.relkind IN ('r', 'v', 'p') GROUP BY n.nspname",
        schemas,
    )
    tables = {row["schema"]: set(row["tables"]) for row in rows}
    assert {schema: tables.get(schema, set()) for schema in schemas} == dict.fromkeys(schemas, TENANT_TABLES)
    versions = await connection.fetch(
        " UNION ALL ".join(
            f"SELECT '{schema}' AS schema, version_num FROM \"{schema}\".alembic_version"
            for schema in schemas
        )
    )
    assert sorted((row["schema"], row["version_num"]) for row in versions) == sorted(
        (schema, head_revision("tenant")) for schema in schemas
    )


async def test_fifty_tenants_are_upgraded_then_left_alone(migrated: Settings, database: Database) -> None:
    """The migration must-show's 50 tenants under STOFLOW_TEST_SCALE=full; 20 in CI (tests/scale.py)."""
    prefix = migrated.tenant_schema_prefix
    async with pg_connection(migrated) as connection:
        ids = await _new_tenants(connection, MIGRATION_TENANTS, "batch-")
        assert not {tenant_schema(prefix, i) for i in ids} & await schema_names(connection)

    report = await migrate_tenants(database.engine, prefix, ids, concurrency=4)
    assert report.failed == {}
    assert report.upgraded == ids
    assert report.already_current == []
    async with pg_connection(migrated) as connection:
        await _assert_all_at_head(connection, [tenant_schema(prefix, i) for i in ids])

    again = await migrate_tenants(database.engine, prefix, ids, concurrency=4)
    assert again.failed == {}
    assert again.upgraded == []
    assert again.already_current == ids


async def test_one_failing_schema_does_not_stop_the_others_and_a_rerun_finishes_it(
    migrated: Settings, database: Database
) -> None:
    prefix = migrated.tenant_schema_prefix
    async with pg_connection(migrated) as connection:
        ids = await _new_tenants(connection, 12, "resumable-")
        broken = ids[5]
        broken_schema = tenant_schema(prefix, broken)
        # A view squatting on the name of the first table makes that schema's migration fail.
        await connection.execute(f'CREATE SCHEMA "{broken_schema}"')
        await connection.execute(f'CREATE VIEW "{broken_schema}".products AS SELECT 1 AS id')

    report = await migrate_tenants(database.engine, prefix, ids, concurrency=4)
    assert set(report.failed) == {broken}
    assert report.upgraded == [i for i in ids if i != broken]
    async with pg_connection(migrated) as connection:
        # Left as it was: no version table, no half of the tables.
        assert await schema_tables(connection, broken_schema) == {"products"}
        assert await _version(connection, broken_schema) is None
        await _assert_all_at_head(connection, [tenant_schema(prefix, i) for i in report.upgraded])
        await connection.execute(f'DROP VIEW "{broken_schema}".products')

    rerun = await migrate_tenants(database.engine, prefix, ids, concurrency=4)
    assert rerun.failed == {}
    assert rerun.upgraded == [broken]
    assert rerun.already_current == [i for i in ids if i != broken]
    async with pg_connection(migrated) as connection:
        await _assert_at_head(connection, broken_schema)


async def test_concurrent_migrations_of_the_same_tenants_agree(
    migrated: Settings, database: Database
) -> None:
    """Two operators (or two replicas) migrating at once: each schema is upgraded exactly once."""
    prefix = migrated.tenant_schema_prefix
    async with pg_connection(migrated) as connection:
        ids = await _new_tenants(connection, 6, "twice-")
    first, second = await asyncio.gather(
        migrate_tenants(database.engine, prefix, ids, concurrency=2),
        migrate_tenants(database.engine, prefix, ids, concurrency=2),
    )
    assert first.failed == {}
    assert second.failed == {}
    assert sorted(first.upgraded + second.upgraded) == ids
    assert sorted(first.already_current + second.already_current) == ids


async def test_a_killed_migration_leaves_clean_schemas_and_a_rerun_finishes(
    migrated: Settings, database: Database, redis_url: str
) -> None:
    """A batch of 50 tenants killed mid-way under STOFLOW_TEST_SCALE=full (the migration must-show); 20 in
    CI (tests/scale.py), still killed mid-batch (the test fails when the migration finished first)."""
    prefix = migrated.tenant_schema_prefix
    async with pg_connection(migrated) as connection:
        ids = await _new_tenants(connection, KILLED_MIGRATION_TENANTS, "crash-")
    schemas = [tenant_schema(prefix, i) for i in ids]
    environment = {
        **os.environ,
        "DATABASE_URL": migrated.async_database_url,
        "REDIS_URL": redis_url,
        "STOFLOW_ENV": "test",
        "LOG_LEVEL": "WARNING",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ops",
        "migrate",
        "--concurrency",
        "2",
        cwd=ROOT,
        env=environment,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    committed_at_kill = 0
    try:
        async with pg_connection(migrated) as connection:
            deadline = time.monotonic() + 20
            # Kill it as soon as at least one schema of the batch was committed.
            while time.monotonic() < deadline and process.returncode is None:
                committed_at_kill = await connection.fetchval(
                    "SELECT count(*) FROM pg_namespace WHERE nspname = ANY($1::text[])", schemas
                )
                if committed_at_kill:
                    break
                await asyncio.sleep(0.01)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGKILL)
        await asyncio.wait_for(process.wait(), timeout=10)
    assert process.returncode == -signal.SIGKILL, "the migration finished before it could be killed"
    assert committed_at_kill >= 1

    async with pg_connection(migrated) as connection:
        # The server drops the killed client's open transactions; wait until its sessions are gone.
        for _ in range(200):
            busy = await connection.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()"
            )
            if not busy:
                break
            await asyncio.sleep(0.02)
        existing = set(schemas) & await schema_names(connection)
        assert existing, "no schema of the batch was committed before the kill"
        half_done = 0
        for schema in existing:
            tables = await schema_tables(connection, schema)
            if tables:
                await _assert_at_head(connection, schema)
            else:
                half_done += 1
        # Schema and tables commit together: an empty schema would be a half-applied migration.
        assert half_done == 0

    report = await migrate_tenants(database.engine, prefix, ids, concurrency=4)
    assert report.failed == {}
    assert sorted(report.upgraded + report.already_current) == ids
    assert len(report.upgraded) == len(ids) - len(existing)
    async with pg_connection(migrated) as connection:
        await _assert_all_at_head(connection, schemas)


def _tenant_differences(connection: Connection, schema: str) -> list[Any]:
    connection.execute(text(f'SET LOCAL search_path TO "{schema}"'))
    context = MigrationContext.configure(
        connection,
        opts={
            "compare_type": True,
            "include_name": lambda name, type_, _parent: not (type_ == "table" and name == "alembic_version"),
        },
    )
    return list(compare_metadata(context, TenantBase.metadata))


def _include_core(name: str | None, type_: str, _parent: object) -> bool:
    if type_ == "schema":
        return name is None or name in CORE_SCHEMAS
    return not (type_ == "table" and name == "alembic_version")


def _core_differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "include_schemas": True, "include_name": _include_core}
    )
    return _without_search_path_noise(list(compare_metadata(context, CoreBase.metadata)))


def _fk_signature(constraint: ForeignKeyConstraint) -> tuple[Any, ...]:
    targets = tuple(element.target_fullname.removeprefix("public.") for element in constraint.elements)
    columns = tuple(element.parent.name for element in constraint.elements)
    return (constraint.name, constraint.table.name, columns, targets, constraint.ondelete)


def _without_search_path_noise(differences: list[Any]) -> list[Any]:
    """Drop remove_fk/add_fk pairs that differ only by an explicit `public.` in the referred table.

    PostgreSQL reflects a foreign key to a table on the search_path without its schema, while the models
    name `public` explicitly: the same constraint then shows up as removed and added again.
    """
    removed = {_fk_signature(diff[1]) for diff in differences if diff[0] == "remove_fk"}
    added = {_fk_signature(diff[1]) for diff in differences if diff[0] == "add_fk"}
    same = removed & added
    return [
        diff
        for diff in differences
        if not (
            isinstance(diff, tuple) and diff[0] in {"remove_fk", "add_fk"} and _fk_signature(diff[1]) in same
        )
    ]


async def test_a_migrated_tenant_schema_matches_the_models(migrated: Settings, database: Database) -> None:
    prefix = migrated.tenant_schema_prefix
    async with pg_connection(migrated) as connection:
        (tenant_id,) = await _new_tenants(connection, 1, "compare-")
    report = await migrate_tenants(database.engine, prefix, [tenant_id])
    assert report.upgraded == [tenant_id]
    async with database.engine.connect() as connection:
        differences = await connection.run_sync(_tenant_differences, tenant_schema(prefix, tenant_id))
        trigram = await connection.scalar(text("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'"))
    if trigram is None:
        # A server without pg_trgm gets no search indexes, by design of migration 0001.
        differences = [diff for diff in differences if "_trgm" not in str(diff)]
    assert differences == []


async def _schema_catalogue(connection: asyncpg.Connection, schema: str) -> dict[str, list[tuple[Any, ...]]]:
    """Columns, constraints, indexes and sequences of a schema, its own name written as `S`."""

    def same_name(rows: list[asyncpg.Record]) -> list[tuple[Any, ...]]:
        return sorted(tuple(str(v).replace(f'"{schema}"', "S").replace(schema, "S") for v in r) for r in rows)

    return {
        "columns": same_name(
            await connection.fetch(
                "SELECT table_name, column_name, ordinal_position, data_type, udt_name, is_nullable, "
                "column_default, character_maximum_length, numeric_precision, numeric_scale "
                "FROM information_schema.columns WHERE table_schema = $1",
                schema,
            )
        ),
        "constraints": same_name(
            await connection.fetch(
                "SELECT t.relname, c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c "
                "JOIN pg_class t ON t.oid = c.conrelid WHERE c.connamespace = $1::regnamespace",
                schema,
            )
        ),
        "indexes": same_name(
            await connection.fetch("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1", schema)
        ),
        "sequences": same_name(
            await connection.fetch(
                "SELECT sequence_name, data_type, start_value, increment "
                "FROM information_schema.sequences WHERE sequence_schema = $1",
                schema,
            )
        ),
    }


async def test_the_suites_replayed_tenant_migration_builds_what_the_migration_builds(
    migrated: Settings, database: Database
) -> None:
    """The apps the tests build register tenants through tests/tenant_schemas.py, which replays the tenant
    migration's recorded statements: their schemas must be the migration's, column for column."""
    prefix = migrated.tenant_schema_prefix
    async with pg_connection(migrated) as connection:
        by_alembic, replayed = await _new_tenants(connection, 2, "replay-")
    await migrate_tenants(database.engine, prefix, [by_alembic])
    async with database.engine.begin() as connection:
        assert await replayed_tenant_migration(connection, tenant_schema(prefix, replayed))
    async with pg_connection(migrated) as connection:
        await _assert_all_at_head(connection, [tenant_schema(prefix, replayed)])
        expected = await _schema_catalogue(connection, tenant_schema(prefix, by_alembic))
        assert await _schema_catalogue(connection, tenant_schema(prefix, replayed)) == expected
        assert all(expected.values())
    # An existing schema is left to the real migration, which finds it at the head.
    report = await migrate_tenants(database.engine, prefix, [replayed])
    assert report.already_current == [replayed]


async def test_the_core_schemas_match_the_models(database: Database) -> None:
    async with database.engine.connect() as connection:
        differences = await connection.run_sync(_core_differences)
    assert differences == []


async def test_the_comparison_notices_a_drift(migrated: Settings, database: Database) -> None:
    """The comparison is not vacuous: a column the models do not know about is reported."""
    prefix = migrated.tenant_schema_prefix
    async with pg_connection(migrated) as connection:
        (tenant_id,) = await _new_tenants(connection, 1, "drift-")
    await migrate_tenants(database.engine, prefix, [tenant_id])
    schema = tenant_schema(prefix, tenant_id)
    async with database.engine.connect() as connection:
        await connection.execute(text(f'ALTER TABLE "{schema}".products ADD COLUMN stray integer'))
        differences = await connection.run_sync(_tenant_differences, schema)
        await connection.rollback()
    assert [diff[0] for diff in differences] == ["remove_column"]
    assert differences[0][3].name == "stray"
