"""The operator console's overview: what `GET /api/ops/overview` costs as tenants grow.

    python -m bench.ops_overview             # 100 then 1,000 tenant schemas, 5 rounds x 200 requests
    python -m bench.ops_overview --small 20 --large 100 --requests 50 --no-record   # a quick look

Every tenant gets a schema with every table of a tenant schema: one is migrated by the tenant Alembic
history, the others are cloned from it (`CREATE TABLE ... (LIKE template INCLUDING ALL)`, without foreign
keys: migrating 1,000 schemas one by one takes half an hour on this machine). A fifth of them have queue
rows in each unfinished state and a failure. At each size, side by side in one run:

- `GET /api/ops/overview` through the whole app in process (httpx ASGITransport: middleware, the
  operator's token and session check, Redis reads), an operator's token, N sequential requests a round;
- the dispatcher's cross-tenant count that feeds it (one full count of the tenants with work, as after a
  dispatcher start; each sweep then recounts only the tenants that are due), timed once a round;
- the per-schema scan the overview avoids: `stoflow queues` (workers.queue_stats), which visits every
  tenant with work on each call, one call a round.

The 10,000-tenant figures are projected: the overview reads no tenant schema, so it is carried over from
the largest size; the scan and the dispatcher's count are extrapolated linearly from the two sizes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from typing import Any

import asyncpg
import httpx

from bench.common import bench_settings as make_settings
from bench.common import (
    claimed_redis,
    machine_info,
    markdown_table,
    percentile,
    plain_dsn,
    scratch_database,
    service_versions,
    today,
    write_section,
)
from ops.config.settings import Settings

#: A fifth of the tenants have queue rows (the others are idle, as most are at any moment).
BUSY_SHARE = 5
STATES = ("pending", "queued", "running", "waiting_plugin", "rate_limited", "failed")
PROJECTED = 10_000


async def _add_tenants(settings: Settings, count: int, template: str | None) -> tuple[list[int], str]:
    """Insert `count` tenants with schemas (the first migrated, the rest cloned); return ids, template."""
    from migrations.runner import migrate_tenants
    from persistence.database import connect_database

    prefix = settings.tenant_schema_prefix
    connection = await asyncpg.connect(plain_dsn(settings.database_url or ""))
    try:
        rows = await connection.fetch(
            "INSERT INTO public.tenants (name, tier) SELECT 'bench ' || n, 'free' "
            "FROM generate_series(1, $1) AS n RETURNING id",
            count,
        )
        ids = [int(row["id"]) for row in rows]
        if template is None:
            database = connect_database(settings.async_database_url, pool_size=2)
            try:
                await migrate_tenants(database.engine, prefix, ids[:1], 1)
            finally:
                await database.dispose()
            template, ids_to_clone = f"{prefix}{ids[0]}", ids[1:]
        else:
            ids_to_clone = ids
        tables = [
            str(row["tablename"])
            for row in await connection.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = $1", template
            )
        ]
        for tenant in ids_to_clone:
            schema = f"{prefix}{tenant}"
            statements = [f'CREATE SCHEMA "{schema}"'] + [
                f'CREATE TABLE "{schema}"."{table}" (LIKE "{template}"."{table}" INCLUDING ALL)'
                for table in tables
            ]
            await connection.execute(";".join(statements))
    finally:
        await connection.close()
    return ids, template


async def _add_work(settings: Settings, tenant_ids: list[int]) -> int:
    """Give every BUSY_SHARE-th tenant one job in each unfinished state and one failed job."""
    connection = await asyncpg.connect(plain_dsn(settings.database_url or ""))
    busy = tenant_ids[::BUSY_SHARE]
    try:
        for tenant in busy:
            schema = f"{settings.tenant_schema_prefix}{tenant}"
            for state in STATES:
                await connection.execute(
                    f'INSERT INTO "{schema}".plugin_queue (id, platform, action, status, lease_expires_at) '
                    "VALUES ($1, 'ebay', 'publish', $2, now() + interval '1 hour')",
                    uuid.uuid4(),
                    state,
                )
        await connection.executemany(
            "INSERT INTO public.tenant_work (tenant_id, due_at) VALUES ($1, now() + interval '1 hour') "
            "ON CONFLICT DO NOTHING",
            [(tenant,) for tenant in busy],
        )
        await connection.executemany(
            "INSERT INTO public.tenant_failures (tenant_id) VALUES ($1) ON CONFLICT DO NOTHING",
            [(tenant,) for tenant in busy],
        )
    finally:
        await connection.close()
    return len(busy)


async def _operator_headers(client: httpx.AsyncClient, settings: Settings) -> dict[str, str]:
    from ops.runtime.operators import create_operator

    email = f"bench-operator-{uuid.uuid4().hex[:8]}@bench.example.com"
    password, _created = await create_operator(settings, email)
    response = await client.post("/api/auth/login", json={"email": email, "password": password})
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def _dispatcher_count(settings: Settings) -> float:
    """Seconds for the dispatcher's full count of the tenants with work, published to Redis."""
    from workers.dispatcher import Dispatcher

    dispatcher = Dispatcher(settings)
    try:
        started = time.perf_counter()
        await dispatcher._count_idle_tenants(set())
        await dispatcher._publish_states()
        return time.perf_counter() - started
    finally:
        await dispatcher.close()


