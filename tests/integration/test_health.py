"""Liveness, readiness against real and unreachable backing services, and metrics."""

from __future__ import annotations

import time

import httpx

from ops.config.settings import Settings
from tests.support import PASSWORD, app_client, assert_problem, unique_email

# Nothing listens on port 1: connections are refused at once.
CLOSED_REDIS = "redis://127.0.0.1:1/0"
CLOSED_POSTGRES = "postgresql://postgres@127.0.0.1:1/stoflow"


async def test_health_is_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_when_postgres_and_redis_answer(client: httpx.AsyncClient) -> None:
    response = await client.get("/ready")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"] == {"postgres": "ok", "redis": "ok"}


async def test_not_ready_without_redis(migrated: Settings) -> None:
    settings = migrated.model_copy(update={"redis_url": CLOSED_REDIS})
    async with app_client(settings) as http:
        started = time.monotonic()
        ready = await http.get("/ready")
        elapsed = time.monotonic() - started
        health = await http.get("/health")
        login = await http.post(
            "/api/auth/login", json={"email": unique_email("noredis"), "password": PASSWORD}
        )
    assert ready.status_code == 503, ready.text
    assert ready.json() == {"status": "unavailable", "checks": {"postgres": "ok", "redis": "unavailable"}}
    assert elapsed < 5
    # Alive all the same, and a command that needs Redis says "try later", not "crashed".
    assert health.status_code == 200
    assert_problem(login, 503, "service_unavailable")
    assert login.headers["retry-after"].isdigit()


async def test_not_ready_without_postgres(migrated: Settings) -> None:
    settings = migrated.model_copy(update={"database_url": CLOSED_POSTGRES})
    async with app_client(settings) as http:
        started = time.monotonic()
        ready = await http.get("/ready")
        elapsed = time.monotonic() - started
        health = await http.get("/health")
        login = await http.post("/api/auth/login", json={"email": unique_email("nopg"), "password": PASSWORD})
        register = await http.post(
            "/api/auth/register", json={"email": unique_email("nopg"), "password": PASSWORD}
        )
    assert ready.status_code == 503, ready.text
    assert ready.json() == {"status": "unavailable", "checks": {"postgres": "unavailable", "redis": "ok"}}
    assert elapsed < 5
    assert health.status_code == 200
    for response in (login, register):
        body = assert_problem(response, 503, "service_unavailable")
        assert "127.0.0.1:1" not in response.text
        assert "Traceback" not in response.text
        assert body["detail"]


async def test_metrics_count_http_requests(client: httpx.AsyncClient) -> None:
    await client.get("/health")
    await client.get("/api/no-such-route")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert "# TYPE stoflow_http_requests_total counter" in text
    health_lines = [
        line
        for line in text.splitlines()
        if line.startswith("stoflow_http_requests_total{")
        and 'route="/health"' in line
        and 'status="200"' in line
    ]
    assert health_lines, text
    assert float(health_lines[0].rsplit(" ", 1)[1]) >= 1
    # Unknown paths are counted under one label, not one per path (no unbounded label values).
    assert "/api/no-such-route" not in text
