"""Publication commands: check the rules in the contract's order, then change the product and enqueue.

Everything here runs in the request's one transaction: the product's state change, its listing rows and
its queue rows commit together, and the dispatcher hears about them only on commit (NOTIFY).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import Select, exists, literal, or_, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from domain.errors import InvalidState, OutOfStock, QuotaExceeded
from domain.jobs import UNFINISHED, JobAction
from domain.lifecycle import ProductStatus, change_status
from gateway.problems import ProblemError
from persistence import ai_credits, listings, queue, sales
from persistence.core_models import SubscriptionQuota, Tenant
from persistence.products import apply_status_change, get_live_product, lifecycle_state, transaction_now
from persistence.tenant_models import (
    MarketplaceCredential,
    PlatformListing,
    Product,
    QueueJob,
    VintedAccount,
)


async def connected_platforms(session: AsyncSession) -> set[str]:
    """Platforms the tenant has connected: eBay/Etsy by credentials, Vinted by at least one account."""
    vinted = select(literal("vinted")).where(exists(select(VintedAccount.id)))
    return set(await session.scalars(union_all(select(MarketplaceCredential.platform), vinted)))


async def max_platforms(session: AsyncSession, tenant_id: int) -> int:
    limit = await session.scalar(
        select(SubscriptionQuota.max_platforms)
        .join(Tenant, Tenant.tier == SubscriptionQuota.tier)
        .where(Tenant.id == tenant_id)
    )
    return int(limit or 0)


async def check_platform_quota(
    session: AsyncSession, tenant_id: int, platforms: set[str], *, connected: set[str] | None = None
) -> None:
    """Refuse when these platforms together with the connected ones exceed the tier's `max_platforms`.

    `connected`: the tenant's connected platforms when the caller has just read them in this transaction.
    """
    if connected is None:
        connected = await connected_platforms(session)
    total = connected | platforms
    limit = await max_platforms(session, tenant_id)
    if len(total) > limit:
        raise QuotaExceeded(f"Your plan allows {limit} platforms; this would make {len(total)}.")


def _unfinished(product_id: int, platform: str, action: str) -> Select[QueueJob]:
    return select(QueueJob).where(
        QueueJob.product_id == product_id,
        QueueJob.platform == platform,
        QueueJob.action == action,
        QueueJob.status.in_([str(status) for status in UNFINISHED]),
    )


async def _unfinished_job(
    session: AsyncSession, product_id: int, platform: str, action: str
) -> QueueJob | None:
    return await session.scalar(
        _unfinished(product_id, platform, action).order_by(QueueJob.created_at.desc()).limit(1)
    )


async def _already_listed(session: AsyncSession, product_id: int, platform: str) -> bool:
    """An active listing, or an unfinished publish, on this platform (one statement)."""
    active = select(PlatformListing.product_id).where(
        PlatformListing.product_id == product_id,
        PlatformListing.platform == platform,
        PlatformListing.status.in_(listings.ACTIVE_LISTING_STATES),
    )
    publishing = _unfinished(product_id, platform, JobAction.PUBLISH)
    return bool(await session.scalar(select(or_(exists(active), exists(publishing)))))


async def _resolve_vinted_account(session: AsyncSession, account_id: int | None) -> int:
    if account_id is not None:
        if await session.get(VintedAccount, account_id) is None:
            raise ProblemError(
                422,
                "unknown_account",
                "No such Vinted account.",
                errors=[{"loc": ["body", "vinted_account_id"], "msg": "unknown Vinted account"}],
            )
        return account_id
    accounts = list(await session.scalars(select(VintedAccount.id).order_by(VintedAccount.id).limit(2)))
    if len(accounts) > 1:
        raise ProblemError(
            422,
            "account_required",
            "Several Vinted accounts are connected: name one with vinted_account_id.",
            errors=[{"loc": ["body", "vinted_account_id"], "msg": "required with several Vinted accounts"}],
        )
    return accounts[0]


async def _check_publish_rules(
    session: AsyncSession,
    tenant_id: int,
    product: Product,
    requested: list[str],
    vinted_account_id: int | None,
) -> int | None:
    """Check a publish of `product` to `requested` in the contract's order; return the Vinted account."""
    status = ProductStatus(product.status)
    if status in (ProductStatus.SOLD, ProductStatus.ARCHIVED):
        raise InvalidState(f"A {status.value} product cannot be published.")
    if product.stock_quantity <= 0:
        raise OutOfStock("A product with no stock cannot be published.")
    connected = await connected_platforms(session)
    missing = [platform for platform in requested if platform not in connected]
    if missing:
        raise ProblemError(
            409,
            "platform_not_connected",
            f"Connect {', '.join(missing)} before publishing there.",
            errors=[{"loc": ["body", "platforms"], "msg": f"not connected: {', '.join(missing)}"}],
        )
    account_id = await _resolve_vinted_account(session, vinted_account_id) if "vinted" in requested else None
    for platform in requested:
        if await _already_listed(session, product.id, platform):
            raise ProblemError(
                409,
                "already_listed",
                f"The product is already listed (or being listed) on {platform}.",
                errors=[{"loc": ["body", "platforms"], "msg": f"already listed on {platform}"}],
            )
    await check_platform_quota(session, tenant_id, set(requested), connected=connected)
    return account_id


