"""Operator accounts for tests: created the way `stoflow operator create` creates them."""

from __future__ import annotations

from typing import Any

import httpx

from ops.config.settings import Settings
from ops.runtime.operators import create_operator
from tests.support import unique_email


async def operator_headers(client: httpx.AsyncClient, settings: Settings) -> dict[str, str]:
    """Create an operator, log it in through /api/auth/login and return its Authorization header."""
    tokens = await operator_tokens(client, settings)
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def operator_tokens(client: httpx.AsyncClient, settings: Settings) -> dict[str, Any]:
    email = unique_email("operator")
    password, created = await create_operator(settings, email)
    assert created
    response = await client.post("/api/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body
