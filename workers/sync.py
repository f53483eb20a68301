"""The listing sync: find listings that ended outside Stoflow (withdrawn on eBay, deactivated or deleted
on Etsy) and record them `delisted`, with a history row.

Each eBay and Etsy worker process runs `sync_loop`; a Redis key taken with SET NX per platform and round lets
one process of the pool do each round (`SYNC_INTERVAL_SECONDS`). A round visits every tenant with a live
listing on the platform, checks at most `SYNC_LISTINGS_PER_ROUND` of its listings (the longest unchecked
first, one marketplace read each) and moves on: a large shop is covered over several rounds.
Vinted has no API the backend can call: its items are checked when the wardrobe is read through the plugin
(an import, see workers/platforms/vinted.py).

Each round is also the safety net of "a gone product is on no marketplace": a live listing of a sold,
archived or deleted product with no unfinished delist (its delist ran out of attempts or was refused, or
dates from before the rules kept such a delist waiting) gets a new delist, at most one an hour after a
failed one. It lives here rather than in the dispatcher's sweep because the sweep visits only tenants with
unfinished jobs (`tenant_work`), and such a listing's tenant may have none left; the sync visits every
tenant, per platform, each round.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.jobs import GONE_LISTING_DELIST_BACKOFF, JobAction
from persistence import credentials as credential_store
from persistence import listings, queue, sales
from persistence.tenancy import tenant_transaction
from workers.context import WorkerApp
from workers.credential_lock import locked_credentials
from workers.platforms.base import JobInput

log = structlog.get_logger(__name__)

SYNCED_PLATFORMS = frozenset({"ebay", "etsy", "vinted"})
SYNC_LISTINGS_PER_ROUND = 200
#: Live listings of gone products a round gives a new delist, per tenant and platform.
GONE_LISTINGS_PER_ROUND = 100


def start_sync_loop(app: WorkerApp) -> asyncio.Task[None] | None:
    """Start the sync rounds of this process's platform (None: nothing to sync there, or turned off)."""
    if app.platform not in SYNCED_PLATFORMS or _interval(app) <= 0:
        return None
    return asyncio.create_task(sync_loop(app), name=f"sync-{app.platform}")


async def sync_loop(app: WorkerApp) -> None:
    """Run a round whenever this process wins the platform's round key; never stops on an error.

    The first round comes one interval after start: a restart storm does not sweep every shop at once.
    """
    interval = _interval(app)
    key = f"stoflow:sync:{{{app.platform}}}"
    await app.redis.set(key, app.owner, nx=True, ex=max(1, int(interval)))
    while True:
        await asyncio.sleep(min(interval, 5.0))
        try:
            if await app.redis.set(key, app.owner, nx=True, ex=max(1, int(interval))):
                await sync_round(app)
        except Exception:  # a failed round is retried next round
            log.warning("sync_round_failed", platform=app.platform, exc_info=True)


async def sync_round(app: WorkerApp) -> int:
    """Check every tenant's live listings on this platform once; return how many were found ended."""
    async with app.db.session_factory() as session:
        tenants = [
            int(row[0]) for row in await session.execute(text("SELECT id FROM public.tenants ORDER BY id"))
        ]
    ended = 0
    for tenant_id in tenants:
        try:
            ended += await sync_tenant(app, tenant_id)
        except Exception:  # one tenant's broken connection must not stop the others
            log.warning("sync_tenant_failed", tenant_id=tenant_id, platform=app.platform, exc_info=True)
    return ended


def _interval(app: WorkerApp) -> float:
    settings = app.settings
    return (
        settings.vinted_sync_interval_seconds if app.platform == "vinted" else settings.sync_interval_seconds
    )


