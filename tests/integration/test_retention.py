"""Retention: idempotency records past 24 h, old login sessions and finished plugin tasks are purged in
small batches by the dispatcher's periodic pass; history and anything still live stays."""

from __future__ import annotations

import json
import uuid

import httpx

from ops.config.settings import Settings
from tests.support import bearer, login, pg_connection, register
from workers.dispatcher import Dispatcher


async def test_the_retention_pass_purges_only_what_expired(
    client: httpx.AsyncClient, migrated: Settings
) -> None:
    tokens = await register(client)
    tenant_id, schema = (
        tokens["user"]["tenant_id"],
        f"{migrated.tenant_schema_prefix}{tokens['user']['tenant_id']}",
    )
    old_key, fresh_key = f"old-{uuid.uuid4().hex}", f"fresh-{uuid.uuid4().hex}"
    body = {"title": "Veste", "price": "20.00"}
    first = await client.post(
        "/api/products", json=body, headers={**bearer(tokens), "Idempotency-Key": old_key}
    )
    fresh = await client.post(
        "/api/products", json=body, headers={**bearer(tokens), "Idempotency-Key": fresh_key}
    )
    ended = (await login(client, tokens["user"]["email"])).json()
    await client.post(
        "/api/auth/logout", json={"refresh_token": ended["refresh_token"]}, headers=bearer(ended)
    )
    async with pg_connection(migrated) as connection:
        await connection.execute(
            "UPDATE public.idempotency_keys SET created_at = now() - interval '25 hours' "
            "WHERE tenant_id = $1 AND key = $2",
            tenant_id,
            old_key,
        )
        # Every login of this user is old; only the logged-out one has no live refresh token.
        await connection.execute(
            "UPDATE public.login_sessions SET created_at = now() - interval '40 days' WHERE user_id = $1",
            tokens["user"]["id"],
        )
        for finished in ("now() - interval '8 days'", "now() - interval '1 day'", "NULL"):
            await connection.execute(
                f'INSERT INTO "{schema}".plugin_tasks (id, job_id, vinted_account_id, operation, requests, '
                f"finished_at) VALUES ($1, $2, 1, 'list_items', $3, {finished})",
                uuid.uuid4(),
                uuid.uuid4(),
                json.dumps([]),
            )
        history_before = await connection.fetchval(f'SELECT count(*) FROM "{schema}".publications_history')

    dispatcher = Dispatcher(migrated.model_copy(update={"retention_batch_size": 1}))
    try:
        report = await dispatcher.purge_expired()
    finally:
        await dispatcher.close()

    assert report.deleted["idempotency_keys"] >= 1
    assert report.deleted["login_sessions"] >= 1
    assert report.deleted["plugin_tasks"] >= 1
    assert report.batches > 3  # batches of one row each
    async with pg_connection(migrated) as connection:
        remaining_tasks = await connection.fetch(f'SELECT finished_at FROM "{schema}".plugin_tasks')
        assert len(remaining_tasks) == 2
        sessions = await connection.fetchval(
            "SELECT count(*) FROM public.login_sessions WHERE user_id = $1", tokens["user"]["id"]
        )
        assert sessions == 1  # the registration's login, whose refresh token is still live
        history_after = await connection.fetchval(f'SELECT count(*) FROM "{schema}".publications_history')
    assert history_after == history_before

    # The purged key is no longer replayed: the same request is new work; the fresh key still replays.
    again = await client.post(
        "/api/products", json=body, headers={**bearer(tokens), "Idempotency-Key": old_key}
    )
    assert again.status_code == 201
    assert again.json()["id"] != first.json()["id"]
    replay = await client.post(
        "/api/products", json=body, headers={**bearer(tokens), "Idempotency-Key": fresh_key}
    )
    assert replay.json()["id"] == fresh.json()["id"]
    # The live login still works.
    assert (await client.get("/api/auth/me", headers=bearer(tokens))).status_code == 200
