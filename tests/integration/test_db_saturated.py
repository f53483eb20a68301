"""PostgreSQL refusing connections (too many clients) is 503 `service_unavailable`, not a 500."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import asyncpg

from ops.config.settings import Settings
from tests.support import app_client, assert_problem


async def test_too_many_connections_is_503(migrated: Settings) -> None:
    admin = migrated.async_database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    connection = await asyncpg.connect(admin)
    role = "stoflow_saturated"
    try:
        # A role allowed no connection at all: PostgreSQL answers SQLSTATE 53300 as at max_connections.
        await connection.execute(f"DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN CONNECTION LIMIT 0")
        parts = urlsplit(migrated.async_database_url)
        limited = urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port or 5432}"))
        settings = migrated.model_copy(update={"database_url": limited})
        async with app_client(settings) as client:
            answer = await client.post(
                "/api/auth/login", json={"email": "a@example.com", "password": "whatever1"}
            )
            assert_problem(answer, 503, "service_unavailable")
            assert answer.headers.get("retry-after")
    finally:
        await connection.execute(f"DROP ROLE IF EXISTS {role}")
        await connection.close()
