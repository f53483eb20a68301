"""A change to a product's fields, and what it sets off: an `update` job for each live listing.

One place for every writer of product fields (PATCH, an applied AI description), so that a listing
never keeps showing what the product no longer says.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from domain.jobs import JobAction
from persistence import listings, queue
from persistence.products import update_product
from persistence.tenant_models import Product, QueueJob


async def edit_product(
    session: AsyncSession,
    tenant_id: int,
    product: Product,
    changes: Mapping[str, Any],
    *,
    coalesce: timedelta = timedelta(0),
) -> list[QueueJob]:
    """Apply the changed fields (a new version) and enqueue the live listings' updates; [] if nothing changed.

    The product row must be locked by the caller. Edits within `coalesce` of each other give one update
    per platform: a listing whose update has not started yet gets no second one (that job reads the
    product when it runs, and waits `coalesce` more for the next edit). Returns the jobs written now.
    """
    if not await update_product(session, product, changes):
        return []
    return await follow_edit(session, tenant_id, product.id, coalesce=coalesce)


async def follow_edit(
    session: AsyncSession,
    tenant_id: int,
    product_id: int,
    *,
    coalesce: timedelta = timedelta(0),
    except_platform: str | None = None,
    with_coalesced: bool = False,
) -> list[QueueJob]:
    """Give every live listing of a changed product its (coalesced) `update`; return the jobs written now
    (`with_coalesced`: also the not-yet-started ones that carry this change).

    For any writer of a product's fields or stock (an edit, a sale that leaves stock): the update reads
    the product as it stands when it runs.
    """
    jobs: list[QueueJob] = []
    for listing in await listings.listings_of(session, product_id):
        if listing.status != "live" or listing.platform == except_platform:
            continue
        payload = {"vinted_account_id": listing.vinted_account_id} if listing.vinted_account_id else {}
        job, written = await queue.enqueue_coalesced(
            session,
            tenant_id=tenant_id,
            platform=listing.platform,
            action=JobAction.UPDATE,
            product_id=product_id,
            payload=payload,
            window=coalesce,
        )
        if written or with_coalesced:
            jobs.append(job)
    return jobs
