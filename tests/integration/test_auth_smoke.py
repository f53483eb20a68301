from __future__ import annotations

import httpx

from tests.support import bearer, register


async def test_register_then_me(client: httpx.AsyncClient) -> None:
    body = await register(client)
    me = await client.get("/api/auth/me", headers=bearer(body))
    assert me.status_code == 200, me.text
    assert me.json()["email"] == body["user"]["email"]
