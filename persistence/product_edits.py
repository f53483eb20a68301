"""A change to a product's fields, and what it sets off: an `update` job for each live listing.

One place for every writer of product fields (PATCH, an applied AI description), so that a listing
never keeps showing what the product no longer says.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.jobs import JobAction, JobStatus
from persistence import listings, queue
from persistence.products import update_product
from persistence.tenant_models import Product, QueueJob

#: An update job in one of these states has not read the product yet: it will push the latest state.
_NOT_STARTED = (JobStatus.PENDING, JobStatus.QUEUED, JobStatus.RATE_LIMITED)


async def edit_product(
    session: AsyncSession, tenant_id: int, product: Product, changes: Mapping[str, Any]
) -> list[QueueJob]:
    """Apply the changed fields (a new version) and enqueue the live listings' updates; [] if nothing changed.

    The product row must be locked by the caller. A listing whose update has not started yet gets no
    second one: that job reads the product when it runs and carries this change too.
    """
    if not await update_product(session, product, changes):
        return []
    jobs: list[QueueJob] = []
    for listing in await listings.listings_of(session, product.id):
        if listing.status != "live":
            continue
        waiting = await session.scalar(
            select(QueueJob.id)
            .where(
                QueueJob.product_id == product.id,
                QueueJob.platform == listing.platform,
                QueueJob.action == JobAction.UPDATE,
                QueueJob.status.in_([str(status) for status in _NOT_STARTED]),
            )
            .limit(1)
        )
        if waiting is not None:
            continue
        payload = {"vinted_account_id": listing.vinted_account_id} if listing.vinted_account_id else {}
        jobs.append(
            await queue.enqueue_job(
                session,
                tenant_id=tenant_id,
                platform=listing.platform,
                action=JobAction.UPDATE,
                product_id=product.id,
                payload=payload,
            )
        )
    return jobs
