"""Re-seal every stored marketplace token under the current secret, and check that all can be read.

Rotation, with no downtime: deploy with the new secret in STOFLOW_SECRET_KEY and the previous one in
STOFLOW_OLD_SECRET_KEYS (both are read, new seals use the new one), run `stoflow rotate-secret`, then
drop STOFLOW_OLD_SECRET_KEYS. Start-up refuses to run when some tenant's tokens cannot be opened (started
with the old key alone after a rotation, or with a wrong key), naming the variables to fix.
"""

from __future__ import annotations

from ops.adapters.secrets_box import SecretsBox
from ops.config.settings import Settings
from persistence.credentials import ResealReport, reseal_every_tenant
from persistence.database import connect_database


async def rotate_stored_tokens(settings: Settings) -> ResealReport:
    """Re-seal every tenant's marketplace tokens under the current STOFLOW_SECRET_KEY."""
    box = SecretsBox.from_settings(settings)
    database = connect_database(settings.async_database_url, pool_size=2)
    try:
        return await reseal_every_tenant(database.engine, settings.tenant_schema_prefix, box.reseal)
    finally:
        await database.dispose()


async def unreadable_stored_tokens(settings: Settings) -> ResealReport:
    """Try to open every tenant's tokens with the configured key ring; write nothing."""
    box = SecretsBox.from_settings(settings)
    database = connect_database(settings.async_database_url, pool_size=2)
    try:
        return await reseal_every_tenant(
            database.engine, settings.tenant_schema_prefix, box.reseal, write=False
        )
    finally:
        await database.dispose()


def unreadable_message(report: ResealReport) -> str:
    tenants = ", ".join(str(tenant_id) for tenant_id in sorted(report.unreadable)[:10])
    return (
        f"stored marketplace tokens of {len(report.unreadable)} tenant(s) (ids {tenants}) cannot be "
        "decrypted with STOFLOW_SECRET_KEY or STOFLOW_OLD_SECRET_KEYS: start with the secret they were "
        "sealed with (the new one in STOFLOW_SECRET_KEY, any previous one in STOFLOW_OLD_SECRET_KEYS)"
    )
