"""Alembic environment of the core history, for `alembic revision --autogenerate` during development.

Usage: `DATABASE_URL=... alembic -c migrations/alembic.ini -n core revision --autogenerate -m "..."`.
Applying migrations goes through `stoflow migrate` (migrations/runner.py).
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import create_async_engine

from ops.config.settings import Settings
from persistence import attribute_models, core_models, tenant_models  # noqa: F401 - register tables
from persistence.base import CoreBase


def _include_name(name: str | None, type_: str, _parent: object) -> bool:
    return type_ != "schema" or name in {"public", "product_attributes"}


def _run(connection: Connection) -> None:
    connection.execute(text("CREATE SCHEMA IF NOT EXISTS product_attributes"))
    context.configure(
        connection=connection,
        target_metadata=CoreBase.metadata,
        version_table_schema="public",
        include_schemas=True,
        include_name=_include_name,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _main() -> None:
    engine = create_async_engine(Settings().async_database_url)
    async with engine.begin() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


asyncio.run(_main())
