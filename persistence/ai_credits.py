"""AI credits: the balance (`public.ai_credits`) and the charge each description job took (tenant schema).

Concurrency: a debit locks the tenant's balance row (`SELECT … FOR UPDATE`) until the request's
transaction commits, so concurrent requests take credits one after the other and can never spend more
than the allowance. Every function runs in a tenant transaction and only flushes; the caller commits.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.ai_credits import CREDITS_PER_DESCRIPTION, CreditBalance, credit_period, current_balance, debit
from persistence import queue

# An account row starts in a period long gone, so its first read grants the full allowance.
_NEVER = datetime(1970, 1, 1, tzinfo=UTC)

_OPEN_ACCOUNT = text(
    "INSERT INTO public.ai_credits (tenant_id, remaining, period_start) VALUES (:tenant, 0, :never) "
    "ON CONFLICT (tenant_id) DO NOTHING"
)
_ACCOUNT = """
    SELECT tenant.created_at AS anchor, quota.ai_credits_monthly AS monthly, now() AS now,
           credits.remaining AS remaining, credits.period_start AS period_start
    FROM public.tenants AS tenant
    JOIN public.subscription_quotas AS quota ON quota.tier = tenant.tier
    {join} public.ai_credits AS credits ON credits.tenant_id = tenant.id
    WHERE tenant.id = :tenant
"""
_LOCKED_ACCOUNT = text(_ACCOUNT.format(join="JOIN") + " FOR UPDATE OF credits")
_READ_ACCOUNT = text(_ACCOUNT.format(join="LEFT JOIN"))
_STORE_BALANCE = text(
    "UPDATE public.ai_credits SET remaining = :remaining, period_start = :period_start, updated_at = now() "
    "WHERE tenant_id = :tenant"
)


async def read_balance(session: AsyncSession, tenant_id: int) -> CreditBalance:
    """The tenant's balance now (a new period shows the full allowance, without writing anything)."""
    row = (await session.execute(_READ_ACCOUNT, {"tenant": tenant_id})).mappings().one()
    return current_balance(
        monthly=row["monthly"],
        remaining=row["remaining"],
        period_start=row["period_start"],
        period=credit_period(row["anchor"], row["now"]),
    )


async def _locked_balance(session: AsyncSession, tenant_id: int) -> CreditBalance:
    await session.execute(_OPEN_ACCOUNT, {"tenant": tenant_id, "never": _NEVER})
    row = (await session.execute(_LOCKED_ACCOUNT, {"tenant": tenant_id})).mappings().one()
    return current_balance(
        monthly=row["monthly"],
        remaining=row["remaining"],
        period_start=row["period_start"],
        period=credit_period(row["anchor"], row["now"]),
    )


async def _store(session: AsyncSession, tenant_id: int, balance: CreditBalance) -> None:
    await session.execute(
        _STORE_BALANCE,
        {"tenant": tenant_id, "remaining": balance.remaining, "period_start": balance.period.start},
    )


async def charge_for_job(session: AsyncSession, tenant_id: int, job_id: uuid.UUID) -> CreditBalance:
    """Take one description's credits for this job, or raise NoAiCredits.

    Idempotent per job: a job already charged is not charged twice; a job whose charge was refunded
    (it failed, and the user retries it) is charged again.
    """
    balance = await _locked_balance(session, tenant_id)
    charge = (
        await session.execute(
            text("SELECT refunded_at FROM ai_credit_charges WHERE job_id = :job FOR UPDATE"), {"job": job_id}
        )
    ).first()
    if charge is not None and charge.refunded_at is None:
        return balance
    balance = debit(balance)
    await _store(session, tenant_id, balance)
    await session.execute(
        text(
            "INSERT INTO ai_credit_charges (job_id, credits, period_start) VALUES (:job, :credits, :period) "
            "ON CONFLICT (job_id) DO UPDATE SET credits = excluded.credits, "
            "period_start = excluded.period_start, charged_at = now(), refunded_at = NULL"
        ),
        {"job": job_id, "credits": CREDITS_PER_DESCRIPTION, "period": balance.period.start},
    )
    return balance


async def refund_for_job(session: AsyncSession, tenant_id: int, job_id: uuid.UUID) -> bool:
    """Give back the credits a failed or cancelled job took; True when this call refunded them.

    Idempotent: a job is refunded at most once, and a job that took no credit refunds nothing. A credit
    taken in a period that has ended is not carried over: the new period already has its full allowance.
    """
    balance = await _locked_balance(session, tenant_id)
    refunded = (
        await session.execute(
            text(
                "UPDATE ai_credit_charges SET refunded_at = now() "
                "WHERE job_id = :job AND refunded_at IS NULL RETURNING credits, period_start"
            ),
            {"job": job_id},
        )
    ).first()
    if refunded is None:
        return False
    if refunded.period_start >= balance.period.start:
        restored = min(balance.monthly, balance.remaining + int(refunded.credits))
        await _store(session, tenant_id, CreditBalance(balance.monthly, restored, balance.period))
    return True


async def _refund_on_job_end(session: AsyncSession, tenant_id: int, job_id: uuid.UUID) -> None:
    await refund_for_job(session, tenant_id, job_id)


# The queue gives a credit back whenever a generate_description job fails or is cancelled.
queue.on_credit_refund(_refund_on_job_end)