async def sync_tenant(app: WorkerApp, tenant_id: int) -> int:
    """Check one tenant's live listings on this platform; return how many ended outside Stoflow.

    Vinted: the backend cannot read Vinted; each account with live listings gets a wardrobe read through
    the plugin instead (an `import` job that only ends what is gone), and 0 is returned now.
    """
    await delist_gone_listings(app, tenant_id)
    if app.platform == "vinted":
        async with tenant_transaction(
            app.db.session_factory, app.settings.tenant_schema_prefix, tenant_id
        ) as session:
            await queue_wardrobe_checks(session, tenant_id)
        return 0
    adapter = app.adapters.get(app.platform)
    checker = getattr(adapter, "listing_ended", None)
    if checker is None:
        return 0
    prefix = app.settings.tenant_schema_prefix
    async with tenant_transaction(app.db.session_factory, prefix, tenant_id) as session:
        credential = await credential_store.get_credential(session, app.platform)
        rows = (
            await listings.live_listings_to_check(session, app.platform, SYNC_LISTINGS_PER_ROUND)
            if credential is not None
            else []
        )
        checks = [(row.id, row.product_id, row.external_id, row.url, dict(row.data)) for row in rows]
        tokens = app.box.open(credential.encrypted_tokens) if credential is not None else None
        settings = dict(credential.settings) if credential is not None else {}
    if not checks:
        return 0
    structlog.contextvars.bind_contextvars(tenant_id=tenant_id, platform=app.platform)

    async def save_credentials(new_tokens: dict[str, Any]) -> None:
        async with tenant_transaction(app.db.session_factory, prefix, tenant_id) as session:
            await credential_store.replace_tokens(session, app.platform, app.box.seal(new_tokens))

    async def no_progress(_step: dict[str, Any]) -> None:
        return None

    still_live: list[int] = []
    ended = 0
    for listing_id, product_id, external_id, url, data in checks:
        probe = JobInput(
            tenant_id=tenant_id,
            job_id=uuid.uuid4(),
            action="sync",
            attempt=1,
            payload={},
            progress={},
            product=None,
            listing={"external_id": external_id, "url": url, "data": data},
            credentials=tokens,
            credential_settings=settings,
            mappings=app.mappings,
            save_progress=no_progress,
            save_credentials=save_credentials,
            credentials_lock=lambda: locked_credentials(app, tenant_id, app.platform),
        )
        reason = await checker(probe)
        if reason is None:
            still_live.append(listing_id)
            continue
        async with tenant_transaction(app.db.session_factory, prefix, tenant_id) as session:
            if await listings.end_outside(session, product_id, app.platform, external_id, reason):
                ended += 1
                log.info(
                    "listing_ended_outside", product_id=product_id, external_id=external_id, reason=reason
                )
    async with tenant_transaction(app.db.session_factory, prefix, tenant_id) as session:
        await listings.mark_checked(session, still_live)
    return ended


async def delist_gone_listings(
    app: WorkerApp, tenant_id: int, *, backoff: timedelta = GONE_LISTING_DELIST_BACKOFF
) -> int:
    """The safety net: a delist for each live listing of a gone product on this platform that has none
    under way; return how many were enqueued."""
    async with tenant_transaction(
        app.db.session_factory, app.settings.tenant_schema_prefix, tenant_id
    ) as session:
        jobs = await sales.end_gone_listings(
            session, tenant_id, app.platform, backoff=backoff, limit=GONE_LISTINGS_PER_ROUND
        )
    for job in jobs:
        log.warning(
            "gone_listing_delist_enqueued",
            tenant_id=tenant_id,
            platform=app.platform,
            job_id=str(job.id),
            product_id=job.product_id,
        )
    return len(jobs)


async def queue_wardrobe_checks(session: AsyncSession, tenant_id: int) -> int:
    """An `import` job (sync only) for each Vinted account with live listings and no import under way."""
    rows = await session.execute(
        text(
            "SELECT DISTINCT l.vinted_account_id FROM platform_listings AS l "
            "JOIN vinted_accounts AS a ON a.id = l.vinted_account_id "
            "WHERE l.platform = 'vinted' AND l.status = 'live' AND NOT EXISTS ("
            "  SELECT 1 FROM plugin_queue AS j WHERE j.platform = 'vinted' AND j.action = 'import' "
            "  AND j.status IN ('pending', 'queued', 'running', 'waiting_plugin', 'rate_limited') "
            "  AND (j.payload ->> 'vinted_account_id')::bigint = l.vinted_account_id)"
        )
    )
    accounts = [int(row[0]) for row in rows]
    for account in accounts:
        await queue.enqueue_job(
            session,
            tenant_id=tenant_id,
            platform="vinted",
            action=JobAction.IMPORT,
            product_id=None,
            payload={"vinted_account_id": account, "sync_only": True},
        )
    return len(accounts)
