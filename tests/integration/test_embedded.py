"""Embedded PostgreSQL and Redis: start, serve clients and other processes, stop, restart on their data."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from ops.embedded import (
    EmbeddedService,
    free_port,
    service_answers_postgres,
    service_answers_redis,
    start_embedded_postgres,
    start_embedded_redis,
)


@pytest.fixture
def stop_later() -> Iterator[list[EmbeddedService]]:
    """Stop whatever a test started, even when it fails half-way."""
    services: list[EmbeddedService] = []
    yield services
    for service in services:
        service.stop()


async def test_postgres_start_connect_stop_restart(tmp_path: Path, stop_later: list[EmbeddedService]) -> None:
    service = start_embedded_postgres(tmp_path)
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
    again = start_embedded_postgres(tmp_path)
    assert again.url == service.url
    again.stop()
    assert service_answers_postgres(service.url)

    service.stop()
    assert not service_answers_postgres(service.url)
    service.stop()  # idempotent

    restarted = start_embedded_postgres(tmp_path)
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
