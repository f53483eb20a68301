"""Log lines never carry SQL parameters, password hashes or tokens, even when a request crashes."""

from __future__ import annotations

import bcrypt
import structlog
from fastapi import FastAPI
from sqlalchemy import text
from structlog.testing import capture_logs

from gateway.dependencies import PublicSession, UnitOfWorkRoute
from ops.config.logs import SCRUBBING_PROCESSORS
from ops.config.settings import Settings
from tests.support import app_client, assert_problem

HASH = bcrypt.hashpw(b"a secret password", bcrypt.gensalt(4)).decode()
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


def _crashing_route(app: FastAPI) -> None:
    """A route whose SQL fails with a password hash among its parameters, as a buggy query would."""

    async def crash(session: PublicSession) -> dict[str, str]:
        await session.execute(text("SELECT CAST(:hash AS integer), :token"), {"hash": HASH, "token": TOKEN})
        return {}

    app.router.add_api_route("/api/test-crash", crash, methods=["GET"], route_class_override=UnitOfWorkRoute)


def _render(event: dict[str, object]) -> str:
    rendered: dict[str, object] = dict(event)
    for processor in SCRUBBING_PROCESSORS:
        rendered = processor(None, "error", rendered)  # type: ignore[arg-type,assignment]
    return structlog.processors.JSONRenderer()(None, "error", rendered)  # type: ignore[arg-type,return-value]


async def test_a_crash_with_a_hash_in_its_sql_parameters_logs_neither(migrated: Settings) -> None:
    async with app_client(migrated, _crashing_route) as http:
        with capture_logs() as logs:
            response = await http.get("/api/test-crash")
    assert_problem(response, 500, "internal_error")
    assert HASH not in response.text
    crashes = [entry for entry in logs if entry["event"] == "unhandled_error"]
    assert crashes, logs
    line = _render(crashes[0])
    assert "DataError" in line or "InvalidTextRepresentation" in line, line  # the error itself is kept
    assert HASH not in line
    assert TOKEN not in line
    assert HASH[:20] not in line, line


def test_bound_secrets_and_secret_shaped_text_are_redacted() -> None:
    line = _render(
        {
            "event": "oops",
            "password_hash": HASH,
            "detail": f"login for x with {HASH} and Bearer {TOKEN}",
            "params": {"email": "a@example.com"},
        }
    )
    assert HASH not in line
    assert TOKEN not in line
    assert "a@example.com" not in line
    assert "[redacted-hash]" in line
