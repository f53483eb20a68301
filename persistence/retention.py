"""Retention: purge what has served its purpose, in small batches that never hold locks for long.

What goes (history is kept: `publications_history` is the user's record):
- `public.idempotency_keys` past 24 h (the replay window, docs/http-contract.md);
- `public.login_sessions` created before the retention age whose refresh tokens are all expired, spent
  or revoked (their refresh tokens go with them, by cascade);
- each tenant's finished `plugin_tasks` past the retention age.

Each batch is its own short transaction: `DELETE ... WHERE ctid IN (SELECT ctid ... LIMIT n)`, so the
rows locked at once are at most `batch_size` and nothing waits on a long purge.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import select, text
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from persistence.core_models import Tenant
from persistence.tenancy import scope_to_tenant, tenant_schema

IDEMPOTENCY_WINDOW = timedelta(hours=24)

_IDEMPOTENCY = """
DELETE FROM public.idempotency_keys WHERE ctid IN (
    SELECT ctid FROM public.idempotency_keys WHERE created_at < now() - CAST(:age AS interval) LIMIT :batch
)"""

_LOGIN_SESSIONS = """
DELETE FROM public.login_sessions WHERE ctid IN (
    SELECT s.ctid FROM public.login_sessions AS s
    WHERE s.created_at < now() - CAST(:age AS interval)
      AND NOT EXISTS (
          SELECT 1 FROM public.refresh_tokens AS r
          WHERE r.session_id = s.id AND r.expires_at > now()
            AND r.spent_at IS NULL AND r.revoked_at IS NULL
      )
    LIMIT :batch
)"""

# search_path is the tenant's schema for the transaction (SET LOCAL), so the table name is unqualified.
_PLUGIN_TASKS = """
DELETE FROM plugin_tasks WHERE ctid IN (
    SELECT ctid FROM plugin_tasks WHERE finished_at < now() - CAST(:age AS interval) LIMIT :batch
)"""


@dataclass
class RetentionReport:
    deleted: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    #: The longest single batch transaction, in seconds: the longest any row lock was held.
    longest_batch_seconds: float = 0.0
    #: Tenants whose schema could not be purged (one broken schema does not stop the others).
    failed_tenants: list[int] = field(default_factory=list)


async def _purge(
    engine: AsyncEngine,
    report: RetentionReport,
    name: str,
    statement: str,
    params: dict[str, object],
    schema: str | None = None,
) -> None:
    while True:
        started = time.perf_counter()
        async with engine.begin() as connection:
            if schema is not None:
                await scope_to_tenant(connection, schema)
            deleted = await _execute(connection, statement, params)
        report.longest_batch_seconds = max(report.longest_batch_seconds, time.perf_counter() - started)
        report.batches += 1
        report.deleted[name] = report.deleted.get(name, 0) + deleted
        # Until a batch finds nothing: a row updated meanwhile has a new ctid, so a batch can delete fewer
        # than it selected while expired rows remain.
        if deleted == 0:
            return


async def _execute(connection: AsyncConnection, statement: str, params: dict[str, object]) -> int:
    result = await connection.execute(text(statement), params)
    return int(result.rowcount or 0)


async def purge_expired(
    engine: AsyncEngine,
    prefix: str,
    *,
    login_session_age: timedelta,
    plugin_task_age: timedelta,
    batch_size: int = 1000,
) -> RetentionReport:
    """Delete every expired row, `batch_size` rows per transaction."""
    report = RetentionReport()
    await _purge(
        engine, report, "idempotency_keys", _IDEMPOTENCY, {"age": IDEMPOTENCY_WINDOW, "batch": batch_size}
    )
    await _purge(
        engine, report, "login_sessions", _LOGIN_SESSIONS, {"age": login_session_age, "batch": batch_size}
    )
    async with engine.connect() as connection:
        tenant_ids = list(await connection.scalars(select(Tenant.id).order_by(Tenant.id)))
    for tenant_id in tenant_ids:
        try:
            await _purge(
                engine,
                report,
                "plugin_tasks",
                _PLUGIN_TASKS,
                {"age": plugin_task_age, "batch": batch_size},
                schema=tenant_schema(prefix, tenant_id),
            )
        except ProgrammingError:  # a schema that is missing or not migrated yet
            report.failed_tenants.append(tenant_id)
    return report
