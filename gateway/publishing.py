"""Publication commands: check the rules in the contract's order, then change the product and enqueue.

Everything here runs in the request's one transaction: the product's state change, its listing rows and
its queue rows commit together, and the dispatcher hears about them only on commit (NOTIFY).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, exists, literal, or_, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from domain.errors import InvalidState, NotFound, OutOfStock, QuotaExceeded
from domain.jobs import UNFINISHED, JobAction
from domain.lifecycle import ProductStatus, change_status
from gateway.problems import ProblemError
from persistence import ai_credits, listings, queue, sales
from persistence.core_models import SubscriptionQuota, Tenant
from persistence.publication_facts import PublicationFacts, lock_publication_facts
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


def _vinted_account(facts: PublicationFacts, account_id: int | None) -> int:
    return _pick_vinted_account(facts.vinted_accounts, facts.named_account_exists, account_id)


async def _resolve_vinted_account(session: AsyncSession, account_id: int | None) -> int:
    """The Vinted account a command names, or the only one connected (the rules of a publish)."""
    accounts = list(await session.scalars(select(VintedAccount.id).order_by(VintedAccount.id).limit(2)))
    named = account_id is not None and await session.get(VintedAccount, account_id) is not None
    return _pick_vinted_account(accounts, named, account_id)


def _pick_vinted_account(accounts: Sequence[int], named_exists: bool, account_id: int | None) -> int:
    if account_id is not None:
        if not named_exists:
            raise ProblemError(
                422,
                "unknown_account",
                "No such Vinted account.",
                errors=[{"loc": ["body", "vinted_account_id"], "msg": "unknown Vinted account"}],
            )
        return account_id
    if len(accounts) > 1:
        raise ProblemError(
            422,
            "account_required",
            "Several Vinted accounts are connected: name one with vinted_account_id.",
            errors=[{"loc": ["body", "vinted_account_id"], "msg": "required with several Vinted accounts"}],
        )
    return accounts[0]


def _check_rules_up_to_listing(
    facts: PublicationFacts, requested: list[str], vinted_account_id: int | None
) -> int | None:
    """The publish rules before `already_listed`, in the contract's order; return the Vinted account."""
    status = facts.lifecycle.status
    if status in (ProductStatus.SOLD, ProductStatus.ARCHIVED):
        raise InvalidState(f"A {status.value} product cannot be published.")
    if facts.lifecycle.stock_quantity <= 0:
        raise OutOfStock("A product with no stock cannot be published.")
    missing = [platform for platform in requested if platform not in facts.connected]
    if missing:
        raise ProblemError(
            409,
            "platform_not_connected",
            f"Connect {', '.join(missing)} before publishing there.",
            errors=[{"loc": ["body", "platforms"], "msg": f"not connected: {', '.join(missing)}"}],
        )
    return _vinted_account(facts, vinted_account_id) if "vinted" in requested else None


def _quota_error(facts: PublicationFacts, requested: list[str]) -> QuotaExceeded | None:
    total = facts.connected | set(requested)
    if len(total) > facts.max_platforms:
        limit = facts.max_platforms
        return QuotaExceeded(f"Your plan allows {limit} platforms; this would make {len(total)}.")
    return None


async def _refuse_if_listed(session: AsyncSession, product_id: int, requested: list[str]) -> None:
    for platform in requested:
        if await _already_listed(session, product_id, platform):
            raise ProblemError(
                409,
                "already_listed",
                f"The product is already listed (or being listed) on {platform}.",
                errors=[{"loc": ["body", "platforms"], "msg": f"already listed on {platform}"}],
            )


async def _check_publish_rules(
    session: AsyncSession, facts: PublicationFacts, requested: list[str], vinted_account_id: int | None
) -> int | None:
    """Check a publish to `requested` in the contract's order; return the Vinted account."""
    account_id = _check_rules_up_to_listing(facts, requested, vinted_account_id)
    await _refuse_if_listed(session, facts.product_id, requested)
    quota = _quota_error(facts, requested)
    if quota is not None:
        raise quota
    return account_id


