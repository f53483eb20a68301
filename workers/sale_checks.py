"""The periodic sale check of every connected eBay and Etsy account: the safety net under the webhooks.

Each eBay/Etsy worker process runs a `SaleChecker` beside its jobs. Once a second it claims the accounts
whose check is due (public `sale_checks`, shared by every process), reads each account's orders modified
since its last check minus an overlap, and records every line through the one sale-recording function
(same order seen twice: one sale). Every marketplace call takes one unit of the application's daily budget
(a Redis counter shared by every tenant and process, refused past the limit); the next check of each
account is scheduled at the pace that makes what is left of the budget last the day
(`domain.sale_checks.paced_interval`), so the checks slow down before the budget is spent.

Vinted has no API the backend can call: each Vinted worker process runs `VintedSaleChecks`, which turns
every due Vinted account's check into a `check_sales` job (one unfinished per account). The job reads the
member's sold orders through the plugin (`workers/platforms/vinted.py`), spending at most
`VINTED_SALE_CHECK_SHARE` of the member's requests per window, and never a slot a waiting publication
needs; checks come due every max(SALE_CHECK_INTERVAL_SECONDS, window / share).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.jobs import UNFINISHED, JobAction
from domain.sale_checks import (
    budget_day,
    paced_interval,
    seconds_left_today,
    spendable_now,
    vinted_check_interval,
)
from domain.sales import SaleSource, announced_by
from ops.adapters.secrets_box import UnreadableSecret
from ops.config.settings import Settings
from persistence import credentials as credential_store
from persistence import queue, sale_checks, sales
from persistence.sale_checks import DueCheck
from persistence.tenancy import tenant_transaction
from workers.context import WorkerApp
from workers.credential_lock import locked_credentials
from workers.errors import PlatformError
from workers.platforms.base import AccountAccess, BudgetSpent, LockedCredentials, OrderReader

log = structlog.get_logger(__name__)

#: A first check of an account looks this far back (orders before it was connected are not ours to see).
FIRST_LOOK = timedelta(hours=1)
#: Marketplace calls one check usually makes (one page of orders): the pace is planned with it.
CALLS_PER_CHECK = 1.0
#: A stretched interval is shortened by this factor (see `SaleChecker.interval`).
SCHEDULE_SLACK = 0.8

_TAKE = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used + 1 > tonumber(ARGV[1]) then return -1 end
used = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return used
"""


class DailyBudget:
    """Calls per application per UTC day, counted in Redis for every tenant and worker process."""

    def __init__(self, redis: Redis, platform: str, limit: int) -> None:
        self._redis = redis
        self._platform = platform
        self.limit = limit
        self._take = redis.register_script(_TAKE)

    def key(self, now: datetime) -> str:
        return f"stoflow:sale-check-budget:{{{self._platform}}}:{budget_day(now)}"

    async def used(self, now: datetime) -> int:
        return int(await self._redis.get(self.key(now)) or 0)

    async def take(self, now: datetime) -> bool:
        """Spend one call; False when today's budget is spent (nothing is taken then)."""
        return int(await self._take(keys=[self.key(now)], args=[self.limit, 3 * 86400])) >= 0


def daily_limit(settings: Settings, platform: str) -> int:
    if platform == "ebay":
        return settings.ebay_sale_check_daily_budget
    return settings.etsy_sale_check_daily_budget


