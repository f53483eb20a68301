"""New tenant schemas for the tests: the tenant migration recorded once per database, then replayed.

Every registration creates its tenant's schema through a `TenantSchemaMigrator`. Alembic's upgrade of a
fresh schema costs about 0.15 s of Python and round trips, and the suite registers well over a thousand
tenants, so the apps the tests build get `replayed_tenant_migration` instead: the first schema is made by
the real `migrations.runner.upgrade_tenant_schema_sync` while its statements are recorded, and every later
one runs the same statements in one round trip. The DDL is the migration's own, not the models': drift
between the two still fails tests/integration/test_migrations.py, which also checks that a replayed schema
is the migrated one. The processes of tests/e2e and `stoflow api` keep the real migrator.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Connection, event, text
from sqlalchemy.ext.asyncio import AsyncConnection

from migrations.runner import upgrade_tenant_schema, upgrade_tenant_schema_sync

#: Where the recording runs; dropped again in the same transaction. No tenant schema can have this name.
TEMPLATE_SCHEMA = "stoflow_test_tenant_template"
_TEMPLATE_NAME = re.compile(rf'"?{TEMPLATE_SCHEMA}"?')
#: What `upgrade_tenant_schema_sync` runs before Alembic; the replay runs its own for the new schema.
_PRELUDE = ("CREATE SCHEMA IF NOT EXISTS", "SET LOCAL search_path")


def _record(connection: Connection) -> str:
    """Migrate the template schema, drop it, and return the statements that built it as one script."""
    statements: list[str] = []

    def keep(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_rest: Any) -> None:
        stripped = statement.strip()
        # Reads (Alembic's catalogue look-ups, the migration's own checks) change nothing: the replay
        # skips them. Anything else must be self-contained to be replayed as text.
        if stripped.upper().startswith("SELECT") or stripped.startswith(_PRELUDE):
            return
        if parameters:
            raise RuntimeError(f"cannot replay a tenant migration statement with parameters: {stripped}")
        statements.append(stripped)

    event.listen(connection, "before_cursor_execute", keep)
    try:
        upgrade_tenant_schema_sync(connection, TEMPLATE_SCHEMA)
    finally:
        event.remove(connection, "before_cursor_execute", keep)
    connection.execute(text(f'DROP SCHEMA "{TEMPLATE_SCHEMA}" CASCADE'))
    return ";\n".join(statements) + ";"


class ReplayedTenantMigration:
    """A `TenantSchemaMigrator` that records the tenant migration on its first call per database."""

    def __init__(self) -> None:
        self._scripts: dict[str, str] = {}

    async def script(self, connection: AsyncConnection) -> str:
        """The recorded migration of the connection's database (recorded now, in its transaction, if new)."""
        # Two first calls at once both record (the template's advisory lock serialises them): harmless.
        database = str(connection.engine.url)
        if database not in self._scripts:
            self._scripts[database] = await connection.run_sync(_record)
        return self._scripts[database]

    async def __call__(self, connection: AsyncConnection, schema: str) -> bool:
        script = await self.script(connection)
        await connection.execute(text("SELECT pg_advisory_xact_lock(hashtext(:schema))"), {"schema": schema})
        exists = await connection.scalar(
            text("SELECT 1 FROM pg_namespace WHERE nspname = :schema"), {"schema": schema}
        )
        if exists:
            # Bringing an existing schema up to date is the real migration's job.
            return await upgrade_tenant_schema(connection, schema)
        await connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        await connection.execute(text(f'SET LOCAL search_path TO "{schema}"'))
        driver: Any = (await connection.get_raw_connection()).driver_connection
        # One simple-protocol message carries every statement: one round trip, no prepared statements.
        await driver.execute(_TEMPLATE_NAME.sub(f'"{schema}"', script))
        return True


#: The one the test apps share (tests/conftest.py `app`, tests/support.py `app_client`).
replayed_tenant_migration = ReplayedTenantMigration()
