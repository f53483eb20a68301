"""The OpenAI-compatible writer against a real local HTTP server: good answers, malformed JSON, rule-breaking
text, 429, 5xx, timeouts, a refused key, and the fallback to templates; then a whole job on the ai pool."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest

from domain.description_templates import ProductFacts
from ops.config.settings import Settings
from persistence.ai_generation_log import GenerationRecord
from tests.fake_openai import FakeOpenAI, Play, completion, running_fake_openai
from tests.pipeline_support import new_sku, running_pipeline, wait_for_job
from tests.support import bearer, pg_connection, register
from workers.descriptions import (
    CopyRequest,
    FallbackWriter,
    InvalidOutput,
    OpenAIWriter,
    ProviderUnavailable,
    TemplateWriter,
)

FACTS = ProductFacts(
    product_id=3,
    language="fr",
    sku="SKU-3",
    category="Robes",
    brand="Zara",
    color="Noir",
    size="M",
    condition="Très bon état",
)
REQUEST = CopyRequest(FACTS, ("vinted", "ebay"))
GOOD_TITLES = {"vinted": "Robe Zara noire taille M", "ebay": "Robe Zara noire M"}
GOOD_DESCRIPTION = "Robe Zara noire en taille M, en très bon état."
GOOD: dict[str, Any] = {"titles": GOOD_TITLES, "description": GOOD_DESCRIPTION}


def _settings(base_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "ai_provider": "openai",
        "ai_base_url": base_url,
        "ai_model": "fake-model-1",
        "ai_api_key": "sk-test-secret",
        "ai_timeout_seconds": 2.0,
        "ai_max_retries": 2,
        "ai_cost_per_1k_prompt_tokens": Decimal("0.15"),
        "ai_cost_per_1k_completion_tokens": Decimal("0.60"),
        **overrides,
    }
    return Settings(stoflow_env="test", **values)


async def _write(
    fake: FakeOpenAI, *, fallback: bool = False, **overrides: Any
) -> tuple[Any, list[GenerationRecord]]:
    writer = OpenAIWriter(_settings(fake.base_url, **overrides))
    chosen = FallbackWriter(writer, TemplateWriter()) if fallback else writer
    records: list[GenerationRecord] = []
    try:
        return await chosen.write(REQUEST, records), records
    finally:
        await chosen.aclose()


async def test_a_good_answer_becomes_the_copy_with_its_tokens_and_cost() -> None:
    async with running_fake_openai() as fake:
        fake.plays = [completion(GOOD)]
        written, records = await _write(fake)
    assert written.provider == "openai" and written.model == "fake-model-1"
    assert written.copy.titles == GOOD_TITLES
    assert written.copy.title == GOOD_TITLES["ebay"]  # the tightest limit names the product
    assert written.copy.description == GOOD_DESCRIPTION
    [record] = records
    assert record.outcome == "succeeded" and record.prompt_tokens > 0 and record.completion_tokens > 0
    expected = (
        Decimal(record.prompt_tokens) * Decimal("0.15") + Decimal(record.completion_tokens) * Decimal("0.60")
    ) / 1000
    assert record.cost == expected
    [sent] = fake.requests
    assert sent["model"] == "fake-model-1"
    assert sent["response_format"]["type"] == "json_schema"
    schema = sent["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["titles"]["properties"]["ebay"]["maxLength"] == 80
    assert "Zara" in sent["messages"][1]["content"] and "French" in sent["messages"][0]["content"]
    assert fake.headers[0]["authorization"] == "Bearer sk-test-secret"


async def test_malformed_json_is_asked_again() -> None:
    async with running_fake_openai() as fake:
        fake.plays = [Play(content='{"titles": {"vinted": "Robe"'), completion(GOOD)]
        written, records = await _write(fake)
    assert written.provider == "openai"
    assert [record.outcome for record in records] == ["invalid_output", "succeeded"]


async def test_text_that_breaks_a_listing_rule_is_not_kept() -> None:
    breaking = {**GOOD, "description": "Robe Zara, aussi sur Leboncoin à 20 €."}
    missing_title = {"titles": {"vinted": "Robe Zara"}, "description": "Robe Zara."}
    async with running_fake_openai() as fake:
        fake.plays = [completion(breaking), completion(missing_title)]
        with pytest.raises(InvalidOutput) as failed:
            await _write(fake)
    assert failed.value.transient
    async with running_fake_openai() as fake:
        fake.plays = [completion(breaking), completion(breaking)]
        written, records = await _write(fake, fallback=True)
    assert written.provider == "template"
    assert [record.outcome for record in records] == ["policy_violation", "policy_violation", "succeeded"]
    assert "Leboncoin" not in written.copy.description


async def test_always_malformed_answers_fall_back_to_the_templates() -> None:
    async with running_fake_openai() as fake:
        fake.plays = [Play(content="Voici votre description : une robe."), Play(content="")]
        written, records = await _write(fake, fallback=True)
    assert written.provider == "template" and written.model is None
    assert "Zara" in written.copy.description
    assert [(record.provider, record.outcome) for record in records] == [
        ("openai", "invalid_output"),
        ("openai", "invalid_output"),
        ("template", "succeeded"),
    ]


async def test_a_429_is_retried_after_the_time_the_server_asks() -> None:
    async with running_fake_openai() as fake:
        fake.plays = [
            Play(status=429, retry_after_ms=20),
            Play(status=429, retry_after_ms=20),
            completion(GOOD),
        ]
        written, records = await _write(fake)
    assert written.provider == "openai"
    assert len(fake.requests) == 3
    assert [record.outcome for record in records] == ["succeeded"]


async def test_server_errors_past_the_retries_are_transient_or_fall_back() -> None:
    async with running_fake_openai() as fake:
        fake.plays = [Play(status=500, retry_after_ms=10), Play(status=503)]
        with pytest.raises(ProviderUnavailable) as failed:
            await _write(fake, ai_max_retries=1)
    assert failed.value.transient and "503" in failed.value.message
    assert len(fake.requests) == 2
    async with running_fake_openai() as fake:
        fake.plays = [Play(status=500, retry_after_ms=10), Play(status=500)]
        written, records = await _write(fake, fallback=True, ai_max_retries=1)
    assert written.provider == "template"
    assert [record.outcome for record in records] == ["provider_error", "succeeded"]


async def test_a_slow_endpoint_times_out() -> None:
    async with running_fake_openai() as fake:
        fake.plays = [Play(delay=0.8, content="{}")]
        with pytest.raises(ProviderUnavailable) as failed:
            await _write(fake, ai_timeout_seconds=0.2, ai_max_retries=0)
    assert failed.value.transient and "timed out" in failed.value.message


async def test_a_refused_key_is_not_retried() -> None:
    async with running_fake_openai() as fake:
        fake.plays = [Play(status=401)]
        with pytest.raises(ProviderUnavailable) as failed:
            await _write(fake)
    assert not failed.value.transient
    assert len(fake.requests) == 1
    assert "sk-test-secret" not in failed.value.message


async def test_a_job_on_the_ai_pool_uses_the_endpoint_and_logs_the_call(
    client: httpx.AsyncClient, migrated: Settings
) -> None:
    body = await register(client)
    headers, tenant_id = bearer(body), body["user"]["tenant_id"]
    created = await client.post(
        "/api/products",
        json={
            "title": "Robe",
            "price": "20.00",
            "sku": new_sku(),
            "brand": "zara",
            "category": "women_dresses",
        },
        headers=headers,
    )
    product = created.json()
    async with running_fake_openai() as fake:
        # Jobs other tests left pending may reach this worker too: every request gets a usable answer.
        fake.plays = [Play(status=429, retry_after_ms=10)]
        fake.default = completion(GOOD)
        settings = migrated.model_copy(
            update={
                "ai_provider": "openai",
                "ai_base_url": fake.base_url,
                "ai_model": "fake-model-1",
                "ai_cost_per_1k_prompt_tokens": Decimal("1.00"),
            }
        )
        async with running_pipeline(settings, "ai", None):
            accepted = await client.post(
                f"/api/products/{product['id']}/description",
                json={"language": "fr", "platforms": ["vinted", "ebay"]},
                headers=headers,
            )
            assert accepted.status_code == 202, accepted.text
            done = await wait_for_job(client, headers, accepted.json()["id"])
    assert done["status"] == "succeeded", done
    assert done["result"]["provider"] == "openai" and done["result"]["model"] == "fake-model-1"
    assert done["result"]["title"] == GOOD_TITLES["ebay"]
    detail = (await client.get(f"/api/products/{product['id']}", headers=headers)).json()
    assert detail["description"] == GOOD_DESCRIPTION
    async with pg_connection(migrated) as connection:
        rows = await connection.fetch(
            f"SELECT provider, model, outcome, prompt_tokens, cost FROM user_{tenant_id}.ai_generation_log "
            "WHERE job_id = $1",
            done["id"],
        )
    [row] = rows
    assert (row["provider"], row["model"], row["outcome"]) == ("openai", "fake-model-1", "succeeded")
    assert row["prompt_tokens"] > 0 and row["cost"] > 0
