"""Secret rotation: every tenant's stored tokens re-sealed under the new key, none lost; start-up with the
old key alone refuses, naming the variables to fix."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr

from ops.adapters.secrets_box import SecretsBox
from ops.config.settings import Settings
from ops.runtime.platform import UnreadableStoredSecrets, _prepare_database
from ops.runtime.secret_rotation import rotate_stored_tokens, unreadable_stored_tokens
from tests.conftest import ROOT
from tests.scale import ROTATION_TENANTS
from tests.support import app_client, bearer, pg_connection, register

OLD_SECRET = "old-secret-" + "o" * 40
NEW_SECRET = "new-secret-" + "n" * 40
TENANTS = ROTATION_TENANTS


async def _connect_ebay(http: httpx.AsyncClient, index: int) -> int:
    tokens = await register(http)
    response = await http.put(
        "/api/integrations/ebay",
        json={
            "access_token": f"access-{index}",
            "refresh_token": f"refresh-{index}",
            "marketplace_id": "EBAY_FR",
            "fulfillment_policy_id": "f",
            "payment_policy_id": "p",
            "return_policy_id": "r",
            "merchant_location_key": "m",
        },
        headers=bearer(tokens),
    )
    assert response.status_code == 200, response.text
    tenant_id: int = tokens["user"]["tenant_id"]
    return tenant_id


async def _stored_tokens(settings: Settings, tenant_ids: list[int]) -> dict[int, bytes]:
    async with pg_connection(settings) as connection:
        return {
            tenant_id: await connection.fetchval(
                f'SELECT encrypted_tokens FROM "{settings.tenant_schema_prefix}{tenant_id}".'
                "marketplace_credentials WHERE platform = 'ebay'"
            )
            for tenant_id in tenant_ids
        }


async def _drop_every_tenant(settings: Settings) -> None:
    """No tenant left: their schemas, their rows, and the public rows keyed by a tenant id alone."""
    async with pg_connection(settings) as connection:
        for tenant_id in await connection.fetch("SELECT id FROM public.tenants"):
            await connection.execute(
                f'DROP SCHEMA IF EXISTS "{settings.tenant_schema_prefix}{tenant_id["id"]}" CASCADE'
            )
        await connection.execute("TRUNCATE public.tenants CASCADE")
        # No foreign key to tenants here (the sale checker and the webhooks read them by tenant id).
        await connection.execute("TRUNCATE public.sale_checks, public.marketplace_directory")


@pytest.fixture
async def isolated(migrated: Settings) -> AsyncIterator[Settings]:
    """Only this test's tenants: the rotation walks every tenant of the database.

    Its tenants are dropped afterwards too: their tokens are sealed under a key the rest of the suite does
    not hold, and a later test walking every tenant (the sale checks) must not meet them.
    """
    await _drop_every_tenant(migrated)
    yield migrated
    await _drop_every_tenant(migrated)


async def test_rotation_over_a_hundred_tenants_keeps_every_token(isolated: Settings) -> None:
    """The rotation's must-show (100 tenants, every token kept) at STOFLOW_TEST_SCALE=full; 20 in CI."""
    old = isolated.model_copy(update={"stoflow_secret_key": SecretStr(OLD_SECRET)})
    rotating = isolated.model_copy(
        update={"stoflow_secret_key": SecretStr(NEW_SECRET), "stoflow_old_secret_keys": SecretStr(OLD_SECRET)}
    )
    new_only = isolated.model_copy(update={"stoflow_secret_key": SecretStr(NEW_SECRET)})
    async with app_client(old) as http:
        tenant_ids: list[int] = []
        for start in range(0, TENANTS, 10):
            tenant_ids += await asyncio.gather(*(_connect_ebay(http, i) for i in range(start, start + 10)))
    before = await _stored_tokens(isolated, tenant_ids)

    assert (await unreadable_stored_tokens(new_only)).unreadable.keys() == set(tenant_ids)
    report = await rotate_stored_tokens(rotating)
    assert (report.tenants, report.resealed, report.unreadable) == (TENANTS, TENANTS, {})

    after = await _stored_tokens(isolated, tenant_ids)
    new_box, old_box = SecretsBox(NEW_SECRET), SecretsBox(OLD_SECRET)
    for index, tenant_id in enumerate(tenant_ids):
        assert after[tenant_id] != before[tenant_id]
        assert new_box.open(after[tenant_id]) == old_box.open(before[tenant_id])
        assert new_box.open(after[tenant_id])["refresh_token"] == f"refresh-{index}"
        assert not old_box.can_open(after[tenant_id])
    assert (await unreadable_stored_tokens(new_only)).unreadable == {}

    # Started with the old key alone, the platform refuses, naming what to set.
    with pytest.raises(UnreadableStoredSecrets, match="STOFLOW_SECRET_KEY or STOFLOW_OLD_SECRET_KEYS"):
        await _prepare_database(old)
    await _prepare_database(new_only)


def test_stoflow_up_with_the_old_key_alone_refuses_with_a_clear_message(migrated: Settings) -> None:
    """Whatever the database holds from other tests, a key that opens nothing of it refuses to start."""
    env = {
        **os.environ,
        "DATABASE_URL": migrated.database_url or "",
        "REDIS_URL": migrated.redis_url or "",
        "STOFLOW_ENV": "test",
        "STOFLOW_SECRET_KEY": "a-key-that-sealed-nothing-" + "z" * 30,
        "LOG_LEVEL": "WARNING",
    }
    seeded = asyncio.run(_seal_one(migrated))
    result = subprocess.run(
        [sys.executable, "-m", "ops", "up", "--port", "0"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert seeded
    assert result.returncode == 2, result.stderr[-2000:]
    assert "refusing to start" in result.stderr
    assert "STOFLOW_SECRET_KEY" in result.stderr


async def _seal_one(settings: Settings) -> bool:
    async with app_client(settings) as http:
        await _connect_ebay(http, 0)
    return True
