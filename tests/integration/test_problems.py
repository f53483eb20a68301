"""Every error is an RFC 9457 problem document; security headers, request ids and CORS on every answer."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from structlog.testing import capture_logs

from ops.config.settings import Settings
from tests.support import app_client, assert_problem, bearer, register

PROBLEM_FIELDS = {"type", "title", "status", "detail", "code"}
ONE_MEGABYTE = 1024 * 1024


async def test_unknown_path_is_a_not_found_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/no-such-thing")
    body = assert_problem(response, 404, "not_found")
    assert body.keys() >= PROBLEM_FIELDS
    assert body["type"].startswith("https://")


async def test_wrong_method_is_405(client: httpx.AsyncClient) -> None:
    tokens = await register(client)
    response = await client.delete("/api/auth/me", headers=bearer(tokens))
    body = assert_problem(response, 405, "method_not_allowed")
    assert body.keys() >= PROBLEM_FIELDS


async def test_invalid_json_is_a_validation_error_with_locations(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/auth/login", content=b'{"email": "a@example.com", "password": ', headers=_json()
    )
    body = assert_problem(response, 422, "validation_error")
    assert body["errors"], body
    for error in body["errors"]:
        assert isinstance(error["loc"], list)
        assert error["loc"][0] == "body"
        assert isinstance(error["msg"], str)
        assert error["msg"]


async def test_wrong_content_type_is_a_validation_error(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/auth/login",
        content=b'{"email": "a@example.com", "password": "whatever1"}',
        headers={"Content-Type": "text/plain"},
    )
    body = assert_problem(response, 422, "validation_error")
    assert body["errors"]


async def test_validation_errors_never_echo_the_input(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/auth/register", json={"email": "not-an-email", "password": "short-secret-ZZ9"[:5]}
    )
    assert_problem(response, 422, "validation_error")
    assert "short" not in response.text


async def test_json_body_over_one_megabyte_is_too_large(client: httpx.AsyncClient) -> None:
    padding = "a" * (ONE_MEGABYTE + 10)
    response = await client.post(
        "/api/auth/login", content=f'{{"email": "a@example.com", "password": "{padding}"}}', headers=_json()
    )
    body = assert_problem(response, 413, "too_large")
    assert body.keys() >= PROBLEM_FIELDS
    assert "x-request-id" in response.headers


async def test_streamed_body_over_one_megabyte_without_length_is_too_large(
    client: httpx.AsyncClient,
) -> None:
    """No Content-Length (chunked): the limit is enforced while reading, still as 413, not 400."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"email": "a@example.com", "password": "'
        for _ in range(12):
            yield b"a" * 100_000
        yield b'"}'

    response = await client.post("/api/auth/login", content=chunks(), headers=_json())
    assert "content-length" not in response.request.headers
    assert_problem(response, 413, "too_large")


async def test_body_just_under_the_limit_is_read(client: httpx.AsyncClient) -> None:
    padding = "a" * (ONE_MEGABYTE - 100)
    response = await client.post(
        "/api/auth/login", content=f'{{"email": "a@example.com", "password": "{padding}"}}', headers=_json()
    )
    # Parsed, then refused by the model's own password length limit: not 413.
    assert_problem(response, 422, "validation_error")


async def test_unhandled_exception_is_a_500_without_details(migrated: Settings) -> None:
    secret = "s3cr3t-connection-string-postgres://admin:hunter2@db"

    async def boom() -> None:
        raise RuntimeError(secret)

    with capture_logs() as logs:
        async with app_client(migrated, lambda application: application.add_api_route("/boom", boom)) as http:
            response = await http.get("/boom", headers={"X-Request-Id": "boom-request-1"})
    body = assert_problem(response, 500, "internal_error")
    assert body.keys() >= PROBLEM_FIELDS
    assert secret not in response.text
    assert "hunter2" not in response.text
    assert "Traceback" not in response.text
    assert "RuntimeError" not in response.text
    assert response.headers["x-request-id"] == "boom-request-1"
    assert response.headers["x-content-type-options"] == "nosniff"
    # The trace is logged on our side instead.
    errors = [entry for entry in logs if entry["event"] == "unhandled_error"]
    assert len(errors) == 1
    assert isinstance(errors[0]["exc_info"], RuntimeError)


async def test_every_answer_carries_a_request_id(client: httpx.AsyncClient) -> None:
    first = await client.get("/health")
    second = await client.get("/api/nothing-here")
    assert first.headers["x-request-id"]
    assert second.headers["x-request-id"]
    assert first.headers["x-request-id"] != second.headers["x-request-id"]
    echoed = await client.get("/health", headers={"X-Request-Id": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/health"), ("GET", "/api/missing"), ("GET", "/api/auth/me")]
)
async def test_security_headers_on_answers(client: httpx.AsyncClient, method: str, path: str) -> None:
    response = await client.request(method, path)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"]
    assert "default-src" in response.headers["content-security-policy"]


async def test_cors_allows_the_configured_origin_only(migrated: Settings) -> None:
    settings = migrated.model_copy(update={"cors_origins": "https://app.example"})
    async with app_client(settings) as http:
        allowed = await http.options(
            "/api/auth/login",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "Content-Type",
            },
        )
        refused = await http.options(
            "/api/auth/login",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        simple = await http.get("/health", headers={"Origin": "https://evil.example"})
    assert allowed.status_code == 200, allowed.text
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert "POST" in allowed.headers["access-control-allow-methods"]
    assert refused.headers.get("access-control-allow-origin") not in {"https://evil.example", "*"}
    assert simple.headers.get("access-control-allow-origin") is None


async def test_no_cors_headers_without_configured_origins(client: httpx.AsyncClient) -> None:
    response = await client.get("/health", headers={"Origin": "https://app.example"})
    assert response.headers.get("access-control-allow-origin") is None


def _json() -> dict[str, str]:
    return {"Content-Type": "application/json"}