@dataclass(frozen=True)
class PublishPlan:
    """What a publish command writes once its rules passed (see `plan_publish`)."""

    publishes: list[queue.NewPublish]
    #: the product's new (status, published_at), when it changes
    status_change: tuple[str, datetime | None] | None
    #: the tier's platform quota is exceeded: refused, but `already_listed` answers first (409 before 403)
    quota: QuotaExceeded | None


def plan_publish(facts: PublicationFacts, requested: list[str], vinted_account_id: int | None) -> PublishPlan:
    """Check the publish rules that need no more reading, in the contract's order, and plan the writes.

    `requested`: the platforms without duplicates, in the order asked.
    """
    account_id = _check_rules_up_to_listing(facts, requested, vinted_account_id)
    status_change = None
    if facts.lifecycle.status is ProductStatus.DRAFT:
        change = change_status(facts.lifecycle, ProductStatus.PUBLISHED, now=facts.now)
        status_change = (change.status.value, change.published_at)
    return PublishPlan(
        publishes=[
            queue.NewPublish(platform, account_id if platform == "vinted" else None) for platform in requested
        ],
        status_change=status_change,
        quota=_quota_error(facts, requested),
    )


async def publish(
    session: AsyncSession,
    tenant_id: int,
    product_id: int,
    platforms: Sequence[str],
    vinted_account_id: int | None,
) -> list[Mapping[str, Any]]:
    """Accept a publish command; return one pending job row per platform.

    Two statements: the product locked with what the rules read, then every write (the `already_listed`
    rule is checked inside it, after the lock); errors that need more reading are the rare path.
    """
    requested = list(dict.fromkeys(platforms))
    facts = await lock_publication_facts(session, tenant_id, product_id, vinted_account_id)
    if facts is None:
        raise NotFound("No such product.")
    plan = plan_publish(facts, requested, vinted_account_id)
    if plan.quota is not None:
        await _refuse_if_listed(session, product_id, requested)  # the contract's order: 409 before 403
        raise plan.quota
    jobs = await queue.enqueue_publishes(
        session,
        tenant_id=tenant_id,
        product_id=product_id,
        publishes=plan.publishes,
        status_change=plan.status_change,
    )
    if jobs is None:
        await _refuse_if_listed(session, product_id, requested)
        raise AssertionError("the publish wrote nothing, yet no platform is listed")  # pragma: no cover
    return jobs


async def retry(session: AsyncSession, tenant_id: int, job_id: uuid.UUID) -> QueueJob:
    """Retry a failed job; a publish passes the same rules as a new publish command first."""
    job = await queue.lock_for_retry(session, job_id)
    if job.action == JobAction.PUBLISH:
        account = job.payload.get("vinted_account_id")
        account = account if isinstance(account, int) else None
        facts = (
            await lock_publication_facts(session, tenant_id, job.product_id, account)
            if job.product_id
            else None
        )
        if facts is None:
            raise InvalidState("The product of this job was deleted.")
        if job.platform == "vinted" and not facts.named_account_exists:
            account = None  # that account was disconnected: the tenant's other account, if only one
        await _check_publish_rules(session, facts, [job.platform], account)
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


async def start_import(
    session: AsyncSession, tenant_id: int, platform: str, vinted_account_id: int | None
) -> QueueJob:
    """Accept an import of the account's existing listings; an unfinished one of the platform is returned."""
    if platform not in await connected_platforms(session):
        raise ProblemError(
            409,
            "platform_not_connected",
            f"Connect {platform} before importing from it.",
            errors=[{"loc": ["body", "platform"], "msg": f"not connected: {platform}"}],
        )
    account = await _resolve_vinted_account(session, vinted_account_id) if platform == "vinted" else None
    running = await session.scalar(
        select(QueueJob)
        .where(
            QueueJob.product_id.is_(None),
            QueueJob.platform == platform,
            QueueJob.action == JobAction.IMPORT,
            QueueJob.status.in_([str(status) for status in UNFINISHED]),
            ~QueueJob.payload.has_key("sync_only"),
            *([QueueJob.payload["vinted_account_id"].as_integer() == account] if account is not None else []),
        )
        .limit(1)
    )
    if running is not None:
        return running
    return await queue.enqueue_job(
        session,
        tenant_id=tenant_id,
        platform=platform,
        action=JobAction.IMPORT,
        product_id=None,
        payload={"vinted_account_id": account} if account is not None else {},
    )
