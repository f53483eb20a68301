"""Tenant isolation with pooled connections: per-transaction scoping that never leaks."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from gateway.dependencies import CurrentPrincipal, PublicSession, TenantSession, UnitOfWorkRoute
from ops.config.settings import Settings
from persistence.database import connect_database
from persistence.tenancy import tenant_connection, tenant_schema, tenant_transaction
from tests.support import app_client, bearer, pg_connection, register

TENANTS = 4
PRODUCTS_PER_TENANT = 3
REQUESTS = 160
DEFAULT_SEARCH_PATH = '"$user", public'


async def _tenant_skus(session: TenantSession, principal: CurrentPrincipal) -> dict[str, Any]:
    """Test-only: what the tenant-scoped session of this request sees."""
    # A tiny pause while the transaction is open makes requests overlap on the two pooled connections.
    await asyncio.sleep(random.random() / 500)
    skus = (await session.scalars(text("SELECT sku FROM products ORDER BY sku"))).all()
    schema = await session.scalar(text("SELECT current_schema()"))
    return {"tenant_id": principal.tenant_id, "schema": schema, "skus": list(skus)}


async def _public_search_path(session: PublicSession) -> dict[str, Any]:
    """Test-only: the search_path an unscoped request's transaction runs with."""
    return {"search_path": await session.scalar(text("SHOW search_path"))}


def _add_probe_routes(application: FastAPI) -> None:
    application.router.add_api_route(
        "/api/test-probe/skus", _tenant_skus, route_class_override=UnitOfWorkRoute
    )
    application.router.add_api_route(
        "/api/test-probe/search-path", _public_search_path, route_class_override=UnitOfWorkRoute
    )


async def test_concurrent_requests_only_see_their_own_tenant(migrated: Settings) -> None:
    settings = migrated.model_copy(update={"db_pool_size": 2, "db_max_overflow": 0})
    async with app_client(settings, _add_probe_routes) as http:
        tenants = [await register(http) for _ in range(TENANTS)]
        expected: dict[int, list[str]] = {}
        async with pg_connection(migrated) as connection:
            for tenant in tenants:
                tenant_id = tenant["user"]["tenant_id"]
                schema = tenant_schema(migrated.tenant_schema_prefix, tenant_id)
                skus = [f"T{tenant_id}-SKU-{n}" for n in range(PRODUCTS_PER_TENANT + tenant_id % 3)]
                await connection.executemany(
                    f'INSERT INTO "{schema}".products (sku, title, price) VALUES ($1, $2, 10.00)',
                    [(sku, f"Item {sku}") for sku in skus],
                )
                expected[tenant_id] = sorted(skus)

        plan = [tenants[n % TENANTS] for n in range(REQUESTS)]
        random.Random(7).shuffle(plan)

        async def probe(tenant: dict[str, Any], n: int) -> tuple[int, httpx.Response]:
            if n % 5 == 0:
                return 0, await http.get("/api/test-probe/search-path", headers=bearer(tenant))
            return tenant["user"]["tenant_id"], await http.get("/api/test-probe/skus", headers=bearer(tenant))

        results = await asyncio.gather(*(probe(tenant, n) for n, tenant in enumerate(plan)))

    seen_tenants: set[int] = set()
    public_probes = 0
    for tenant_id, response in results:
        assert response.status_code == 200, response.text
        body = response.json()
        if tenant_id == 0:
            public_probes += 1
            assert body["search_path"] == DEFAULT_SEARCH_PATH
            continue
        seen_tenants.add(tenant_id)
        assert body["tenant_id"] == tenant_id
        assert body["schema"] == tenant_schema(migrated.tenant_schema_prefix, tenant_id)
        assert body["skus"] == expected[tenant_id]
    assert seen_tenants == set(expected)
    assert public_probes == REQUESTS // 5


async def test_a_tenant_sees_no_rows_of_a_new_neighbour(migrated: Settings) -> None:
    async with app_client(migrated, _add_probe_routes) as http:
        tenant = await register(http)
        neighbour = await register(http)
        schema = tenant_schema(migrated.tenant_schema_prefix, neighbour["user"]["tenant_id"])
        async with pg_connection(migrated) as connection:
            await connection.execute(
                f"INSERT INTO \"{schema}\".products (sku, title, price) VALUES ('NEIGHBOUR-1', 'x', 1)"
            )
        mine = await http.get("/api/test-probe/skus", headers=bearer(tenant))
        theirs = await http.get("/api/test-probe/skus", headers=bearer(neighbour))
    assert mine.json()["skus"] == []
    assert theirs.json()["skus"] == ["NEIGHBOUR-1"]


