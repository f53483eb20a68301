"""`stoflow queues`: per platform, how many rows wait in each state and the oldest pending age."""

from __future__ import annotations

from datetime import UTC, datetime

from ops.config.settings import Settings
from persistence import queue
from persistence.database import connect_database
from persistence.tenancy import tenant_transaction

COLUMNS = ("pending", "queued", "running", "rate_limited", "waiting_plugin", "failed")


async def collect_queue_stats(settings: Settings) -> dict[str, dict[str, float]]:
    """{platform: {status: count, ..., "oldest_pending_seconds": s}} over tenants with work."""
    database = connect_database(settings.async_database_url, pool_size=2)
    stats: dict[str, dict[str, float]] = {}
    now = datetime.now(UTC)
    try:
        async with database.session_factory() as session:
            tenants = await queue.tenants_with_work(session)
        for tenant_id, _version in tenants:
            async with tenant_transaction(
                database.session_factory, settings.tenant_schema_prefix, tenant_id
            ) as session:
                for platform, status, count, oldest in await queue.status_counts(session):
                    row = stats.setdefault(platform, dict.fromkeys((*COLUMNS, "oldest_pending_seconds"), 0.0))
                    row[status] = row.get(status, 0) + count
                    if status == "pending" and oldest is not None:
                        age = (now - oldest).total_seconds()
                        row["oldest_pending_seconds"] = max(row["oldest_pending_seconds"], age)
    finally:
        await database.dispose()
    return stats


async def print_queue_stats(settings: Settings) -> None:
    stats = await collect_queue_stats(settings)
    header = f"{'platform':<10}" + "".join(f"{name:>15}" for name in COLUMNS) + f"{'oldest pending':>16}"
    print(header)
    for platform in ("vinted", "ebay", "etsy", "ai"):
        row = stats.get(platform, {})
        cells = "".join(f"{int(row.get(name, 0)):>15}" for name in COLUMNS)
        print(f"{platform:<10}{cells}{row.get('oldest_pending_seconds', 0):>15.0f}s")
