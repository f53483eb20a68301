"""Small helpers shared by the tests."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
from fastapi import FastAPI

from ops.config.settings import Settings

PASSWORD = "correct horse battery"


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"


async def register(client: httpx.AsyncClient, email: str | None = None, **extra: Any) -> dict[str, Any]:
    """Register a new tenant and return the 201 body (tokens + user)."""
    response = await client.post(
        "/api/auth/register", json={"email": email or unique_email(), "password": PASSWORD, **extra}
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    assert body["status"] == status
    return body


@asynccontextmanager
async def app_client(
    settings: Settings, configure: Callable[[FastAPI], None] | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a fresh app built with other settings; `configure` may add test-only routes first."""
    from gateway.app import create_app
    from tests.tenant_schemas import replayed_tenant_migration

    application = create_app(settings, tenant_migrator=replayed_tenant_migration)
    if configure is not None:
        configure(application)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


async def login(
    client: httpx.AsyncClient, email: str, password: str = PASSWORD, source: str | None = None
) -> httpx.Response:
    """POST /api/auth/login and return the raw response."""
    params = {"source": source} if source is not None else None
    return await client.post("/api/auth/login", json={"email": email, "password": password}, params=params)


@asynccontextmanager
async def pg_connection(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    """A plain asyncpg connection to the test database, outside the app's pool."""
    dsn = settings.async_database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    connection = await asyncpg.connect(dsn)
    try:
        yield connection
    finally:
        await connection.close()


async def schema_names(connection: asyncpg.Connection) -> set[str]:
    """Every schema (namespace) of the database."""
    return {row["nspname"] for row in await connection.fetch("SELECT nspname FROM pg_namespace")}


async def schema_tables(connection: asyncpg.Connection, schema: str) -> set[str]:
    """The tables (and views) of one schema."""
    rows = await connection.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema
    )
    return {row["table_name"] for row in rows}