async def test_tenant_scope_ends_with_the_transaction_on_the_same_connection(migrated: Settings) -> None:
    async with pg_connection(migrated) as connection:
        tenant_id = await connection.fetchval(
            "INSERT INTO public.tenants (name, tier) VALUES ('scope test', 'free') RETURNING id"
        )
    database = connect_database(migrated.async_database_url, pool_size=1, max_overflow=0)
    prefix = migrated.tenant_schema_prefix
    schema = tenant_schema(prefix, tenant_id)
    try:
        async with database.engine.begin() as connection:
            await connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        async with tenant_transaction(database.session_factory, prefix, tenant_id) as session:
            inside_pid = await session.scalar(text("SELECT pg_backend_pid()"))
            assert await session.scalar(text("SHOW search_path")) == schema
            assert await session.scalar(text("SELECT current_schema()")) == schema
        async with database.session_factory() as session:
            assert await session.scalar(text("SELECT pg_backend_pid()")) == inside_pid
            assert await session.scalar(text("SHOW search_path")) == DEFAULT_SEARCH_PATH

        # A transaction that fails inside the scope does not leave it behind either.
        async def failing_job() -> None:
            async with tenant_transaction(database.session_factory, prefix, tenant_id) as session:
                assert await session.scalar(text("SELECT pg_backend_pid()")) == inside_pid
                raise RuntimeError("job failed")

        with pytest.raises(RuntimeError, match="job failed"):
            await failing_job()
        async with database.session_factory() as session:
            assert await session.scalar(text("SELECT pg_backend_pid()")) == inside_pid
            assert await session.scalar(text("SHOW search_path")) == DEFAULT_SEARCH_PATH
    finally:
        await database.dispose()
        await _forget_tenant(migrated, tenant_id, schema)


async def test_the_workers_raw_tenant_connection_commits_or_leaves_nothing_behind(migrated: Settings) -> None:
    """The hot path's `tenant_connection` (BEGIN and SET LOCAL in one round trip): its scope and its
    writes end with it, and a failure inside it neither commits nor hands the pool an open transaction."""
    async with pg_connection(migrated) as connection:
        tenant_id = await connection.fetchval(
            "INSERT INTO public.tenants (name, tier) VALUES ('raw scope test', 'free') RETURNING id"
        )
    database = connect_database(migrated.async_database_url, pool_size=1, max_overflow=0)
    prefix = migrated.tenant_schema_prefix
    schema = tenant_schema(prefix, tenant_id)
    try:
        async with database.engine.begin() as connection:
            await connection.execute(text(f'CREATE SCHEMA "{schema}"'))
            await connection.execute(text(f'CREATE TABLE "{schema}".marks (name text)'))
        async with tenant_connection(database.engine, prefix, tenant_id) as raw:
            assert await raw.fetchval("SHOW search_path") == schema
            await raw.execute("INSERT INTO marks VALUES ('kept')")

        async def failing_job() -> None:
            async with tenant_connection(database.engine, prefix, tenant_id) as raw:
                await raw.execute("INSERT INTO marks VALUES ('dropped')")
                raise RuntimeError("job failed")

        with pytest.raises(RuntimeError, match="job failed"):
            await failing_job()

        async with database.session_factory() as session:
            assert await session.scalar(text("SHOW search_path")) == DEFAULT_SEARCH_PATH
            marks = (await session.scalars(text(f'SELECT name FROM "{schema}".marks'))).all()
        assert marks == ["kept"]
    finally:
        await database.dispose()
        await _forget_tenant(migrated, tenant_id, schema)


async def _forget_tenant(settings: Settings, tenant_id: int, schema: str) -> None:
    """Drop a hand-made tenant (its schema holds none of the tenant tables), so that tests reading every
    tenant afterwards (the operator console) meet only real tenants."""
    async with pg_connection(settings) as connection:
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await connection.execute("DELETE FROM public.tenants WHERE id = $1", tenant_id)


@pytest.mark.parametrize("bad_id", [0, -3, "7", "1; DROP SCHEMA public", True, 1.0, None])
def test_schema_names_come_from_positive_integers_only(bad_id: Any) -> None:
    with pytest.raises(ValueError, match="positive integer"):
        tenant_schema("user_", bad_id)
    assert tenant_schema("user_", 42) == "user_42"
