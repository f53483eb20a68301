"""The sale-check schedule (public `sale_checks`): one row per connected account, claimed when due.

A claim moves `due_at` forward in the same statement (`FOR UPDATE SKIP LOCKED`), so any number of worker
processes share the schedule and each due account is checked by one of them. A webhook that only names the
account (Etsy's `order.paid`) makes its check due at once, with the order ids it announced as hints.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from persistence.core_models import SaleCheck


@dataclass(frozen=True)
class DueCheck:
    """One account whose sale check a worker has claimed."""

    platform: str
    tenant_id: int
    account: str
    checked_until: datetime | None
    hints: list[str]


async def schedule(session: AsyncSession, platform: str, tenant_id: int, account: str = "") -> None:
    """A connected account gets a sale check, due now (reconnecting keeps how far the last one read)."""
    await session.execute(
        insert(SaleCheck)
        .values(platform=platform, tenant_id=tenant_id, account=account)
        .on_conflict_do_update(
            index_elements=["platform", "tenant_id", "account"], set_={"due_at": func.now()}
        )
    )


async def adopt(session: AsyncSession, platform: str, tenant_id: int, accounts: list[str]) -> int:
    """Give accounts linked before their checks existed a check, due now; leave scheduled ones alone."""
    if not accounts:
        return 0
    result = await session.execute(
        insert(SaleCheck)
        .values([{"platform": platform, "tenant_id": tenant_id, "account": account} for account in accounts])
        .on_conflict_do_nothing(index_elements=["platform", "tenant_id", "account"])
        .returning(SaleCheck.account)
    )
    return len(result.all())


async def unschedule(
    session: AsyncSession, platform: str, tenant_id: int, account: str | None = None
) -> None:
    """A disconnected account is checked no more (every account of the platform when `account` is None)."""
    statement = delete(SaleCheck).where(SaleCheck.platform == platform, SaleCheck.tenant_id == tenant_id)
    if account is not None:
        statement = statement.where(SaleCheck.account == account)
    await session.execute(statement)


async def check_now(session: AsyncSession, platform: str, tenant_id: int, hints: list[str]) -> bool:
    """A webhook announced orders of this account: its check is due now, with the hints. False if unknown."""
    result = await session.execute(
        text(
            "UPDATE public.sale_checks SET due_at = now(), hints = "
            "(SELECT coalesce(jsonb_agg(DISTINCT value), '[]'::jsonb) FROM jsonb_array_elements_text("
            "hints || CAST(:hints AS jsonb)) AS value) "
            "WHERE platform = :platform AND tenant_id = :tenant RETURNING 1"
        ),
        {"platform": platform, "tenant": tenant_id, "hints": _json(hints)},
    )
    return result.first() is not None


def _json(values: list[str]) -> str:
    return json.dumps(values)


_CLAIM = text(
    """
    WITH due AS (
        SELECT platform, tenant_id, account FROM public.sale_checks
        WHERE platform = :platform AND due_at <= :now
        ORDER BY due_at
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    )
    UPDATE public.sale_checks AS c
    SET due_at = :next_due, checks = c.checks + 1, hints = '[]'::jsonb
    FROM due
    WHERE c.platform = due.platform AND c.tenant_id = due.tenant_id AND c.account = due.account
    RETURNING c.platform, c.tenant_id, c.account, c.checked_until, c.hints
    """
)


async def claim_due(
    session: AsyncSession, platform: str, *, now: datetime, next_due: datetime, limit: int
) -> list[DueCheck]:
    """Claim up to `limit` due checks of a platform and push each one's next turn to `next_due`."""
    rows = await session.execute(
        _CLAIM, {"platform": platform, "now": now, "next_due": next_due, "limit": limit}
    )
    return [
        DueCheck(
            platform=row.platform,
            tenant_id=int(row.tenant_id),
            account=row.account,
            checked_until=row.checked_until,
            hints=[str(hint) for hint in row.hints],
        )
        for row in rows
    ]


async def record_checked(
    session: AsyncSession, check: DueCheck, *, checked_until: datetime | None, error: str | None
) -> None:
    """Remember how far this check read (kept when it failed) and its error, if any."""
    values: dict[str, Any] = {"last_error": error}
    if checked_until is not None:
        values["checked_until"] = checked_until
    await session.execute(
        SaleCheck.__table__.update()  # type: ignore[attr-defined]
        .where(
            SaleCheck.platform == check.platform,
            SaleCheck.tenant_id == check.tenant_id,
            SaleCheck.account == check.account,
        )
        .values(**values)
    )


async def count_accounts(session: AsyncSession, platform: str) -> int:
    """How many accounts of this platform share the application's budget."""
    return int(
        await session.scalar(
            select(func.count()).select_from(SaleCheck).where(SaleCheck.platform == platform)
        )
        or 0
    )


def since(check: DueCheck, *, now: datetime, overlap: timedelta, first_look: timedelta) -> datetime:
    """Where a check starts reading: the last one's end minus the overlap (a first check looks back)."""
    start = check.checked_until or now - first_look
    return start - overlap
