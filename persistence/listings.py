"""platform_listings and publications_history (tenant schema)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from persistence.tenant_models import PlatformListing, PublicationHistory

#: A listing in one of these states blocks a new publish on its platform.
ACTIVE_LISTING_STATES = ("pending", "live")

_LISTINGS = cast(Table, PlatformListing.__table__)
_HISTORY = cast(Table, PublicationHistory.__table__)


async def listings_of(session: AsyncSession, product_id: int) -> list[PlatformListing]:
    """Every listing row of a product, by platform."""
    rows = await session.scalars(
        select(PlatformListing)
        .where(PlatformListing.product_id == product_id)
        .order_by(PlatformListing.platform)
    )
    return list(rows)


async def get_listing(session: AsyncSession, product_id: int, platform: str) -> PlatformListing | None:
    return await session.scalar(
        select(PlatformListing).where(
            PlatformListing.product_id == product_id, PlatformListing.platform == platform
        )
    )


async def mark_listing_pending(
    session: AsyncSession, product_id: int, platform: str, vinted_account_id: int | None = None
) -> None:
    """A publish was accepted: the listing exists as `pending` until the job finishes."""
    statement = insert(PlatformListing).values(
        product_id=product_id, platform=platform, status="pending", vinted_account_id=vinted_account_id
    )
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["product_id", "platform"],
            set_={
                "status": "pending",
                "vinted_account_id": vinted_account_id,
                "updated_at": datetime.now(UTC),
            },
        )
    )


async def set_listing_state(
    session: AsyncSession,
    product_id: int,
    platform: str,
    status: str,
    *,
    external_id: str | None = None,
    url: str | None = None,
    data: dict[str, Any] | None = None,
    published: bool = False,
) -> None:
    """Record the listing's state after a job step (keeps ids it already had when none are given)."""
    now = datetime.now(UTC)
    values: dict[str, Any] = {"status": status, "last_synced_at": now, "updated_at": now}
    if external_id is not None:
        values["external_id"] = external_id
    if url is not None:
        values["url"] = url
    if data:
        values["data"] = _LISTINGS.c.data.op("||")(data)
    if published:
        values["published_at"] = now
    # A Core UPDATE: the ORM's bulk-update path would compile and evaluate it against the session for
    # nothing (no listing object is loaded where this runs).
    await session.execute(
        update(_LISTINGS)
        .where(_LISTINGS.c.product_id == product_id, _LISTINGS.c.platform == platform)
        .values(**values)
    )


_START_HISTORY = text(
    """
    WITH open_row AS (
        SELECT id FROM publications_history WHERE job_id = :job_id AND status = 'started' LIMIT 1
    ), opened AS (
        INSERT INTO publications_history (job_id, product_id, platform, action, attempt, status, started_at)
        SELECT :job_id, :product_id, :platform, :action, :attempt, 'started', :started_at
        WHERE NOT EXISTS (SELECT 1 FROM open_row)
        RETURNING id
    )
    SELECT id FROM open_row UNION ALL SELECT id FROM opened
    """
)


async def start_history(
    session: AsyncSession,
    *,
    job_id: uuid.UUID,
    product_id: int | None,
    platform: str,
    action: str,
    attempt: int,
) -> int:
    """Open the history row of one attempt, or return the one still open for this job (one statement).

    A Vinted attempt spans two runs (release the task, then finish from the plugin's result): the
    second run carries on the row the first one opened.
    """
    history_id = await session.scalar(
        _START_HISTORY,
        {
            "job_id": job_id,
            "product_id": product_id,
            "platform": platform,
            "action": action,
            "attempt": attempt,
            "started_at": datetime.now(UTC),
        },
    )
    assert history_id is not None  # one of the two branches always yields the row
    return int(history_id)


async def close_history(
    session: AsyncSession, history_id: int, status: str, error_message: str | None = None
) -> None:
    """Close an attempt's history row: succeeded, failed or retrying."""
    await session.execute(
        update(_HISTORY)
        .where(_HISTORY.c.id == history_id)
        .values(status=status, error_message=error_message, completed_at=datetime.now(UTC))
    )


