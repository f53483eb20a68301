"""Catalogue reads at 100,000 products: GET /api/products latency through the real app, next to raw SQL.

One tenant is registered through the API, its schema is bulk-loaded with COPY and ANALYZEd, then every
scenario (first page, a deep cursor page, filters, `q` searches) is requested through the whole FastAPI app
(httpx ASGITransport: middleware, auth, unit of work, tenant scoping, SQLAlchemy, serialisation) and, in
the same loop, the same SQL is run with a bare asyncpg connection. The ratio gateway/raw says what the
gateway adds around the query. The exact SQL the gateway sends is captured and EXPLAINed, custom and
generic plan, to show which index answers `q`.

    python -m bench.catalogue            # 100,000 products, 200 requests per scenario
    python -m bench.catalogue --quick    # 20,000 products, 50 requests per scenario
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
from sqlalchemy import event

from bench.common import (
    Catalogue,
    bench_settings,
    claimed_redis,
    copy_products,
    generate_products,
    machine_info,
    markdown_table,
    percentile,
    plain_dsn,
    register_tenant,
    scratch_database,
    service_versions,
    today,
    write_section,
)
from gateway.pagination import CursorCodec
from ops.config.logs import configure_logging
from persistence.products import like_pattern

PAGE = 50


@dataclass(frozen=True)
class Scenario:
    name: str
    params: dict[str, str]
    #: Raw SQL predicates (after `deleted_at IS NULL`) and their values, mirroring persistence.products.
    where: list[str]
    values: list[Any]


@dataclass
class Figures:
    gateway: list[float] = field(default_factory=list)
    raw: list[float] = field(default_factory=list)
    rows: int = 0
    matches: int = 0
    plan: str = ""
    generic_plan: str = ""


def _q_predicate(position: int) -> str:
    like = f"LIKE lower(${position}) ESCAPE '\\'"
    return f"(lower(title) {like} OR lower(sku) {like})"


async def _choose_scenarios(
    connection: asyncpg.Connection, schema: str, codec: CursorCodec
) -> list[Scenario]:
    """Pick filter values from the loaded data: a mid-popular brand, a rare one, a real SKU fragment."""
    brands = await connection.fetch(
        f"SELECT brand, count(*) AS n FROM {schema}.products WHERE deleted_at IS NULL "
        "GROUP BY brand ORDER BY n DESC"
    )
    mid_brand = brands[len(brands) // 10]["brand"]
    names = {
        row["code"]: row["name_en"]
        for row in await connection.fetch("SELECT code, name_en FROM product_attributes.brands")
    }
    # A rare brand whose name is plain letters: a selective `q` term (a few dozen titles).
    rare = next(
        names[row["brand"]]
        for row in reversed(brands)
        if names[row["brand"]].isalpha() and len(names[row["brand"]]) >= 6
    )
    category = await connection.fetchval(
        f"SELECT category FROM {schema}.products GROUP BY category ORDER BY count(*) DESC LIMIT 1"
    )
    ids = await connection.fetchrow(f"SELECT min(id) AS low, max(id) AS high FROM {schema}.products")
    deep_before = int(ids["low"] + (ids["high"] - ids["low"]) * 0.1)  # ~90% of the way down the list
    sku = await connection.fetchval(f"SELECT sku FROM {schema}.products WHERE id = $1", deep_before)
    fragment = sku.split("-")[1][2:7]
    cursor = codec.encode({"before_id": deep_before})
    q = _q_predicate(1)
    return [
        Scenario("first page", {}, [], []),
        Scenario("deep page (cursor, ~90% down)", {"cursor": cursor}, ["id < $1"], [deep_before]),
        Scenario("status=sold", {"status": "sold"}, ["status = $1"], ["sold"]),
        Scenario(f"brand={mid_brand}", {"brand": mid_brand}, ["brand = $1"], [mid_brand]),
        Scenario(f"category={category}", {"category": category}, ["category = $1"], [category]),
        Scenario(f"q={rare.lower()} (selective)", {"q": rare.lower()}, [q], [like_pattern(rare.lower())]),
        Scenario("q=vintage (common)", {"q": "vintage"}, [q], [like_pattern("vintage")]),
        Scenario(f"q={fragment} (SKU fragment)", {"q": fragment}, [q], [like_pattern(fragment)]),
        Scenario("q=zzqx (no match)", {"q": "zzqx"}, [q], [like_pattern("zzqx")]),
    ]


def _raw_sql(schema: str, scenario: Scenario) -> str:
    where = " AND ".join(["deleted_at IS NULL", *scenario.where])
    return f"SELECT * FROM {schema}.products WHERE {where} ORDER BY id DESC LIMIT {PAGE + 1}"


def _plan_summary(node: dict[str, Any]) -> str:
    """`Limit > Sort > Bitmap Heap Scan > BitmapOr(Bitmap Index Scan[ix_a], …)` from an EXPLAIN JSON plan."""
    label = str(node["Node Type"])
    if node.get("Index Name"):
        label += f"[{node['Index Name']}]"
    children = node.get("Plans") or []
    if not children:
        return label
    if len(children) == 1:
        return f"{label} > {_plan_summary(children[0])}"
    return f"{label}({', '.join(_plan_summary(child) for child in children)})"


@contextmanager
def captured_sql(engine: Any) -> Iterator[list[tuple[str, Any]]]:
    """Collect the (statement, parameters) the app's engine sends while the block runs."""
    seen: list[tuple[str, Any]] = []

    def before(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", before)


async def _explain(connection: asyncpg.Connection, schema: str, sql: str, params: Any) -> tuple[str, str]:
    """The plan of the gateway's own statement and its run time: the custom plan (what the first runs get)
    and the generic plan (what a cached prepared statement may switch to after five executions)."""
    await connection.execute(f"SET search_path TO {schema}, public")
    custom = json.loads(await connection.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", *params))[0]
    await connection.execute(f"PREPARE bench_generic AS {sql}")
    try:
        await connection.execute("SET plan_cache_mode = force_generic_plan")
        literals = ", ".join(_literal(value) for value in params)
        generic = json.loads(
            await connection.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE bench_generic({literals})")
        )[0]
    finally:
        await connection.execute("RESET plan_cache_mode")
        await connection.execute("DEALLOCATE bench_generic")
        await connection.execute("RESET search_path")
    return (
        f"{_plan_summary(custom['Plan'])} ({custom['Execution Time']:.1f} ms)",
        f"{_plan_summary(generic['Plan'])} ({generic['Execution Time']:.1f} ms)",
    )


def _literal(value: Any) -> str:
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


async def run(products: int, requests: int, warmup: int, seed: int) -> str:
    from gateway.app import create_app
    from migrations.runner import upgrade_tenant_schema

    load_before = os.getloadavg()[0]
    async with claimed_redis() as redis_url, scratch_database() as database_url:
        settings = bench_settings(database_url, redis_url)
        configure_logging(settings)
        versions = await service_versions(database_url, redis_url)
        app = create_app(settings, tenant_migrator=upgrade_tenant_schema)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                headers, tenant_id = await register_tenant(client, "catalogue")
                schema = f"{settings.tenant_schema_prefix}{tenant_id}"
                raw = await asyncpg.connect(plain_dsn(database_url))
                try:
                    started = time.perf_counter()
                    rows = generate_products(products, random.Random(seed), Catalogue.load())
                    generated = time.perf_counter() - started
                    await copy_products(raw, schema, rows)
                    loaded = time.perf_counter() - started - generated
                    await raw.execute(f"VACUUM ANALYZE {schema}.products")
                    print(f"generated {products} products in {generated:.1f}s, COPY {loaded:.1f}s")
                    codec = CursorCodec.from_settings(settings)
                    scenarios = await _choose_scenarios(raw, schema, codec)
                    engine = app.state.services.db.engine.sync_engine
                    results = {}
                    for scenario in scenarios:
                        results[scenario.name] = await _measure(
                            client, raw, engine, headers, schema, scenario, requests, warmup
                        )
                        figures = results[scenario.name]
                        print(
                            f"{scenario.name:38} gateway p50 {percentile(figures.gateway, 0.5):7.2f} ms  "
                            f"raw p50 {percentile(figures.raw, 0.5):7.2f} ms  rows {figures.rows}"
                        )
                finally:
                    await raw.close()
    load = f"{load_before:.1f} at start, {os.getloadavg()[0]:.1f} at end"
    return _report(products, requests, warmup, seed, versions, load, scenarios, results, loaded)


async def _measure(
    client: httpx.AsyncClient,
    raw: asyncpg.Connection,
    engine: Any,
    headers: dict[str, str],
    schema: str,
    scenario: Scenario,
    requests: int,
    warmup: int,
) -> Figures:
    figures = Figures()
    params = {"limit": str(PAGE), **scenario.params}
    sql = _raw_sql(schema, scenario)
    with captured_sql(engine) as seen:
        response = await client.get("/api/products", params=params, headers=headers)
    response.raise_for_status()
    figures.rows = len(response.json()["items"])
    statement, arguments = next((s, a) for s, a in seen if "FROM products" in s)
    figures.plan, figures.generic_plan = await _explain(raw, schema, statement, arguments)
    if scenario.where and "LIKE" in scenario.where[-1]:
        figures.matches = await raw.fetchval(
            f"SELECT count(*) FROM {schema}.products WHERE deleted_at IS NULL AND {scenario.where[-1]}",
            *scenario.values,
        )
    for index in range(warmup + requests):
        # Side by side: each iteration times the gateway, then the same SQL on a bare connection.
        started = time.perf_counter()
        response = await client.get("/api/products", params=params, headers=headers)
        gateway = time.perf_counter() - started
        assert response.status_code == 200, response.text
        started = time.perf_counter()
        fetched = await raw.fetch(sql, *scenario.values)
        direct = time.perf_counter() - started
        body = response.json()
        assert len(fetched) == len(body["items"]) + (1 if body["next_cursor"] else 0)
        if index >= warmup:
            figures.gateway.append(gateway * 1000)
            figures.raw.append(direct * 1000)
    return figures


def _report(
    products: int,
    requests: int,
    warmup: int,
    seed: int,
    versions: str,
    load: str,
    scenarios: list[Scenario],
    results: dict[str, Figures],
    loaded: float,
) -> str:
    rows = []
    plans = []
    for scenario in scenarios:
        figures = results[scenario.name]
        g50, g99 = percentile(figures.gateway, 0.5), percentile(figures.gateway, 0.99)
        r50, r99 = percentile(figures.raw, 0.5), percentile(figures.raw, 0.99)
        matches = f"{figures.matches:,}" if figures.matches or "q=" in scenario.name else "—"
        rows.append(
            [
                scenario.name,
                figures.rows,
                matches,
                f"{g50:.2f}",
                f"{g99:.2f}",
                f"{r50:.2f}",
                f"{r99:.2f}",
                f"{g50 / r50:.1f}x",
            ]
        )
        plans.append([scenario.name, f"`{figures.plan}`", f"`{figures.generic_plan}`"])
    table = markdown_table(
        [
            "scenario (limit 50)",
            "rows",
            "q matches",
            "gateway p50 ms",
            "gateway p99 ms",
            "raw p50 ms",
            "raw p99 ms",
            "gateway/raw p50",
        ],
        rows,
    )
    plan_table = markdown_table(
        ["scenario", "plan (custom), execution", "plan if generic (forced), execution"], plans
    )
    return f"""## Catalogue reads (`bench/catalogue.py`)

- Date: {today()}
- Machine: {machine_info()}; {versions} (all on this one machine, loopback)
- 1-minute load average: {load} (the machine is shared; absolute figures move with it, ratios much less)
- Command: `.venv/bin/python -m bench.catalogue --products {products} --requests {requests}` (seed {seed})
- Data: one tenant, {products:,} products bulk-loaded with COPY ({loaded:.1f}s, all indexes in place) then
  `VACUUM ANALYZE`; brands Zipf-distributed over the 417 reference brands, 2% soft-deleted.
- Method: {warmup} warm-up then {requests} sequential requests per scenario through the whole app (httpx
  ASGITransport, in process: middleware, JWT + session check, unit of work, `SET LOCAL search_path`,
  SQLAlchemy, pydantic). In the same loop, the same SQL (the gateway's query written by hand) on one bare
  asyncpg connection. Wall-clock per request; the client shares the event loop with the app.

{table}

EXPLAIN ANALYZE of the exact statement the gateway sent (captured from its engine). `q` is answered by the
trigram GIN indexes (BitmapOr of `ix_products_title_trgm` and `ix_products_sku_trgm`) when the term is
selective; for a common term the planner rightly walks `ix_products_live_id` backwards and stops after 51
hits. The right column is the plan PostgreSQL would use if a cached prepared statement (SQLAlchemy's asyncpg
dialect prepares every statement) switched to a generic plan; it did not during this run (see the
`q` p99s), but with a generic plan a rare or absent term scans the whole table.

{plan_table}

Notes (what limits these figures):
- Every figure is CPU in the one Python process: a 50-row page costs ~10-15 ms of gateway CPU against
  ~1 ms of SQL. A cProfile of `GET /api/products` (same data, same machine) puts the time in
  `ProductOut.fields_of` (gateway/schemas/products.py: `hasattr` + `getattr` on ~35 ORM attributes per row,
  then pydantic validation per row, ~30% of the request), SQLAlchemy ORM hydration of 51 rows, FastAPI
  dependency solving, and the sync `def` dependencies (`services_of`, `request_session`, `page_request`)
  that FastAPI runs in the thread pool, ~12 thread hops per request.
- Besides the query, each request runs the session check (`login_session_usable`) and
  `SET LOCAL search_path`, and the pool's pre-ping, in their own round trips.
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="20,000 products, 50 requests per scenario")
    parser.add_argument("--no-record", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()
    if args.quick:
        args.products, args.requests, args.warmup = 20_000, 50, 10
    report = asyncio.run(run(args.products, args.requests, args.warmup, args.seed))
    print(report)
    if not args.no_record:
        write_section("catalogue", report)


if __name__ == "__main__":
    main()