async def publish(
    session: AsyncSession,
    tenant_id: int,
    product: Product,
    platforms: Sequence[str],
    vinted_account_id: int | None,
) -> list[QueueJob]:
    """Accept a publish command (product row already locked); return one pending job per platform."""
    requested = list(dict.fromkeys(platforms))
    account_id = await _check_publish_rules(session, tenant_id, product, requested, vinted_account_id)
    if ProductStatus(product.status) is ProductStatus.DRAFT:
        now = await transaction_now(session)
        await apply_status_change(
            session, product, change_status(lifecycle_state(product), ProductStatus.PUBLISHED, now=now)
        )
    jobs = []
    for platform in requested:
        account = account_id if platform == "vinted" else None
        await listings.mark_listing_pending(session, product.id, platform, account)
        payload = {"vinted_account_id": account} if account is not None else {}
        jobs.append(
            await queue.enqueue_job(
                session,
                tenant_id=tenant_id,
                platform=platform,
                action=JobAction.PUBLISH,
                product_id=product.id,
                payload=payload,
            )
        )
    return jobs


async def retry(session: AsyncSession, tenant_id: int, job_id: uuid.UUID) -> QueueJob:
    """Retry a failed job; a publish passes the same rules as a new publish command first."""
    job = await queue.lock_for_retry(session, job_id)
    if job.action == JobAction.PUBLISH:
        product = await get_live_product(session, job.product_id, for_update=True) if job.product_id else None
        if product is None:
            raise InvalidState("The product of this job was deleted.")
        account = job.payload.get("vinted_account_id")
        if job.platform == "vinted" and (
            not isinstance(account, int) or await session.get(VintedAccount, account) is None
        ):
            account = None  # that account was disconnected: the tenant's other account, if only one
        await _check_publish_rules(
            session, tenant_id, product, [job.platform], account if isinstance(account, int) else None
        )
    elif job.action == JobAction.GENERATE_DESCRIPTION:
        # Its credit came back when it failed: a retry spends one again (402 when none are left).
        await ai_credits.charge_for_job(session, tenant_id, job_id)
    return await queue.retry(session, tenant_id, job_id)


async def _live_listing(session: AsyncSession, product_id: int, platform: str) -> PlatformListing:
    listing = await listings.get_listing(session, product_id, platform)
    if listing is None or listing.status != "live":
        raise ProblemError(409, "not_listed", f"The product has no live listing on {platform}.")
    return listing


async def update_listing(session: AsyncSession, tenant_id: int, product: Product, platform: str) -> QueueJob:
    """Push the current product to its live listing on one platform."""
    listing = await _live_listing(session, product.id, platform)
    return await queue.enqueue_job(
        session,
        tenant_id=tenant_id,
        platform=platform,
        action=JobAction.UPDATE,
        product_id=product.id,
        payload={"vinted_account_id": listing.vinted_account_id} if listing.vinted_account_id else {},
    )


async def delist(
    session: AsyncSession,
    tenant_id: int,
    product: Product,
    platform: str,
    *,
    listing_status_after: str = "delisted",
) -> QueueJob:
    """End a live listing; an unfinished delist of the same listing is returned instead of a second one."""
    listing = await _live_listing(session, product.id, platform)
    return await sales.enqueue_delist(session, tenant_id, listing, listing_status_after=listing_status_after)


async def delist_everywhere(
    session: AsyncSession, tenant_id: int, product: Product, *, except_platform: str | None = None
) -> list[QueueJob]:
    """A sold or archived product: a delist job for every other live listing (no double sale)."""
    return await sales.end_listings(session, tenant_id, product.id, except_platform=except_platform)


async def live_listings(session: AsyncSession, product_id: int) -> list[PlatformListing]:
    return [row for row in await listings.listings_of(session, product_id) if row.status == "live"]
