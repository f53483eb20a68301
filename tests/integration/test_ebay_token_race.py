"""Ten eBay jobs of one seller meet an expired token at once: one refresh reaches eBay, every job goes on
with the new token, and the stored credentials are the refreshed ones. Real PostgreSQL (the stored
credentials), real Redis (the refresh lock), the sandbox over real HTTP."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from typing import Any

import httpx
import pytest

from ops.adapters.secrets_box import SecretsBox
from ops.config.settings import Settings
from tests.integration.test_platform_ebay import ACCOUNT, MAPPINGS, PRODUCT, SETTINGS, sandbox_url  # noqa: F401
from tests.support import bearer, pg_connection, register
from workers.context import build_worker_app
from workers.credential_lock import locked_credentials
from workers.platforms.base import JobInput
from workers.platforms.ebay import EbayAdapter
from workers.platforms.http import RetryPolicy

WORKERS = 10


@pytest.fixture
def ebay_settings(migrated: Settings, sandbox_url: str) -> Settings:  # noqa: F811
    return migrated.model_copy(update={"ebay_api_base": sandbox_url})


async def test_ten_workers_with_an_expired_ebay_token_refresh_once(
    client: httpx.AsyncClient,
    ebay_settings: Settings,
    sandbox_url: str,  # noqa: F811
) -> None:
    async with httpx.AsyncClient(base_url=sandbox_url) as control:
        await control.post("/_sandbox/reset")
        seller = (await control.post("/_sandbox/ebay/accounts", json={"account_id": ACCOUNT})).json()
        tokens = await register(client)
        tenant_id = int(tokens["user"]["tenant_id"])
        connected = await client.put(
            "/api/integrations/ebay",
            json={
                "access_token": seller["access_token"],
                "refresh_token": seller["refresh_token"],
                **SETTINGS,
            },
            headers=bearer(tokens),
        )
        assert connected.status_code == 200, connected.text
        # Every job read the same token, which expires before any of them calls eBay.
        await control.post("/_sandbox/clock/advance", json={"seconds": 7201})

        app = await build_worker_app(ebay_settings, "ebay", WORKERS)
        try:
            adapter = EbayAdapter(
                app.http,
                base_url=sandbox_url,
                client_id="stoflow-test",
                client_secret="test-secret",
                retry=RetryPolicy(initial_wait=0.01, max_wait=0.02, jitter=0.0),
                timeout=httpx.Timeout(5.0, connect=2.0),
            )

            async def save_credentials(new_tokens: dict[str, Any]) -> None:
                return None  # the refresh lock stores them itself (checked below)

            async def no_progress(step: dict[str, Any]) -> None:
                return None

            def job(index: int) -> JobInput:
                return JobInput(
                    tenant_id=tenant_id,
                    job_id=uuid.uuid4(),
                    action="publish",
                    attempt=1,
                    payload={},
                    progress={},
                    product=replace(PRODUCT, id=2000 + index, sku=f"SKU-EBAY-RACE-{index}"),
                    listing=None,
                    credentials={
                        "access_token": seller["access_token"],
                        "refresh_token": seller["refresh_token"],
                    },
                    credential_settings=dict(SETTINGS),
                    mappings=MAPPINGS,
                    save_progress=no_progress,
                    save_credentials=save_credentials,
                    credentials_lock=lambda: locked_credentials(app, tenant_id, "ebay"),
                )

            outcomes = await asyncio.gather(*(adapter.publish(job(i)) for i in range(WORKERS)))
        finally:
            await app.close()

        assert len({outcome.external_id for outcome in outcomes}) == WORKERS
        token_calls = (
            await control.get(
                "/_sandbox/requests",
                params={"platform": "ebay", "method": "POST", "path_prefix": "/identity/v1/oauth2/token"},
            )
        ).json()
        assert token_calls["count"] == 1
    async with pg_connection(ebay_settings) as connection:
        sealed = await connection.fetchval(
            f'SELECT encrypted_tokens FROM "{ebay_settings.tenant_schema_prefix}{tenant_id}".'
            "marketplace_credentials WHERE platform = 'ebay'"
        )
    stored = SecretsBox.from_settings(ebay_settings).open(sealed)
    assert stored["access_token"] != seller["access_token"]
    assert stored["refresh_token"] == seller["refresh_token"]
