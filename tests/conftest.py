"""Test services: real PostgreSQL and Redis.

URLs come from DATABASE_URL / REDIS_URL when set, else the servers on 127.0.0.1 when they answer, else
embedded ones under ./.stoflow/test. Each test run gets its own database (dropped at the end; its commits do
not wait for the disk) and its own Redis database number, flushed before each test. The apps the tests build
create registering tenants' schemas with tests/tenant_schemas.py (the tenant migration, recorded once).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from ops.config.settings import Settings, to_asyncpg_url
from ops.runtime.service_urls import ServiceUrls, resolve_service_urls

ROOT = Path(__file__).resolve().parent.parent


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def _with_redis_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{db}"))


def _asyncpg_dsn(url: str) -> str:
    return to_asyncpg_url(url).replace("postgresql+asyncpg://", "postgresql://", 1)


@pytest.fixture(scope="session")
def service_urls() -> Iterator[ServiceUrls]:
    urls = resolve_service_urls(
        os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL"), ROOT / ".stoflow" / "test"
    )
    yield urls
    urls.stop_embedded()


@pytest.fixture(scope="session")
def test_database_url(service_urls: ServiceUrls) -> Iterator[str]:
    name = f"stoflow_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = _asyncpg_dsn(service_urls.database_url)

    async def create() -> None:
        connection = await asyncpg.connect(admin)
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
            # A commit returns before its WAL reaches the disk (3-8 ms less each on this machine's disk,
            # and the suite commits tens of thousands of times). What a transaction makes visible, and
            # when, is unchanged; only a crash of PostgreSQL itself could lose the last commits, and no
            # test crashes it. Production keeps synchronous commits: a 202 means durable there.
            await connection.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
        finally:
            await connection.close()

    async def drop() -> None:
        connection = await asyncpg.connect(admin)
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()

    asyncio.run(create())
    yield _with_database(service_urls.database_url, name)
    asyncio.run(drop())


@pytest.fixture(scope="session")
def redis_url(service_urls: ServiceUrls) -> str:
    # A database number of our own, so a developer's data in db 0 survives the per-test flush.
    return _with_redis_db(service_urls.redis_url, int(os.environ.get("STOFLOW_TEST_REDIS_DB", "9")))


@pytest.fixture(scope="session")
def settings(test_database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        stoflow_env="test",
        database_url=test_database_url,
        redis_url=redis_url,
        bcrypt_rounds=4,  # the suite's own speed-up; production keeps the default of 12
        media_root=str(tmp_path_factory.mktemp("media")),
        log_format="console",
        log_level="WARNING",
        # No Vinted sale check unless a test asks for one: it would spend members' budgets.
        vinted_sale_check_share=0,
    )


@pytest.fixture(scope="session")
async def migrated(settings: Settings) -> Settings:
    from migrations.runner import migrate_all
    from persistence.database import connect_database

    database = connect_database(settings.async_database_url, pool_size=2)
    try:
        await migrate_all(database.engine, settings.tenant_schema_prefix)
        try:
            from ops.runtime.seed import seed_reference_data
        except ImportError:
            pass
        else:
            await seed_reference_data(database.engine)
    finally:
        await database.dispose()
    return settings


@pytest.fixture(autouse=True)
async def _flush_redis(redis_url: str) -> None:
    client = Redis.from_url(redis_url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


@pytest.fixture
async def app(migrated: Settings) -> AsyncIterator[FastAPI]:
    from gateway.app import create_app
    from tests.tenant_schemas import replayed_tenant_migration

    application = create_app(migrated, tenant_migrator=replayed_tenant_migration)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http