async def _scan(settings: Settings) -> float:
    from workers.queue_stats import collect_queue_stats

    started = time.perf_counter()
    await collect_queue_stats(settings)
    return time.perf_counter() - started


async def _measure(settings: Settings, rounds: int, requests: int) -> dict[str, Any]:
    from gateway.app import create_app
    from migrations.runner import upgrade_tenant_schema

    app = create_app(settings, tenant_migrator=upgrade_tenant_schema)
    overview: list[list[float]] = []
    counts: list[float] = []
    scans: list[float] = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            headers = await _operator_headers(client, settings)
            for _ in range(rounds):
                counts.append(await _dispatcher_count(settings))
                for _ in range(20):  # warm-up
                    (await client.get("/api/ops/overview", headers=headers)).raise_for_status()
                samples: list[float] = []
                for _ in range(requests):
                    started = time.perf_counter()
                    response = await client.get("/api/ops/overview", headers=headers)
                    samples.append(time.perf_counter() - started)
                    response.raise_for_status()
                overview.append(samples)
                scans.append(await _scan(settings))
            body = (await client.get("/api/ops/overview", headers=headers)).json()
    return {"overview": overview, "counts": counts, "scans": scans, "ebay": body["platforms"]["ebay"]}


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def _median(values: list[float]) -> float:
    return percentile(values, 0.5)


async def run(small: int, large: int, rounds: int, requests: int) -> str:
    load_before = os.getloadavg()[0]
    results: dict[int, dict[str, Any]] = {}
    busy: dict[int, int] = {}
    setup: dict[int, float] = {}
    async with scratch_database() as database_url, claimed_redis() as redis_url:
        versions = await service_versions(database_url, redis_url)
        settings = make_settings(database_url, redis_url)
        tenants: list[int] = []
        template: str | None = None
        with_work = 0
        for size in (small, large):
            started = time.perf_counter()
            added, template = await _add_tenants(settings, size - len(tenants), template)
            with_work += await _add_work(settings, added)
            busy[size] = with_work
            tenants += added
            setup[size] = time.perf_counter() - started
            results[size] = await _measure(settings, rounds, requests)
    load_after = os.getloadavg()[0]
    return _report(small, large, rounds, requests, results, busy, setup, versions, (load_before, load_after))


