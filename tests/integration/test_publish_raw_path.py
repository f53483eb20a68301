"""The publish command's raw-pool path: the same answers and guarantees as the unit of work it bypasses.

The command runs on the gateway's own asyncpg pool, its login check folded into the product's lock, so
each rule the unit of work enforced around it is checked here again: a revoked login, another tenant's
product, a deadlock victim, and an answer identical to the one the unit of work gives.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from ops.config.settings import Settings
from persistence.tenancy import tenant_schema
from tests.pipeline_support import EBAY_CONNECTION, new_sku
from tests.support import app_client, assert_problem, bearer, login, pg_connection, register


async def _seller(client: httpx.AsyncClient) -> tuple[dict[str, Any], dict[str, str]]:
    tokens = await register(client)
    headers = bearer(tokens)
    response = await client.put("/api/integrations/ebay", json=EBAY_CONNECTION, headers=headers)
    assert response.status_code == 200, response.text
    return tokens, headers


async def _draft(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    body = {"title": "Levi's 501 vintage jeans", "price": "39.90", "sku": new_sku()}
    response = await client.post("/api/products", json=body, headers=headers)
    assert response.status_code == 201, response.text
    product: dict[str, Any] = response.json()
    return product


async def _publish(client: httpx.AsyncClient, headers: dict[str, str], product_id: int) -> httpx.Response:
    return await client.post(
        f"/api/products/{product_id}/publications", json={"platforms": ["ebay"]}, headers=headers
    )


async def _jobs_of(client: httpx.AsyncClient, headers: dict[str, str], product_id: int) -> list[Any]:
    listed = await client.get("/api/jobs", headers=headers, params={"product_id": product_id})
    assert listed.status_code == 200, listed.text
    items: list[Any] = listed.json()["items"]
    return items


async def test_a_logged_out_token_cannot_publish(client: httpx.AsyncClient) -> None:
    tokens, headers = await _seller(client)
    product = await _draft(client, headers)
    # A second login of the same user stays live, to look at what the refused command left behind.
    other = await login(client, tokens["user"]["email"])
    assert other.status_code == 200, other.text
    live = bearer(other.json())
    ended = await client.post(
        "/api/auth/logout", json={"refresh_token": tokens["refresh_token"]}, headers=headers
    )
    assert ended.status_code == 204, ended.text
    answer = await _publish(client, headers, product["id"])
    body = assert_problem(answer, 401, "invalid_token")
    assert body["detail"] == "The access token was revoked."
    assert answer.headers["www-authenticate"] == "Bearer"
    assert await _jobs_of(client, live, product["id"]) == []
    still = await client.get(f"/api/products/{product['id']}", headers=live)
    assert still.json()["status"] == "draft", "a refused publish must not publish the product"
    assert (await _publish(client, live, product["id"])).status_code == 202


async def test_a_tenant_cannot_publish_another_tenants_product(client: httpx.AsyncClient) -> None:
    _owner, owner_headers = await _seller(client)
    product = await _draft(client, owner_headers)
    _intruder, intruder_headers = await _seller(client)  # eBay connected too, and no product at all
    assert_problem(await _publish(client, intruder_headers, product["id"]), 404, "not_found")
    assert await _jobs_of(client, owner_headers, product["id"]) == []
    owned = await client.get(f"/api/products/{product['id']}", headers=owner_headers)
    assert owned.json()["status"] == "draft"


async def test_the_raw_path_answers_as_the_unit_of_work_does(client: httpx.AsyncClient) -> None:
    """An Idempotency-Key sends the command through the unit of work: both answers have one shape."""
    _tokens, headers = await _seller(client)
    fast = await _publish(client, headers, (await _draft(client, headers))["id"])
    keyed = {**headers, "Idempotency-Key": "raw-path-shape"}
    slow = await _publish(client, keyed, (await _draft(client, headers))["id"])
    assert fast.status_code == slow.status_code == 202
    assert fast.headers["content-type"] == slow.headers["content-type"] == "application/json"
    [fast_job], [slow_job] = fast.json()["jobs"], slow.json()["jobs"]
    assert fast_job.keys() == slow_job.keys()
    different = {"id", "product_id", "created_at", "updated_at"}
    assert {k: v for k, v in fast_job.items() if k not in different} == {
        k: v for k, v in slow_job.items() if k not in different
    }
    assert fast_job["status"] == "pending" and fast_job["attempts"] == 0
    # The timestamps are written the same way (an ISO 8601 instant in UTC).
    assert fast_job["created_at"][-1] == slow_job["created_at"][-1]
    product = await client.get(f"/api/products/{fast_job['product_id']}", headers=headers)
    assert product.json()["status"] == "published"


async def test_a_publish_chosen_as_a_deadlock_victim_runs_again_instead_of_answering_500(
    client: httpx.AsyncClient, migrated: Settings
) -> None:
    """The publish locks the product, then the tenant's work mark; a transaction holding the mark and then
    reaching for the product makes a cycle. PostgreSQL aborts the publish's side: it runs again."""
    tokens, headers = await _seller(client)
    product = await _draft(client, headers)
    tenant_id = int(tokens["user"]["tenant_id"])
    schema = tenant_schema(migrated.tenant_schema_prefix, tenant_id)
    async with pg_connection(migrated) as other_side:
        async with other_side.transaction():
            # Slower to look for deadlocks than the request (1 s): PostgreSQL aborts the request's side.
            await other_side.execute("SET LOCAL deadlock_timeout = '10s'")
            await other_side.execute(
                "INSERT INTO public.tenant_work (tenant_id, due_at) VALUES ($1, now()) "
                "ON CONFLICT (tenant_id) DO UPDATE SET version = public.tenant_work.version + 1",
                tenant_id,
            )
            publish = asyncio.create_task(_publish(client, headers, product["id"]))
            # The publish has locked the product and now waits for the work mark this side holds...
            await asyncio.sleep(0.5)
            assert not publish.done()
            # ...which then waits for the product: a cycle, broken by aborting the publish's transaction.
            await other_side.execute(
                f'SELECT 1 FROM "{schema}".products WHERE id = $1 FOR UPDATE', product["id"]
            )
        answer = await asyncio.wait_for(publish, timeout=30)
    assert answer.status_code == 202, answer.text
    assert len(await _jobs_of(client, headers, product["id"])) == 1, "one job, from the second run"


async def test_a_publish_while_postgresql_refuses_connections_is_503(
    client: httpx.AsyncClient, migrated: Settings
) -> None:
    """The raw pool cannot connect (as at max_connections): 503 `service_unavailable`, as the unit of work
    answers, never a 500."""
    _tokens, headers = await _seller(client)
    product = await _draft(client, headers)
    role = "stoflow_saturated_publish"
    async with pg_connection(migrated) as admin:
        await admin.execute(f"DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN CONNECTION LIMIT 0")
        try:
            parts = urlsplit(migrated.async_database_url)
            limited = urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port or 5432}"))
            async with app_client(migrated.model_copy(update={"database_url": limited})) as saturated:
                answer = await _publish(saturated, headers, product["id"])
            assert_problem(answer, 503, "service_unavailable")
            assert answer.headers.get("retry-after")
        finally:
            await admin.execute(f"DROP ROLE IF EXISTS {role}")
    assert await _jobs_of(client, headers, product["id"]) == []
