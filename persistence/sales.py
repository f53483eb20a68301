"""Sales: the one function that records a sale, whoever saw it (user, plugin, webhook, sale check).

`record_sale` runs in the caller's tenant transaction: the sale row (unique per platform + order), the
stock, the product's status and every job the sale causes commit together. Job state goes through
`persistence.queue` only: delists and updates are enqueued there, and unfinished publishes are handed to
`queue.product_gone` (cancelled, or delisted as soon as they land).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from domain.jobs import UNFINISHED, JobAction
from domain.lifecycle import ProductStatus, change_status
from domain.sales import OrderLine, SaleSource, apply_sale
from persistence import listings, queue
from persistence.product_edits import follow_edit
from persistence.products import apply_status_change, lifecycle_state, transaction_now
from persistence.tenant_models import PlatformListing, Product, QueueJob, Sale

#: A sale the user records has no marketplace.
USER_PLATFORM = "stoflow"


@dataclass(frozen=True)
class RecordedSale:
    """What `record_sale` did: the sale (new or the one already recorded) and the jobs it caused."""

    sale: Sale
    created: bool
    jobs: list[QueueJob]


def _unfinished(product_id: int, platform: str, action: str) -> Select[QueueJob]:
    return (
        select(QueueJob)
        .where(
            QueueJob.product_id == product_id,
            QueueJob.platform == platform,
            QueueJob.action == action,
            QueueJob.status.in_([str(status) for status in UNFINISHED]),
        )
        .order_by(QueueJob.created_at.desc())
        .limit(1)
    )


async def enqueue_delist(
    session: AsyncSession, tenant_id: int, listing: PlatformListing, *, listing_status_after: str = "delisted"
) -> QueueJob:
    """End one live listing; an unfinished delist of the same listing is returned instead of a second one."""
    existing = await session.scalar(_unfinished(listing.product_id, listing.platform, JobAction.DELIST))
    if existing is not None:
        return existing
    payload: dict[str, Any] = {"listing_status_after": listing_status_after}
    if listing.vinted_account_id:
        payload["vinted_account_id"] = listing.vinted_account_id
    return await queue.enqueue_job(
        session,
        tenant_id=tenant_id,
        platform=listing.platform,
        action=JobAction.DELIST,
        product_id=listing.product_id,
        payload=payload,
    )


async def end_listings(
    session: AsyncSession, tenant_id: int, product_id: int, *, except_platform: str | None = None
) -> list[QueueJob]:
    """A sold, archived or deleted product: a delist for every other live listing (no double sale).

    Publishes still in flight are cancelled when nothing reached the marketplace, else delisted on landing.
    The product's unfinished jobs are locked first, before anything this transaction writes to listings or
    the tenant's work mark: a worker takes a job's row, then its listing and that mark, so taking them in
    the other order made the two wait for each other (a deadlock PostgreSQL broke by aborting one side).
    """
    await queue.product_gone(session, tenant_id, product_id)
    return [
        await enqueue_delist(session, tenant_id, listing)
        for listing in await listings.listings_of(session, product_id)
        if listing.status == "live" and listing.platform != except_platform
    ]


_GONE_LIVE_LISTINGS = text(
    """
    SELECT l.product_id FROM platform_listings AS l
    JOIN products AS p ON p.id = l.product_id
    WHERE l.platform = :platform AND l.status = 'live'
      AND (p.deleted_at IS NOT NULL OR p.status IN ('sold', 'archived'))
      -- A listing whose account is gone cannot be taken down by us: nothing to enqueue until it is back.
      AND CASE WHEN l.platform = 'vinted'
               THEN EXISTS (SELECT 1 FROM vinted_accounts AS a WHERE a.id = l.vinted_account_id)
               ELSE EXISTS (SELECT 1 FROM marketplace_credentials AS c WHERE c.platform = l.platform) END
      AND NOT EXISTS (
          SELECT 1 FROM plugin_queue AS j
          WHERE j.product_id = l.product_id AND j.platform = l.platform AND j.action = 'delist'
            AND (j.status = ANY(:unfinished)
                 OR (j.status = 'failed' AND j.updated_at > now() - make_interval(secs => :backoff))))
    ORDER BY l.product_id
    LIMIT :limit
    -- The product's lock first, as a sale takes it: a sale ending this listing right now is skipped (it
    -- enqueues its own delist), and the two never enqueue one each.
    FOR UPDATE OF p SKIP LOCKED
    """
)


async def end_gone_listings(
    session: AsyncSession, tenant_id: int, platform: str, *, backoff: timedelta, limit: int
) -> list[QueueJob]:
    """The safety net under `end_listings`: a delist for each live listing on `platform` of a sold,
    archived or deleted product that has no unfinished delist, and none that failed within `backoff`.

    What it catches: a delist that ran out of attempts or was refused, and rows from before the rules
    kept a gone product's delist waiting. At most `limit` listings a call (this tenant's schema only).
    """
    product_ids = [
        int(row[0])
        for row in await session.execute(
            _GONE_LIVE_LISTINGS,
            {
                "platform": platform,
                "unfinished": [str(status) for status in UNFINISHED],
                "backoff": backoff.total_seconds(),
                "limit": limit,
            },
        )
    ]
    jobs = []
    for product_id in product_ids:
        listing = await listings.get_listing(session, product_id, platform)
        assert listing is not None  # read under its product's lock just above
        jobs.append(await enqueue_delist(session, tenant_id, listing))
    return jobs


async def _update_others(
    session: AsyncSession, tenant_id: int, product: Product, sold_on: str
) -> list[QueueJob]:
    """Stock left: every other live listing gets an `update` carrying the new quantity.

    Through the edit path (`product_edits.follow_edit`): an update of that listing that has not started
    yet (an edit's, or an earlier sale's) carries this change too, so edits and sales give one update per
    platform. No extra wait: a sale's stock must reach the other marketplaces at once.
    """
    return await follow_edit(session, tenant_id, product.id, except_platform=sold_on, with_coalesced=True)


async def find_listing_product(session: AsyncSession, platform: str, external_id: str) -> Product | None:
    """The live product behind a marketplace listing id, locked for the sale; None when unknown."""
    product_id = await session.scalar(
        select(PlatformListing.product_id).where(
            PlatformListing.platform == platform, PlatformListing.external_id == external_id
        )
    )
    if product_id is None:
        return None
    return await session.scalar(
        select(Product).where(Product.id == product_id, Product.deleted_at.is_(None)).with_for_update()
    )


async def record_sale(
    session: AsyncSession,
    tenant_id: int,
    product: Product,
    *,
    platform: str,
    order_id: str,
    source: SaleSource,
    quantity: int = 1,
    sold_at: datetime | None = None,
) -> RecordedSale:
    """Record one sale of a locked product, once per (platform, order), and start what follows from it.

    Stock drops in this transaction (never below zero). The last unit: the product is SOLD, the sold
    listing `sold`, every other listing comes down. Stock left: the other live listings get an `update`.
    No stock left already: the sale is kept and the product is marked oversold.
    """
    now = await transaction_now(session)
    inserted = await session.scalar(
        insert(Sale)
        .values(
            product_id=product.id,
            platform=platform,
            order_id=order_id,
            quantity=quantity,
            source=str(source),
            took_stock=product.stock_quantity > 0,
            sold_at=sold_at or now,
        )
        .on_conflict_do_nothing(index_elements=["platform", "order_id"])
        .returning(Sale.id)
    )
    if inserted is None:
        existing = await session.scalar(
            select(Sale).where(Sale.platform == platform, Sale.order_id == order_id)
        )
        assert existing is not None  # the conflict was with this row
        return RecordedSale(sale=existing, created=False, jobs=[])
    sale = await session.get(Sale, inserted)
    assert sale is not None
    effect = apply_sale(product.stock_quantity, quantity)
    product.stock_quantity = effect.stock_after
    product.oversold = product.oversold or effect.oversold
    selling_out = effect.sold_out and ProductStatus(product.status) is ProductStatus.PUBLISHED
    if selling_out:
        # One change of the product, one new version: the status change below bumps it.
        change = change_status(lifecycle_state(product), ProductStatus.SOLD, now=now)
        await apply_status_change(session, product, change)
    else:
        product.version = product.version + 1
        await session.flush()
    jobs: list[QueueJob] = []
    if effect.sold_out:
        jobs = await end_listings(session, tenant_id, product.id, except_platform=platform)
    elif effect.took_stock:
        jobs = await _update_others(session, tenant_id, product, platform)
    if platform != USER_PLATFORM:
        # After the jobs (see `end_listings`): a worker landing a job on this listing holds the job first.
        await session.execute(
            update(PlatformListing)
            .where(PlatformListing.product_id == product.id, PlatformListing.platform == platform)
            .values(status="sold", last_synced_at=now, updated_at=now)
        )
    return RecordedSale(sale=sale, created=True, jobs=jobs)


def user_order_id() -> str:
    """A user's own sale has no marketplace order: give it a unique one."""
    return f"user-{uuid.uuid4()}"


