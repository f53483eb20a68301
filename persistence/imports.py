"""Write what an import found: each foreign listing becomes a product linked to its listing, once.

Runs in the transaction that finishes the import job (fenced on its lease), so the products and the job's
result commit together: a run that crashed before committing wrote nothing, and the next run counts afresh.
Matching is by platform + external id: a listing some product already names is skipped, so importing again
creates no duplicate. A listing whose SKU (eBay) is a product of ours without a live listing there is linked
to that product instead of making a new one.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.catalogue import PlatformMappings
from domain.errors import QuotaExceeded
from domain.lifecycle import ProductStatus
from domain.mapping.reverse import ForeignListing, map_back
from persistence import listings
from persistence.products import create_product, sku_in_use
from persistence.tenant_models import PlatformListing, Product, QueueJob


@dataclass
class ImportCounts:
    """`job.result` of an import."""

    created: int = 0
    linked: int = 0
    skipped: int = 0
    needs_review: int = 0
    #: our live listings the read showed ended outside Stoflow (a whole wardrobe read)
    ended: int = 0
    #: why listings were skipped beyond "already imported" (quota, no price), for the job's result
    notes: list[str] = field(default_factory=list)

    def as_result(self) -> dict[str, object]:
        result: dict[str, object] = {
            "created": self.created,
            "linked": self.linked,
            "skipped": self.skipped,
            "needs_review": self.needs_review,
        }
        if self.ended:
            result["ended_outside"] = self.ended
        if self.notes:
            result["notes"] = sorted(set(self.notes))
        return result


async def record_import(
    session: AsyncSession,
    *,
    tenant_id: int,
    job_id: uuid.UUID,
    found: Sequence[ForeignListing],
    mappings: PlatformMappings,
    platform: str,
    vinted_account_id: int | None = None,
    whole: bool = False,
    sync_only: bool = False,
) -> ImportCounts:
    """Create or link a product for each listing not yet known; return the counts.

    `whole`: `found` is every live listing of the account, read in one consistent pass (a Vinted wardrobe):
    our live listings of that account published before this import started and absent from it were ended
    outside Stoflow (deleted on Vinted) and become `delisted` with a history row (the Vinted sync).
    `sync_only`: only that; no product is created or linked (the periodic wardrobe check).
    """
    counts = ImportCounts()
    if whole:
        counts.ended = await _end_missing(session, job_id, platform, found, vinted_account_id)
    if not found or sync_only:
        counts.skipped = len(found)
        return counts
    # Two imports of one platform at once (a retried run and a new command) take turns.
    await session.execute(
        text("SELECT pg_advisory_xact_lock(:tenant, hashtext(:key))"),
        {"tenant": tenant_id, "key": f"import:{platform}"},
    )
    known = await listings.products_by_external_id(session, platform, [item.external_id for item in found])
    now = datetime.now(UTC)
    for item in found:
        if item.external_id in known or item.price <= 0:
            counts.skipped += 1
            if item.price <= 0:
                counts.notes.append("a listing without a price was skipped")
            continue
        known[item.external_id] = 0  # the same listing twice in one read (a page boundary moved)
        imported = map_back(item, mappings)
        product = await _product_of_sku(session, platform, item.sku)
        linked = product is not None
        if product is None:
            values = dict(imported.fields)
            if item.sku and not await sku_in_use(session, item.sku):
                values["sku"] = item.sku
            try:
                product = await create_product(session, tenant_id, values)
            except QuotaExceeded:
                counts.skipped += 1
                counts.notes.append("the plan's product limit was reached")
                continue
            product.status = ProductStatus.PUBLISHED.value
            product.published_at = now
            product.needs_review = imported.needs_review
            await session.flush()
            counts.created += 1
            if imported.needs_review:
                counts.needs_review += 1
        else:
            if product.status == ProductStatus.DRAFT.value:
                product.status = ProductStatus.PUBLISHED.value
                product.published_at = now
            counts.linked += 1
        assert product is not None
        await listings.link_listing(
            session,
            product.id,
            platform,
            external_id=item.external_id,
            url=item.url,
            data=dict(item.data),
            vinted_account_id=vinted_account_id if platform == "vinted" else None,
        )
        await listings.record_outside_event(
            session,
            job_id=job_id,
            product_id=product.id,
            platform=platform,
            action="import",
            message="Linked to an existing listing." if linked else "Imported from an existing listing.",
        )
    return counts


async def _product_of_sku(session: AsyncSession, platform: str, sku: str | None) -> Product | None:
    """The draft or published product with this SKU when it has no live or pending listing on the platform."""
    if not sku:
        return None
    listed = (
        select(PlatformListing.id)
        .where(
            PlatformListing.product_id == Product.id,
            PlatformListing.platform == platform,
            PlatformListing.status.in_(listings.ACTIVE_LISTING_STATES),
        )
        .exists()
    )
    return await session.scalar(
        select(Product)
        .where(
            Product.sku == sku,
            Product.deleted_at.is_(None),
            Product.status.in_((ProductStatus.DRAFT.value, ProductStatus.PUBLISHED.value)),
            ~listed,
        )
        .with_for_update()
    )


async def _end_missing(
    session: AsyncSession,
    job_id: uuid.UUID,
    platform: str,
    found: Sequence[ForeignListing],
    vinted_account_id: int | None,
) -> int:
    """End our live listings of the account that a whole read of it no longer shows."""
    present = {item.external_id for item in found}
    rows = await session.execute(
        select(PlatformListing.product_id, PlatformListing.external_id).where(
            PlatformListing.platform == platform,
            PlatformListing.status == "live",
            PlatformListing.vinted_account_id.is_not_distinct_from(vinted_account_id),
            # listed before this import's job was accepted: the read may not show what came later
            PlatformListing.published_at
            < select(QueueJob.created_at).where(QueueJob.id == job_id).scalar_subquery(),
        )
    )
    ended = 0
    for product_id, external_id in rows:
        if external_id is None or external_id in present:
            continue
        message = (
            "The item was deleted on Vinted outside Stoflow."
            if platform == "vinted"
            else (f"The listing is no longer on {platform}.")
        )
        if await listings.end_outside(session, product_id, platform, external_id, message):
            ended += 1
    return ended