class SaleChecker:
    """Claims due sale checks of one platform and runs them (one per account at a time, any process)."""

    def __init__(
        self,
        app: WorkerApp,
        platform: str,
        reader: OrderReader,
        *,
        batch: int = 20,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._app = app
        self._settings = app.settings
        self._db = app.db
        self._platform = platform
        self._reader = reader
        self._batch = batch
        self._clock = clock
        self.budget = DailyBudget(app.redis, platform, daily_limit(app.settings, platform))

    async def interval(self, now: datetime) -> float:
        """Seconds until an account just checked is checked again, at today's pace."""
        async with self._db.session_factory() as session:
            accounts = await sale_checks.count_accounts(session, self._platform)
        base = self._settings.sale_check_interval_seconds
        paced = paced_interval(
            base_seconds=base,
            accounts=accounts,
            calls_per_check=CALLS_PER_CHECK,
            used=await self.budget.used(now),
            daily_budget=self.budget.limit,
            seconds_left=seconds_left_today(now),
        )
        # Stretched: come due a little before the fair turn, so the even ramp (not a gap in the schedule)
        # is what paces the calls.
        return paced if paced <= base else max(base, paced * SCHEDULE_SLACK)

    async def run_once(self) -> int:
        """Claim the checks due now and run them; return how many ran."""
        now = self._clock()
        room = spendable_now(daily_budget=self.budget.limit, used=await self.budget.used(now), now=now)
        if room <= 0:
            return 0  # ahead of today's even spread: the due checks wait for the ramp
        next_due = now + timedelta(seconds=await self.interval(now))
        async with self._db.session_factory() as session, session.begin():
            due = await sale_checks.claim_due(
                session, self._platform, now=now, next_due=next_due, limit=min(self._batch, room)
            )
        for check in due:
            await self._check(check, now)
        return len(due)

    async def run(self, stop: asyncio.Event, *, every_seconds: float = 1.0) -> None:
        """Check until `stop` is set."""
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception:  # a failed round (database down) must not end the loop
                log.exception("sale_check_round_failed", platform=self._platform)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=every_seconds)

    async def _access(self, check: DueCheck, now: datetime) -> AccountAccess | None:
        prefix = self._settings.tenant_schema_prefix
        async with tenant_transaction(self._db.session_factory, prefix, check.tenant_id) as session:
            credential = await credential_store.get_credential(session, self._platform)
        if credential is None:
            return None

        async def save(tokens: dict[str, Any]) -> None:
            async with tenant_transaction(self._db.session_factory, prefix, check.tenant_id) as session:
                await credential_store.replace_tokens(session, self._platform, self._app.box.seal(tokens))

        async def take_call() -> bool:
            return await self.budget.take(self._clock())

        def lock() -> AbstractAsyncContextManager[LockedCredentials]:
            return locked_credentials(self._app, check.tenant_id, self._platform)

        return AccountAccess(
            tenant_id=check.tenant_id,
            credentials=self._app.box.open(credential.encrypted_tokens),
            credential_settings=dict(credential.settings),
            save_credentials=save,
            take_call=take_call,
            credentials_lock=lock,
        )

    async def _check(self, check: DueCheck, now: datetime) -> None:
        bound = structlog.contextvars.bound_contextvars(tenant_id=check.tenant_id, platform=self._platform)
        with bound:
            try:
                access = await self._access(check, now)
            except UnreadableSecret as unreadable:
                # One account's tokens sealed under a key we no longer hold (a rotation not finished): that
                # account's check fails and says why; the other accounts of the round are still checked.
                log.warning("sale_check_unreadable_credentials", error=str(unreadable))
                await self._record_failure(check, str(unreadable))
                return
            if access is None:
                return
            since = sale_checks.since(
                check,
                now=now,
                overlap=timedelta(seconds=self._settings.sale_check_overlap_seconds),
                first_look=FIRST_LOOK,
            )
            error: str | None = None
            checked_until: datetime | None = None
            try:
                lines = await self._reader.read_orders(access, since, now)
                checked_until = now
            except BudgetSpent as spent:
                lines, error = [], str(spent)
                log.warning("sale_check_budget_spent")
            except PlatformError as failed:
                lines, error = [], str(failed)
                log.warning("sale_check_failed", error=error)
            new = 0
            prefix = self._settings.tenant_schema_prefix
            async with tenant_transaction(self._db.session_factory, prefix, check.tenant_id) as session:
                for line in lines:
                    source = SaleSource.WEBHOOK if announced_by(line, check.hints) else SaleSource.POLL
                    recorded = await sales.record_order_line(session, check.tenant_id, line, source)
                    new += bool(recorded and recorded.created)
                await sale_checks.record_checked(session, check, checked_until=checked_until, error=error)
            if new:
                log.info("sale_check_found_sales", sales=new, lines=len(lines))

    async def _record_failure(self, check: DueCheck, error: str) -> None:
        prefix = self._settings.tenant_schema_prefix
        async with tenant_transaction(self._db.session_factory, prefix, check.tenant_id) as session:
            await sale_checks.record_checked(session, check, checked_until=None, error=error)


#: Taken by the process that adopts unscheduled Vinted accounts (at most once an hour across the pool).
ADOPTION_KEY = "stoflow:vinted-sale-checks:adopted"