def _report(
    small: int,
    large: int,
    rounds: int,
    requests: int,
    results: dict[int, dict[str, Any]],
    busy: dict[int, int],
    setup: dict[int, float],
    versions: str,
    load: tuple[float, float],
) -> str:
    rows: list[list[object]] = []
    p99s: dict[int, float] = {}
    for size in (small, large):
        result = results[size]
        per_round_p99 = [percentile(samples, 0.99) for samples in result["overview"]]
        every = [sample for samples in result["overview"] for sample in samples]
        p99s[size] = _median(per_round_p99)
        rows.append(
            [
                f"{size:,}",
                f"{busy[size]:,}",
                _ms(percentile(every, 0.5)),
                _ms(p99s[size]),
                " / ".join(_ms(value) for value in per_round_p99),
                _ms(_median(result["counts"])),
                _ms(_median(result["scans"])),
                f"{_median(result['scans']) / percentile(every, 0.5):.0f}x",
            ]
        )

    def linear(key: str) -> float:
        low, high = _median(results[small][key]), _median(results[large][key])
        slope = (high - low) / (large - small)
        return high + slope * (PROJECTED - large)

    rows.append(
        [
            f"{PROJECTED:,} (projected)",
            f"{PROJECTED // BUSY_SHARE:,}",
            "—",
            f"≈ {_ms(p99s[large])} (flat: no tenant schema is read)",
            "—",
            f"≈ {_ms(linear('counts'))} (linear)",
            f"≈ {_ms(linear('scans'))} (linear)",
            "—",
        ]
    )
    table = markdown_table(
        [
            "tenant schemas",
            "with work",
            "overview p50 ms",
            "overview p99 ms (median of rounds)",
            "p99 per round ms",
            "dispatcher full count ms",
            "per-schema scan ms",
            "scan / overview p50",
        ],
        rows,
    )
    ebay = results[large]["ebay"]
    return f"""## Operator overview (`bench/ops_overview.py`)

- Date: {today()}
- Machine: {machine_info()}; {versions} (all on this one machine, loopback)
- 1-minute load average: {load[0]:.1f} at start, {load[1]:.1f} at end (shared machine)
- Command: `.venv/bin/python -m bench.ops_overview --small {small} --large {large} --rounds {rounds}
  --requests {requests}`
- Data: {small:,} then {large:,} tenants, each with a schema holding every tenant table (one migrated by
  the tenant Alembic history, the others cloned from it without foreign keys; setup {setup[small]:.0f}s
  then {setup[large]:.0f}s); every {BUSY_SHARE}th tenant has one queue row in each of
  {", ".join(STATES)} (so the {large:,}-tenant overview reports eBay pending {ebay["pending"]}, running
  {ebay["running"]}, waiting_plugin {ebay["waiting_plugin"]}).
- Method: per size, {rounds} rounds side by side; in each round the dispatcher's full count of the tenants
  with work (timed), 20 warm-up then {requests} sequential `GET /api/ops/overview` through the whole app in
  process (operator token + session check, Redis reads), then one per-schema scan (`stoflow queues`,
  `workers/queue_stats.py`) for comparison.

{table}

What grows with tenants: the overview reads one Redis hash of the dispatcher's counts, the last hour's
60 minute hashes in one pipelined round trip, and the heartbeat index: its cost is flat in the number of
tenants (and of schemas). The per-tenant work moved to the dispatcher, which counts a tenant's rows when it
sweeps that tenant anyway (only tenants that are due); a full count of every tenant with work happens once
after a dispatcher start and grows linearly with those tenants (projected above), not with requests. The
Vinted budgets (`/api/ops/vinted-budgets`) grow with the members active in the window, one indexed query
of `public.vinted_request_log`; `/api/ops/jobs` visits at most 25 schemas a page, chosen from the work and
failure indexes.
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--large", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--no-record", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()
    report = asyncio.run(run(args.small, args.large, args.rounds, args.requests))
    print(report)
    if not args.no_record:
        write_section("ops-overview", report)


if __name__ == "__main__":
    main()
