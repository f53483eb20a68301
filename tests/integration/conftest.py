"""Fixtures shared by the integration tests that drive the plugin's queue and read the database directly."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from ops.config.settings import Settings
from persistence.database import Database, connect_database


@pytest.fixture
async def plugin(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The plugin's own connection (its long polls must not block the user's requests)."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=40) as http:
        yield http


@pytest.fixture
async def database(migrated: Settings) -> AsyncIterator[Database]:
    db = connect_database(migrated.async_database_url, pool_size=2)
    try:
        yield db
    finally:
        await db.dispose()
