"""Operator accounts: created by the CLI, logged in like anyone, kept apart from tenants both ways."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import jwt
import pytest
from fastapi import FastAPI

from ops.config.settings import Settings
from tests.operator_support import operator_headers, operator_tokens
from tests.support import assert_problem, bearer, register, unique_email

ROOT_DIR = Path(__file__).resolve().parents[2]
# Tenant routes an operator must be refused on: every /api route but auth, webhooks and the operators' own.
_NOT_TENANT = ("/api/auth/", "/api/webhooks/", "/api/ops/")


def _routes(app: FastAPI, prefix: str) -> list[tuple[str, str]]:
    """Every (method, path) the app documents under `prefix`."""
    paths: dict[str, dict[str, object]] = app.openapi()["paths"]
    return [
        (method.upper(), path)
        for path, operations in sorted(paths.items())
        if path.startswith(prefix)
        for method in sorted(operations)
    ]


def _filled(path: str) -> str:
    return (
        path.replace("{tenant_id}", "1")
        .replace("{platform}", "ebay")
        .replace("{kind}", "colors")
        .format_map(_Ones())
    )


class _Ones(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "00000000-0000-0000-0000-000000000001" if "job" in key or "task" in key else "1"


def _cli(settings: Settings, email: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url or "",
        "REDIS_URL": settings.redis_url or "",
        "STOFLOW_ENV": "test",
        "BCRYPT_ROUNDS": "4",
        "LOG_LEVEL": "WARNING",
    }
    return subprocess.run(
        [sys.executable, "-m", "ops", "operator", "create", "--email", email],
        env=env,
        cwd=ROOT_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _password(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("password: ")]
    assert len(lines) == 1, output
    return lines[0].removeprefix("password: ")


async def test_the_cli_prints_a_one_time_password_and_a_second_run_replaces_it(
    client: httpx.AsyncClient, migrated: Settings
) -> None:
    email = unique_email("ops")
    first = _cli(migrated, email)
    assert first.returncode == 0, first.stderr
    old = _password(first.stdout)
    again = _cli(migrated, email)
    assert again.returncode == 0, again.stderr
    new = _password(again.stdout)
    assert new != old
    refused = await client.post("/api/auth/login", json={"email": email, "password": old})
    assert_problem(refused, 401, "invalid_credentials")
    accepted = await client.post("/api/auth/login", json={"email": email, "password": new})
    assert accepted.status_code == 200, accepted.text
    claims = jwt.decode(accepted.json()["access_token"], options={"verify_signature": False})
    assert claims["role"] == "operator" and "tenant_id" not in claims
    me = await client.get("/api/auth/me", headers=bearer(accepted.json()))
    assert me.status_code == 200 and me.json()["role"] == "operator" and me.json()["tenant_id"] is None


async def test_the_cli_refuses_a_resellers_email_and_leaves_that_account_alone(
    client: httpx.AsyncClient, migrated: Settings
) -> None:
    reseller = await register(client)
    refused = _cli(migrated, reseller["user"]["email"])
    assert refused.returncode == 2 and "password:" not in refused.stdout
    assert (await client.get("/api/products", headers=bearer(reseller))).status_code == 200


async def test_an_operator_token_is_refused_on_every_tenant_route(
    app: FastAPI, client: httpx.AsyncClient, migrated: Settings
) -> None:
    headers = await operator_headers(client, migrated)
    routes = [(m, p) for m, p in _routes(app, "/api/") if not p.startswith(_NOT_TENANT)]
    assert len(routes) > 20
    for method, path in routes:
        response = await client.request(method, _filled(path), headers=headers)
        assert_problem(response, 403, "forbidden")


async def test_a_tenant_token_is_refused_on_every_operator_route_and_the_console(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    headers = bearer(await register(client))
    routes = _routes(app, "/api/ops/")
    assert {path for _method, path in routes} >= {
        "/api/ops/overview",
        "/api/ops/jobs",
        "/api/ops/jobs/{tenant_id}/{job_id}/retry",
        "/api/ops/vinted-budgets",
    }
    for method, path in routes:
        response = await client.request(method, _filled(path), headers=headers)
        assert_problem(response, 403, "forbidden")
    for method, path in routes:
        assert_problem(await client.request(method, _filled(path)), 401, "not_authenticated")


async def test_an_operator_logs_out_and_its_refresh_token_dies(
    client: httpx.AsyncClient, migrated: Settings
) -> None:
    tokens = await operator_tokens(client, migrated)
    body = {"refresh_token": tokens["refresh_token"]}
    assert (await client.post("/api/auth/logout", json=body, headers=bearer(tokens))).status_code == 204
    assert_problem(await client.post("/api/auth/refresh", json=body), 401, "invalid_token")


@pytest.mark.parametrize("tenant_claim", [1, "1", 0])
async def test_an_operator_token_naming_a_tenant_is_not_valid(
    app: FastAPI, client: httpx.AsyncClient, migrated: Settings, tenant_claim: object
) -> None:
    # A real operator login, re-signed with a tenant claim added: only the claim makes it invalid.
    real = (await operator_tokens(client, migrated))["access_token"]
    claims = jwt.decode(real, options={"verify_signature": False})
    claims["tenant_id"] = tenant_claim
    secret = app.state.services.settings.jwt_secret_key.get_secret_value()
    token = jwt.encode(claims, secret, algorithm="HS256")
    response = await client.get("/api/ops/overview", headers={"Authorization": f"Bearer {token}"})
    assert_problem(response, 401, "invalid_token")