# --- reading sales -----------------------------------------------------------------------------------

_OUTCOMES = text(
    """
    SELECT s.id AS sale_id, j.platform, j.action, j.id AS job_id, j.status
    FROM sales s
    JOIN plugin_queue j ON j.product_id = s.product_id
     AND j.action IN ('delist', 'update')
     AND j.platform <> s.platform
     AND j.created_at >= s.detected_at
     AND j.created_at < coalesce(
         (SELECT min(n.detected_at) FROM sales n
          WHERE n.product_id = s.product_id AND n.detected_at > s.detected_at), 'infinity')
    WHERE s.id = ANY(:ids) AND s.took_stock
    ORDER BY j.created_at, j.platform
    """
)


async def outcomes_of(session: AsyncSession, sale_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Per sale, the delist/update jobs it caused on the other marketplaces, with their current status."""
    found: dict[int, list[dict[str, Any]]] = {sale_id: [] for sale_id in sale_ids}
    if not sale_ids:
        return found
    for row in (await session.execute(_OUTCOMES, {"ids": sale_ids})).mappings():
        found[row["sale_id"]].append(
            {
                "platform": row["platform"],
                "action": row["action"],
                "job_id": row["job_id"],
                "status": row["status"],
            }
        )
    return found


async def oversold_orders(session: AsyncSession, product_id: int) -> list[dict[str, Any]]:
    """Every order of an oversold product, oldest first."""
    rows = await session.scalars(select(Sale).where(Sale.product_id == product_id).order_by(Sale.id))
    return [
        {
            "platform": row.platform,
            "order_id": row.order_id,
            "quantity": row.quantity,
            "took_stock": row.took_stock,
        }
        for row in rows
    ]


async def vinted_item_sale(session: AsyncSession, item_id: str) -> Sale | None:
    """The sale already recorded for this Vinted item, whoever saw it (a Vinted item sells once).

    The plugin keys its sale by the item id, the sale check by the transaction id: when the item's listing
    is already `sold`, the other source's sighting is the same sale, not a second one.
    """
    product_id = await session.scalar(
        select(PlatformListing.product_id).where(
            PlatformListing.platform == "vinted",
            PlatformListing.external_id == item_id,
            PlatformListing.status == "sold",
        )
    )
    if product_id is None:
        return None
    return await session.scalar(
        select(Sale)
        .where(Sale.product_id == product_id, Sale.platform == "vinted")
        .order_by(Sale.id.desc())
        .limit(1)
    )


async def record_order_line(
    session: AsyncSession, tenant_id: int, line: OrderLine, source: SaleSource
) -> RecordedSale | None:
    """Record one marketplace order line of this tenant; None when no product of ours has that listing."""
    product = await find_listing_product(session, line.platform, line.external_id)
    if product is None:
        return None
    if line.platform == "vinted":
        known = await vinted_item_sale(session, line.external_id)
        if known is not None and known.order_id != line.order_id:
            return RecordedSale(sale=known, created=False, jobs=[])
    return await record_sale(
        session,
        tenant_id,
        product,
        platform=line.platform,
        order_id=line.order_id,
        source=source,
        quantity=line.quantity,
        sold_at=line.sold_at,
    )
