"""Alembic environment of the tenant history, for `alembic revision --autogenerate` during development.

It compares the models with a scratch schema `tenant_template`; `stoflow migrate` applies the history to
every tenant schema (migrations/runner.py).
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import create_async_engine

from ops.config.settings import Settings
from persistence import tenant_models  # noqa: F401 - register tables
from persistence.base import TenantBase

SCHEMA = "tenant_template"


def _run(connection: Connection) -> None:
    connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
    connection.execute(text(f"SET search_path TO {SCHEMA}"))
    context.configure(
        connection=connection,
        target_metadata=TenantBase.metadata,
        version_table_schema=SCHEMA,
        include_name=lambda name, type_, _parent: not (type_ == "table" and name == "alembic_version"),
    )
    with context.begin_transaction():
        context.run_migrations()


async def _main() -> None:
    engine = create_async_engine(Settings().async_database_url)
    async with engine.begin() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


asyncio.run(_main())