class VintedSaleChecks:
    """Turns due Vinted sale checks into `check_sales` jobs, paced by the checks' share of the budget."""

    def __init__(
        self,
        app: WorkerApp,
        *,
        batch: int = 50,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._app = app
        self._batch = batch
        self._clock = clock

    def interval(self) -> float:
        """Seconds between two checks of one member: max(SALE_CHECK_INTERVAL_SECONDS, window / share)."""
        settings = self._app.settings
        return vinted_check_interval(
            base_seconds=settings.sale_check_interval_seconds,
            window_seconds=settings.vinted_rate_window_seconds,
            share=settings.vinted_sale_check_share,
        )

    async def run_once(self) -> int:
        """Claim the Vinted checks due now and enqueue their jobs; return how many jobs were enqueued."""
        now = self._clock()
        next_due = now + timedelta(seconds=self.interval())
        async with self._app.db.session_factory() as session, session.begin():
            due = await sale_checks.claim_due(
                session, "vinted", now=now, next_due=next_due, limit=self._batch
            )
        enqueued = 0
        prefix = self._app.settings.tenant_schema_prefix
        for check in due:
            with structlog.contextvars.bound_contextvars(tenant_id=check.tenant_id, platform="vinted"):
                async with tenant_transaction(
                    self._app.db.session_factory, prefix, check.tenant_id
                ) as session:
                    enqueued += await queue_vinted_sale_checks(session, check.tenant_id, check.account)
        return enqueued

    async def adopt_accounts(self) -> int:
        """Schedule the checks of Vinted accounts linked before the Vinted check existed; return how many.

        Once per hour across the pool (a Redis key taken with SET NX): every tenant is visited, one short
        transaction each, and only accounts without a check get one.
        """
        if not await self._app.redis.set(ADOPTION_KEY, self._app.owner, nx=True, ex=3600):
            return 0
        async with self._app.db.session_factory() as session:
            tenants = [int(row[0]) for row in await session.execute(text("SELECT id FROM public.tenants"))]
        adopted = 0
        prefix = self._app.settings.tenant_schema_prefix
        for tenant_id in tenants:
            async with tenant_transaction(self._app.db.session_factory, prefix, tenant_id) as session:
                members = [
                    str(row[0])
                    for row in await session.execute(
                        text("SELECT DISTINCT vinted_user_id FROM vinted_accounts")
                    )
                ]
                adopted += await sale_checks.adopt(session, "vinted", tenant_id, members)
        if adopted:
            log.info("vinted_sale_checks_adopted", accounts=adopted)
        return adopted

    async def run(self, stop: asyncio.Event, *, every_seconds: float = 1.0) -> None:
        """Enqueue due checks until `stop` is set (after adopting accounts linked before the checks)."""
        try:
            await self.adopt_accounts()
        except Exception:  # the next start adopts them; the checks of scheduled accounts go on
            log.exception("vinted_sale_check_adoption_failed")
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception:  # a failed round (database down) must not end the loop
                log.exception("sale_check_round_failed", platform="vinted")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=every_seconds)


async def queue_vinted_sale_checks(session: AsyncSession, tenant_id: int, member: str) -> int:
    """A `check_sales` job for each of the tenant's accounts naming `member` that has none unfinished."""
    rows = await session.execute(
        text(
            "SELECT a.id FROM vinted_accounts AS a WHERE a.vinted_user_id = :member AND NOT EXISTS ("
            "  SELECT 1 FROM plugin_queue AS j WHERE j.platform = 'vinted' AND j.action = :action"
            "  AND j.status = ANY(:unfinished)"
            "  AND (j.payload ->> 'vinted_account_id')::bigint = a.id) ORDER BY a.id"
        ),
        {
            "member": member,
            "action": str(JobAction.CHECK_SALES),
            "unfinished": [str(status) for status in UNFINISHED],
        },
    )
    accounts = [int(row[0]) for row in rows]
    for account in accounts:
        job = await queue.enqueue_job(
            session,
            tenant_id=tenant_id,
            platform="vinted",
            action=JobAction.CHECK_SALES,
            product_id=None,
            payload={"vinted_account_id": account},
        )
        log.info("vinted_sale_check_enqueued", job_id=str(job.id), vinted_account_id=account)
    return len(accounts)
