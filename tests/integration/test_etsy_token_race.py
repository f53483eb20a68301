"""Ten Etsy jobs of one shop meet an expired token at once: one refresh reaches Etsy, every job goes on
with the new token. Real PostgreSQL (the stored credentials), real Redis (the refresh lock), the sandbox
over real HTTP; Etsy rotates refresh tokens, so a second refresh with the old one would be refused."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from decimal import Decimal
from typing import Any

import httpx
import pytest

from domain.catalogue import ProductSnapshot
from ops.config.settings import Settings
from tests.integration.test_platform_etsy import PNG, SHOP_ID, TODAY, sandbox_url, with_media  # noqa: F401
from tests.support import bearer, register
from workers.context import build_worker_app
from workers.credential_lock import locked_credentials
from workers.platforms.base import JobInput
from workers.platforms.etsy import EtsyAdapter
from workers.platforms.http import RequestRateLimiter, RetryPolicy

WORKERS = 10

_ = (PNG, with_media)


@pytest.fixture
def etsy_settings(migrated: Settings, sandbox_url: str) -> Settings:  # noqa: F811
    return migrated.model_copy(update={"etsy_api_base": sandbox_url})


def product(index: int, base_url: str) -> ProductSnapshot:
    return ProductSnapshot(
        id=1000 + index,
        sku=f"SKU-RACE-{index}",
        title=f"Veste en jean vintage {index}",
        price=Decimal("59.00"),
        category="women_dresses",
        condition="very_good",
        decade="1990s",
        image_urls=(f"{base_url}/media/race/{index}.png?sig=x",),
    )


async def test_ten_workers_with_an_expired_token_refresh_once(
    client: httpx.AsyncClient,
    etsy_settings: Settings,
    sandbox_url: str,  # noqa: F811
) -> None:
    async with httpx.AsyncClient(base_url=sandbox_url) as control:
        await control.post("/_sandbox/reset")
        shop = (await control.post("/_sandbox/etsy/accounts", json={"shop_id": SHOP_ID})).json()
        tokens = await register(client)
        tenant_id = int(tokens["user"]["tenant_id"])
        connected = await client.put(
            "/api/integrations/etsy",
            json={
                "shop_id": SHOP_ID,
                "access_token": shop["access_token"],
                "refresh_token": shop["refresh_token"],
                "shipping_profile_id": 8001,
            },
            headers=bearer(tokens),
        )
        assert connected.status_code == 200, connected.text
        # Every job read the same token, which expires before any of them calls Etsy.
        await control.post("/_sandbox/clock/advance", json={"seconds": 3601})

        app = await build_worker_app(etsy_settings, "etsy", WORKERS)
        try:
            adapter = EtsyAdapter(
                app.http,
                base_url=sandbox_url,
                api_key="keystring",
                shared_secret="secret",
                limiter=RequestRateLimiter(10_000, burst=100),
                retry=RetryPolicy(initial_wait=0.01, max_wait=0.02, jitter=0.0),
                today=lambda: TODAY,
            )
            saved: list[dict[str, Any]] = []

            async def save_credentials(new_tokens: dict[str, Any]) -> None:
                saved.append(new_tokens)

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
                    product=replace(product(index, sandbox_url)),
                    listing=None,
                    credentials={
                        "access_token": shop["access_token"],
                        "refresh_token": shop["refresh_token"],
                    },
                    credential_settings={"shop_id": SHOP_ID, "shipping_profile_id": 8001},
                    mappings=app.mappings,
                    save_progress=no_progress,
                    save_credentials=save_credentials,
                    credentials_lock=lambda: locked_credentials(app, tenant_id, "etsy"),
                )

            outcomes = await asyncio.gather(*(adapter.publish(job(i)) for i in range(WORKERS)))
        finally:
            await app.close()

        assert len({outcome.external_id for outcome in outcomes}) == WORKERS
        refreshes = (await control.get("/_sandbox/etsy/refreshes")).json()["count"]
        assert refreshes == 1
        token_calls = (
            await control.get("/_sandbox/requests", params={"path_prefix": "/v3/public/oauth/token"})
        ).json()
        assert token_calls["count"] == 1
        # The stored tokens are the new ones (the old refresh token is dead at Etsy).
        listings = (await control.get("/_sandbox/etsy/listings", params={"shop_id": SHOP_ID})).json()
        assert len(listings["shops"][str(SHOP_ID)]["listings"]) == WORKERS
