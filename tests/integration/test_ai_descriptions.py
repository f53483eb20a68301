"""AI descriptions end to end: the gateway, credits in PostgreSQL, the dispatcher and a real `ai` worker."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Any

import httpx

from ops.config.settings import Settings
from persistence.ai_credits import refund_for_job
from persistence.database import connect_database
from persistence.tenancy import tenant_transaction
from tests.pipeline_support import new_sku, running_pipeline, wait_for_job
from tests.support import assert_problem, bearer, pg_connection, register

PRODUCT = {
    "title": "Robe",
    "price": "24.00",
    "category": "women_dresses",
    "brand": "zara",
    "size": "m",
    "color": "black",
    "material": "cotton",
    "condition": "very_good",
    "decade": "1990s",
    "dim1": 52,
    "dim2": 91.5,
}


async def _tenant(client: httpx.AsyncClient) -> tuple[dict[str, str], int]:
    body = await register(client)
    return bearer(body), int(body["user"]["tenant_id"])


async def _product(client: httpx.AsyncClient, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    response = await client.post(
        "/api/products", json={**PRODUCT, "sku": new_sku(), **fields}, headers=headers
    )
    assert response.status_code == 201, response.text
    product: dict[str, Any] = response.json()
    return product


async def _credits(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    response = await client.get("/api/ai/credits", headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _sql(settings: Settings, statement: str, *args: Any) -> None:
    async with pg_connection(settings) as connection:
        await connection.execute(statement, *args)


async def test_a_description_is_written_applied_and_pushed_to_live_listings(
    client: httpx.AsyncClient, migrated: Settings
) -> None:
    headers, tenant_id = await _tenant(client)
    product = await _product(client, headers)
    # The product is live on eBay (as a finished publish leaves it).
    await _sql(
        migrated,
        f"INSERT INTO user_{tenant_id}.platform_listings (product_id, platform, status, external_id) "
        "VALUES ($1, 'ebay', 'live', 'E-1')",
        product["id"],
    )
    before = await _credits(client, headers)
    assert before["monthly"] == 20 and before["remaining"] == 20
    async with running_pipeline(migrated, "ai", None):
        accepted = await client.post(
            f"/api/products/{product['id']}/description",
            json={"language": "fr", "platforms": ["vinted", "ebay"]},
            headers=headers,
        )
        assert accepted.status_code == 202, accepted.text
        job = accepted.json()
        assert job["action"] == "generate_description" and job["platform"] == "ai"
        assert (await _credits(client, headers))["remaining"] == 19
        done = await wait_for_job(client, headers, job["id"])
    assert done["status"] == "succeeded", done
    result = done["result"]
    assert result["provider"] == "template" and result["language"] == "fr" and result["applied"] is True
    assert set(result["platforms"]) == {"vinted", "ebay"}
    assert len(result["platforms"]["ebay"]["title"]) <= 80
    assert "Zara" in result["title"] and "Robe" in result["title"]
    assert "Noir" in result["title"] or "noir" in result["description"]
    detail = (await client.get(f"/api/products/{product['id']}", headers=headers)).json()
    assert detail["title"] == result["title"]
    assert detail["description"] == result["description"]
    assert detail["version"] == product["version"] + 1
    updates = (
        await client.get(
            "/api/jobs", params={"product_id": product["id"], "action": "update"}, headers=headers
        )
    ).json()["items"]
    assert [(update["platform"], update["action"]) for update in updates] == [("ebay", "update")]
    # The credit stays spent, and the provider call is in the generation log.
    assert (await _credits(client, headers))["remaining"] == 19
    async with pg_connection(migrated) as connection:
        logs = await connection.fetch(
            f"SELECT provider, outcome, language FROM user_{tenant_id}.ai_generation_log WHERE job_id = $1",
            job["id"],
        )
    assert [tuple(row) for row in logs] == [("template", "succeeded", "fr")]


async def test_apply_false_leaves_the_product_alone(client: httpx.AsyncClient, migrated: Settings) -> None:
    headers, _ = await _tenant(client)
    product = await _product(client, headers, description="Mon texte à moi.")
    async with running_pipeline(migrated, "ai", None):
        accepted = await client.post(
            f"/api/products/{product['id']}/description",
            json={"language": "en", "apply": False},
            headers=headers,
        )
        assert accepted.status_code == 202, accepted.text
        done = await wait_for_job(client, headers, accepted.json()["id"])
    assert done["status"] == "succeeded", done
    assert done["result"]["applied"] is False
    assert set(done["result"]["platforms"]) == {"vinted", "ebay", "etsy"}
    assert "Zara" in done["result"]["description"]
    detail = (await client.get(f"/api/products/{product['id']}", headers=headers)).json()
    assert detail["description"] == "Mon texte à moi." and detail["version"] == product["version"]


async def test_a_failed_generation_refunds_its_credit(client: httpx.AsyncClient, migrated: Settings) -> None:
    headers, tenant_id = await _tenant(client)
    # The seller's own note carries a phone number: the copy would break the listing rules.
    product = await _product(client, headers, condition_sup="Appelez le 06 12 34 56 78")
    async with running_pipeline(migrated, "ai", None):
        accepted = await client.post(
            f"/api/products/{product['id']}/description", json={"language": "fr"}, headers=headers
        )
        assert accepted.status_code == 202, accepted.text
        assert (await _credits(client, headers))["remaining"] == 19
        done = await wait_for_job(client, headers, accepted.json()["id"])
    assert done["status"] == "failed"
    assert done["error"]["code"] == "policy_violation"
    assert "phone_number" in done["error"]["message"]
    assert (await _credits(client, headers))["remaining"] == 20
    detail = (await client.get(f"/api/products/{product['id']}", headers=headers)).json()
    assert detail["version"] == product["version"]
    # Refunding is idempotent: a second refund of the same job gives nothing more.
    database = connect_database(migrated.async_database_url, pool_size=1)
    try:
        async with tenant_transaction(database.session_factory, "user_", tenant_id) as session:
            assert await refund_for_job(session, tenant_id, uuid.UUID(done["id"])) is False
    finally:
        await database.dispose()
    assert (await _credits(client, headers))["remaining"] == 20
    # Retrying the failed job spends a credit again (it was given back when the job failed).
    retried = await client.post(f"/api/jobs/{done['id']}/retry", headers=headers)
    assert retried.status_code == 202, retried.text
    assert (await _credits(client, headers))["remaining"] == 19


async def test_fifty_concurrent_requests_with_ten_credits_left_accept_exactly_ten(
    client: httpx.AsyncClient, migrated: Settings
) -> None:
    headers, tenant_id = await _tenant(client)
    product = await _product(client, headers)
    first = await client.post(
        f"/api/products/{product['id']}/description", json={"language": "fr"}, headers=headers
    )
    assert first.status_code == 202, first.text
    await _sql(migrated, "UPDATE public.ai_credits SET remaining = 10 WHERE tenant_id = $1", tenant_id)

    async def ask() -> httpx.Response:
        return await client.post(
            f"/api/products/{product['id']}/description", json={"language": "en"}, headers=headers
        )

    answers = await asyncio.gather(*(ask() for _ in range(50)))
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses.count(202) == 10, statuses
    assert statuses.count(402) == 40, statuses
    for refused in (answer for answer in answers if answer.status_code == 402):
        assert_problem(refused, 402, "no_ai_credits")
    assert (await _credits(client, headers))["remaining"] == 0
    jobs = (
        await client.get(
            "/api/jobs", params={"action": "generate_description", "limit": 200}, headers=headers
        )
    ).json()["items"]
    assert len(jobs) == 11  # the first request's job and the ten accepted ones; no job without a credit


async def test_credits_renew_at_the_billing_date(client: httpx.AsyncClient, migrated: Settings) -> None:
    headers, tenant_id = await _tenant(client)
    product = await _product(client, headers)
    accepted = await client.post(
        f"/api/products/{product['id']}/description", json={"language": "fr"}, headers=headers
    )
    assert accepted.status_code == 202
    await _sql(migrated, "UPDATE public.ai_credits SET remaining = 0 WHERE tenant_id = $1", tenant_id)
    refused = await client.post(
        f"/api/products/{product['id']}/description", json={"language": "fr"}, headers=headers
    )
    assert_problem(refused, 402, "no_ai_credits")
    spent = await _credits(client, headers)
    assert spent["remaining"] == 0
    resets_at = datetime.fromisoformat(spent["resets_at"])
    # The account was opened today: credits renew on the same day next month.
    async with pg_connection(migrated) as connection:
        opened = await connection.fetchval("SELECT created_at FROM public.tenants WHERE id = $1", tenant_id)
    assert resets_at.day == opened.day or resets_at.day < opened.day  # shorter months end earlier
    assert 27 <= (resets_at - opened).days <= 31

    # The billing date passes: the stored balance belongs to the previous period.
    await _sql(
        migrated,
        "UPDATE public.ai_credits SET period_start = period_start - interval '1 month' WHERE tenant_id = $1",
        tenant_id,
    )
    renewed = await _credits(client, headers)
    assert renewed["remaining"] == 20
    again = await client.post(
        f"/api/products/{product['id']}/description", json={"language": "fr"}, headers=headers
    )
    assert again.status_code == 202, again.text
    assert (await _credits(client, headers))["remaining"] == 19


async def test_the_same_idempotency_key_replays_the_first_answer_and_spends_one_credit(
    client: httpx.AsyncClient, migrated: Settings
) -> None:
    headers, _ = await _tenant(client)
    product = await _product(client, headers)
    keyed = {**headers, "Idempotency-Key": "describe-once"}
    path = f"/api/products/{product['id']}/description"
    first = await client.post(path, json={"language": "fr"}, headers=keyed)
    second = await client.post(path, json={"language": "fr"}, headers=keyed)
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    assert (await _credits(client, headers))["remaining"] == 19
    reused = await client.post(path, json={"language": "en"}, headers=keyed)
    assert_problem(reused, 422, "idempotency_key_reused")
    assert (await _credits(client, headers))["remaining"] == 19


async def test_bad_requests_are_refused_without_spending(
    client: httpx.AsyncClient, migrated: Settings
) -> None:
    headers, _ = await _tenant(client)
    other_headers, _ = await _tenant(client)
    product = await _product(client, headers)
    path = f"/api/products/{product['id']}/description"
    assert_problem(await client.post(path, json={"language": "de"}, headers=headers), 422, "validation_error")
    assert_problem(await client.post(path, json={}, headers=headers), 422, "validation_error")
    assert_problem(
        await client.post(path, json={"language": "fr", "platforms": ["amazon"]}, headers=headers),
        422,
        "validation_error",
    )
    assert_problem(await client.post(path, json={"language": "fr"}, headers=other_headers), 404, "not_found")
    assert_problem(
        await client.post("/api/products/abc/description", json={"language": "fr"}, headers=headers),
        404,
        "not_found",
    )
    assert_problem(await client.post(path, json={"language": "fr"}), 401, "not_authenticated")
    assert (await _credits(client, headers))["remaining"] == 20


async def test_the_openapi_documents_both_routes(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert "402" in paths["/api/products/{product_id}/description"]["post"]["responses"]
    assert "get" in paths["/api/ai/credits"]


async def test_a_cancelled_job_gives_its_credit_back(client: httpx.AsyncClient, migrated: Settings) -> None:
    headers, _ = await _tenant(client)
    product = await _product(client, headers)
    accepted = await client.post(
        f"/api/products/{product['id']}/description", json={"language": "fr"}, headers=headers
    )
    assert accepted.status_code == 202
    assert (await _credits(client, headers))["remaining"] == 19
    cancelled = await client.post(f"/api/jobs/{accepted.json()['id']}/cancel", headers=headers)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert (await _credits(client, headers))["remaining"] == 20
