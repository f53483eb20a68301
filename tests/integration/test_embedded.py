"""Embedded PostgreSQL and Redis: start, serve clients and other processes, stop, restart on their data."""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from migrations.runner import migrate_all, migrate_tenants
from ops.config.settings import to_asyncpg_url
from ops.runtime.embedded import (
    EmbeddedService,
    free_port,
    service_answers_postgres,
    service_answers_redis,
    start_embedded_postgres,
    start_embedded_redis,
)
from persistence.database import connect_database
from persistence.products import ProductFilters, list_products
from persistence.tenancy import tenant_schema, tenant_transaction

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def postgres_root() -> Iterator[Path]:
    """A fresh data root outside /tmp/pytest-of-*: pytest keeps that folder 0700 (and re-tightens it at each
    session start, even another user's concurrent one), while PostgreSQL runs as the `pgserver` user when we
    are root and must reach its data directory."""
    root = ROOT / ".stoflow" / "test-embedded" / uuid.uuid4().hex
    root.mkdir(parents=True)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def stop_later() -> Iterator[list[EmbeddedService]]:
    """Stop whatever a test started, even when it fails half-way."""
    services: list[EmbeddedService] = []
    yield services
    for service in services:
        service.stop()


async def test_postgres_start_connect_stop_restart(
    postgres_root: Path, stop_later: list[EmbeddedService]
) -> None:
    service = start_embedded_postgres(postgres_root)
    stop_later.append(service)
    assert service.name == "postgres"
    assert service.url.startswith("postgresql://postgres@/stoflow?host=")
    assert service_answers_postgres(service.url)

    conn = await asyncpg.connect(service.url)
    try:
        assert await conn.fetchval("SELECT current_database()") == "stoflow"
        await conn.execute("CREATE TABLE kept (value text)")
        await conn.execute("INSERT INTO kept VALUES ('survives a restart')")
    finally:
        await conn.close()

    # What persistence does with DATABASE_URL: the same URL behind SQLAlchemy's asyncpg dialect.
    engine = create_async_engine(service.url.replace("postgresql://", "postgresql+asyncpg://", 1))
    try:
        async with engine.connect() as sa_conn:
            assert (await sa_conn.execute(text("SELECT count(*) FROM kept"))).scalar_one() == 1
    finally:
        await engine.dispose()

    # A second start from the same root shares the running server; only the last stop stops it.
    again = start_embedded_postgres(postgres_root)
    assert again.url == service.url
    again.stop()
    assert service_answers_postgres(service.url)

    service.stop()
    assert not service_answers_postgres(service.url)
    service.stop()  # idempotent

    restarted = start_embedded_postgres(postgres_root)
    stop_later.append(restarted)
    conn = await asyncpg.connect(restarted.url)
    try:
        assert await conn.fetchval("SELECT value FROM kept") == "survives a restart"
    finally:
        await conn.close()


def test_redis_start_connect_from_another_process_stop_restart(
    tmp_path: Path, stop_later: list[EmbeddedService]
) -> None:
    service = start_embedded_redis(tmp_path)
    stop_later.append(service)
    assert service.name == "redis"
    assert service.url.startswith("redis://127.0.0.1:")
    assert service.url.endswith("/0")
    assert service_answers_redis(service.url)

    # ARQ workers are other processes: they must reach it over TCP.
    other = subprocess.run(
        [
            sys.executable,
            "-c",
            "import redis, sys; client = redis.Redis.from_url(sys.argv[1]); "
            "client.set('greeting', 'hello'); print(client.get('greeting').decode())",
            service.url,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert other.stdout.strip() == "hello"

    service.stop()
    assert not service_answers_redis(service.url)

    restarted = start_embedded_redis(tmp_path)
    stop_later.append(restarted)
    assert restarted.url == service.url  # the port is kept, so REDIS_URL stays valid
    client = redis.Redis.from_url(restarted.url)
    try:
        assert client.get("greeting") == b"hello"  # saved on shutdown, loaded on start
    finally:
        client.close()
    assert (tmp_path / "redis" / "dump.rdb").exists()


def test_probes_say_no_when_nothing_answers(tmp_path: Path) -> None:
    port = free_port()
    assert not service_answers_redis(f"redis://127.0.0.1:{port}/0", timeout=0.5)
    assert not service_answers_postgres(f"postgresql://postgres@127.0.0.1:{port}/stoflow", timeout=0.5)
    assert not service_answers_postgres(f"postgresql://postgres@/stoflow?host={tmp_path}", timeout=0.5)
    assert not service_answers_redis("not a url")


@contextlib.contextmanager
def captured_statements(engine: AsyncEngine) -> Iterator[list[tuple[str, Any]]]:
    """Record every statement the engine sends, with its parameters, as the database receives them."""
    sent: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        sent.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


async def test_a_q_search_on_the_embedded_server_uses_the_trigram_index(
    postgres_root: Path, stop_later: list[EmbeddedService]
) -> None:
    """What `stoflow up` gets with no DATABASE_URL: pg_trgm, the search indexes, and a plan that uses them."""
    service = start_embedded_postgres(postgres_root)
    stop_later.append(service)
    database = connect_database(to_asyncpg_url(service.url), pool_size=2)
    try:
        await migrate_all(database.engine, "user_")
        async with database.engine.begin() as connection:
            tenant_id = (
                await connection.execute(
                    text("INSERT INTO public.tenants (name, tier) VALUES ('trigram', 'free') RETURNING id")
                )
            ).scalar_one()
        await migrate_tenants(database.engine, "user_", [tenant_id])
        schema = tenant_schema("user_", tenant_id)
        async with database.engine.begin() as connection:
            extension = await connection.scalar(
                text("SELECT extname FROM pg_extension WHERE extname = 'pg_trgm'")
            )
            await connection.execute(
                text(
                    f'INSERT INTO "{schema}".products (sku, title, price) '
                    # Titles as varied as a real catalogue's: a search word matches a handful of rows.
                    "SELECT 'SKU-' || n, 'Veste ' || md5(n::text) || ' en jean', 20 "
                    "FROM generate_series(1, 20000) AS n"
                )
            )
        assert extension == "pg_trgm"
        # What autovacuum does to a catalogue over time: flush the GIN pending lists, gather statistics.
        conn = await asyncpg.connect(service.url)
        try:
            await conn.execute(f'VACUUM ANALYZE "{schema}".products')
        finally:
            await conn.close()

        # The exact statement the gateway's `GET /api/products?q=` runs, captured and EXPLAINed.
        with captured_statements(database.engine) as sent:
            async with tenant_transaction(database.session_factory, "user_", tenant_id) as session:
                found, _more = await list_products(
                    session,
                    ProductFilters(q=hashlib.md5(b"4321", usedforsecurity=False).hexdigest()[:10]),
                    limit=50,
                    before_id=None,
                )
        assert [product.sku for product in found] == ["SKU-4321"]
        statement, parameters = next((sql, args) for sql, args in sent if "products" in sql)
        conn = await asyncpg.connect(service.url)
        try:
            await conn.execute(f'SET search_path TO "{schema}", public')
            plan = "\n".join(row[0] for row in await conn.fetch(f"EXPLAIN {statement}", *parameters))
        finally:
            await conn.close()
        assert "ix_products_title_trgm" in plan, plan
        assert "Seq Scan" not in plan, plan
    finally:
        await database.dispose()