async def history_of(session: AsyncSession, product_id: int) -> list[PublicationHistory]:
    """The product's publication attempts, newest first."""
    rows = await session.scalars(
        select(PublicationHistory)
        .where(PublicationHistory.product_id == product_id)
        .order_by(PublicationHistory.created_at.desc(), PublicationHistory.id.desc())
    )
    return list(rows)


async def link_listing(
    session: AsyncSession,
    product_id: int,
    platform: str,
    *,
    external_id: str,
    url: str | None,
    data: dict[str, Any],
    vinted_account_id: int | None = None,
) -> None:
    """Make a listing found on the marketplace (an import) this product's live listing on that platform."""
    now = datetime.now(UTC)
    values = {
        "status": "live",
        "external_id": external_id,
        "url": url,
        "data": data,
        "vinted_account_id": vinted_account_id,
        "published_at": now,
        "last_synced_at": now,
        "updated_at": now,
    }
    statement = insert(PlatformListing).values(product_id=product_id, platform=platform, **values)
    await session.execute(
        statement.on_conflict_do_update(index_elements=["product_id", "platform"], set_=values)
    )


async def record_outside_event(
    session: AsyncSession,
    *,
    job_id: uuid.UUID,
    product_id: int,
    platform: str,
    action: str,
    message: str | None,
) -> None:
    """A finished history row for something that happened without a job of its own (import, sync)."""
    now = datetime.now(UTC)
    await session.execute(
        insert(PublicationHistory).values(
            job_id=job_id,
            product_id=product_id,
            platform=platform,
            action=action,
            attempt=1,
            status="succeeded",
            error_message=message,
            started_at=now,
            completed_at=now,
        )
    )


async def products_by_external_id(
    session: AsyncSession, platform: str, external_ids: list[str]
) -> dict[str, int]:
    """external id -> product id of this platform's listing rows naming them (whatever their state)."""
    rows = await session.execute(
        select(PlatformListing.external_id, PlatformListing.product_id).where(
            PlatformListing.platform == platform, PlatformListing.external_id.in_(external_ids)
        )
    )
    return {str(external_id): int(product_id) for external_id, product_id in rows}


async def live_listings_to_check(session: AsyncSession, platform: str, limit: int) -> list[PlatformListing]:
    """This platform's live listings, the longest unchecked first (for the sync)."""
    rows = await session.scalars(
        select(PlatformListing)
        .where(PlatformListing.platform == platform, PlatformListing.status == "live")
        .order_by(PlatformListing.last_synced_at.asc().nulls_first(), PlatformListing.id)
        .limit(limit)
    )
    return list(rows)


async def mark_checked(session: AsyncSession, listing_ids: list[int]) -> None:
    """The sync found these listings still live."""
    if listing_ids:
        await session.execute(
            update(_LISTINGS).where(_LISTINGS.c.id.in_(listing_ids)).values(last_synced_at=datetime.now(UTC))
        )


async def end_outside(
    session: AsyncSession, product_id: int, platform: str, external_id: str | None, message: str
) -> bool:
    """A live listing was ended on the marketplace, not by Stoflow: `delisted`, with a history row.

    Only while it is still the same live listing (a job may have changed it since it was read).
    """
    now = datetime.now(UTC)
    ended = await session.scalar(
        update(_LISTINGS)
        .where(
            _LISTINGS.c.product_id == product_id,
            _LISTINGS.c.platform == platform,
            _LISTINGS.c.status == "live",
            _LISTINGS.c.external_id.is_not_distinct_from(external_id),
        )
        .values(status="delisted", last_synced_at=now, updated_at=now)
        .returning(_LISTINGS.c.id)
    )
    if ended is None:
        return False
    await record_outside_event(
        session, job_id=uuid.uuid4(), product_id=product_id, platform=platform, action="sync", message=message
    )
    return True
