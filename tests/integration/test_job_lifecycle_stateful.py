"""Random interleavings of everything that can happen to jobs, against the real queue (Hypothesis).

A rule-based state machine drives, in any order: the user's commands over HTTP (publish, update,
delist, sell, archive, delete, cancel, retry), the dispatcher's hand-off, worker runs with the real job
runner (eBay through a fake marketplace that can fail before or after creating the listing, Vinted
through the real adapter and plugin queue), worker crashes, lease expiry, a plugin that claims, reports
success or refusal, or goes silent, and a day passing (plugin waits expire). After every step it checks:

- at most one listing per (product, platform) on each fake marketplace, and at most one unfinished
  publish per (product, platform);
- every unfinished job can move on: a running job has a lease, a queued one its hand-off, a waiting one
  an unfinished plugin task, and only a gone product's delist waits on past the plugin's max age (with its
  task and the next look at its wait: the one wait never given up, docs/http-contract.md), and the tenant
  stays in the sweep's index while any job is unfinished;
- one history row per attempt (never two open at once, none open once the job is finished);
- once the system is quiet (leases waited out, the sync's safety net run, the plugin answering), no
  marketplace listing of a sold, archived or deleted product.

CI runs the same 10 examples of up to 30 steps every time (derandomized); STOFLOW_TEST_SCALE=full runs 20
new ones each time (tests/scale.py); set STOFLOW_STATEFUL_EXAMPLES to run another number by hand.

Full-scale runs recorded (2026-12-03, 2-core machine shared with other runs, 30 steps an example):
- seed 4266027824539258969497656330114020522, 20 examples, after tests/integration/test_job_lifecycle.py:
  on main before the gone-product fix, 2 distinct failures ("gone product 1 still on eBay" / "... on
  Vinted": the user cancelled the deleted product's delist, nothing took the listing down); with the fix
  (gone product's delist never given up + the sync's safety net in `the_system_goes_quiet`) it passes,
  the two failing examples replayed from Hypothesis's database first (the pair of files in 62 s);
- seeds 13476936424141864953, 4003505185719956083, 15094940345722204020: 20 examples each, pass (16 s,
  23 s, 20 s); earlier seeds 12806554460989905338, 1243196742124716876, 11975845441024300090 passed too,
  before the invariant's "only a gone product's delist waits on" clause was added;
- seed 15125450751902447050 with STOFLOW_STATEFUL_EXAMPLES=100 (before that clause): pass, 270 s;
- on the final tree, 60 random examples found "gone product still on eBay": a publish whose create landed at
  the fake but whose answer was lost, then a sale cancelled it as never having reached eBay. The fake created
  the listing in one call with no step saved before it, which none of our adapters does (eBay saves the offer
  before publishOffer, Etsy the draft before activating it: `JobInput`'s contract); the fake now saves its
  step first, as they do, and the example passes, as do two more runs of 60 and 20 examples.
"""

from __future__ import annotations

import asyncio
import io
import secrets
import uuid
from collections.abc import Awaitable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

import httpx
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from PIL import Image
from sqlalchemy import text

from ops.adapters.rate_limit import SlidingWindowLimiter
from ops.config.settings import Settings
from persistence import plugin_tasks, queue, sales
from persistence.tenancy import tenant_transaction
from tests.pipeline_support import new_sku
from tests.scale import FULL, STATEFUL_EXAMPLES
from tests.support import bearer, register
from workers.context import WorkerApp, build_worker_app
from workers.errors import PermanentPlatformError, TransientPlatformError
from workers.jobs import run_job
from workers.platforms.base import JobInput, ListingOutcome
from workers.platforms.vinted import VintedAdapter

T = TypeVar("T")
EXAMPLES = STATEFUL_EXAMPLES
PRODUCTS = 2
UNFINISHED = ("pending", "queued", "running", "rate_limited", "waiting_plugin")


@dataclass
class FakeEbay:
    """eBay as far as the lifecycle cares: listings keyed by the product, outcomes chosen by the test."""

    listings: dict[int, str] = field(default_factory=dict)
    #: what the next runs do: ok, fail_before (nothing created), fail_after (created, answer lost), refuse
    script: list[str] = field(default_factory=list)

    def _next(self) -> str:
        return self.script.pop(0) if self.script else "ok"

    async def publish(self, job: JobInput) -> ListingOutcome:
        assert job.product is not None
        mode = self._next()
        if mode == "fail_before":
            raise TransientPlatformError("eBay timed out")
        if mode == "refuse":
            raise PermanentPlatformError("platform_rejected", "eBay refused the listing")
        # The adapters' contract (workers/platforms/base.py): a step is saved before the call that can put
        # the listing live (eBay's offer before publishOffer, Etsy's draft before it is activated), so a run
        # whose answer is lost counts as having reached the marketplace and a sale takes it down on landing.
        await job.save_progress({"offer_id": f"offer-{job.product.id}"})
        # Found by the product's identity before creating: a retry never creates a second listing.
        listing = self.listings.setdefault(job.product.id, f"eb-{uuid.uuid4().hex[:8]}")
        if mode == "fail_after":
            raise TransientPlatformError("the answer was lost")
        return ListingOutcome(external_id=listing, url=None)

    async def update(self, job: JobInput) -> ListingOutcome:
        if self._next() == "fail_before":
            raise TransientPlatformError("eBay timed out")
        return ListingOutcome(external_id=None, url=None)

    async def delist(self, job: JobInput) -> ListingOutcome:
        assert job.product is not None
        if self._next() == "fail_before":
            raise TransientPlatformError("eBay timed out")
        self.listings.pop(job.product.id, None)
        return ListingOutcome(external_id=None, url=None)


@dataclass
class Environment:
    """What every example shares: an event loop, the gateway, a worker app, the fake marketplaces."""

    loop: asyncio.AbstractEventLoop
    settings: Settings
    client: httpx.AsyncClient
    worker: WorkerApp
    ebay: FakeEbay
    #: Vinted items created by the plugin, by product
    vinted: dict[int, set[str]]

    def run(self, awaitable: Awaitable[T]) -> T:
        return self.loop.run_until_complete(awaitable)


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 40), (10, 120, 30)).save(buffer, "JPEG")
    return buffer.getvalue()


# No coverage tracer: random interleavings of steps tests/integration/test_job_lifecycle.py covers one by one,
# half again as slow under it (53 s against 34 s for 10 examples on the loaded 2-core CI machine).
@pytest.mark.no_cover
def test_random_interleavings_keep_the_lifecycle_guarantees(migrated: Settings) -> None:
    base = migrated.model_copy(update={"vinted_rate_limit": 10_000})
    loop = asyncio.new_event_loop()
    stack = AsyncExitStack()

    async def start() -> Environment:
        from gateway.app import create_app
        from migrations.runner import upgrade_tenant_schema

        application = create_app(base, tenant_migrator=upgrade_tenant_schema)
        await stack.enter_async_context(application.router.lifespan_context(application))
        transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
        client = await stack.enter_async_context(httpx.AsyncClient(transport=transport, base_url="http://t"))
        worker = await build_worker_app(base, "ebay", 2)
        stack.push_async_callback(worker.close)
        ebay = FakeEbay()
        worker.adapters = {
            "ebay": ebay,  # type: ignore[dict-item]
            "vinted": VintedAdapter(worker, SlidingWindowLimiter(worker.redis, 10_000, 7200)),
        }
        worker.lease_seconds = 30
        worker.heartbeat_seconds = 10
        return Environment(loop, base, client, worker, ebay, {})

    env = loop.run_until_complete(start())
    try:
        machine = _machine(env)
        run_state_machine_as_test(
            machine,
            settings=settings(
                max_examples=EXAMPLES,
                stateful_step_count=30,
                deadline=None,
                # CI replays the same examples every run (a red CI always means a change broke them); the
                # full scale explores new interleavings each time and is where new failures are found.
                derandomize=not FULL,
                suppress_health_check=list(HealthCheck),
            ),
        )
    finally:
        loop.run_until_complete(stack.aclose())
        loop.close()


def _machine(env: Environment) -> type[RuleBasedStateMachine]:
    class Lifecycle(RuleBasedStateMachine):
        headers: dict[str, str]
        tenant_id: int
        products: list[int]

        @initialize()
        def a_new_reseller(self) -> None:
            env.ebay.listings.clear()
            env.ebay.script.clear()
            env.vinted.clear()
            env.run(self._setup())

        async def _setup(self) -> None:
            client = env.client
            body = await register(client)
            self.headers = bearer(body)
            self.tenant_id = int(body["user"]["tenant_id"])
            await client.put(
                "/api/integrations/ebay",
                json={
                    "access_token": "a",
                    "refresh_token": "r",
                    "marketplace_id": "EBAY_FR",
                    "fulfillment_policy_id": "f",
                    "payment_policy_id": "p",
                    "return_policy_id": "r",
                    "merchant_location_key": "m",
                },
                headers=self.headers,
            )
            member = str(secrets.randbelow(10**9) + 10**9)
            await client.post(
                "/api/integrations/vinted/accounts",
                json={"vinted_user_id": int(member), "username": "m"},
                headers=self.headers,
            )
            self.products = []
            for _ in range(PRODUCTS):
                created = await client.post(
                    "/api/products",
                    json={
                        "title": "Robe Zara fleurie",
                        "price": "15.00",
                        "sku": new_sku(),
                        "category": "women_dresses",
                        "brand": "zara",
                        "condition": "very_good",
                        "size": "s",
                        "color": "black",
                        "gender": "women",
                    },
                    headers=self.headers,
                )
                assert created.status_code == 201, created.text
                product_id = int(created.json()["id"])
                await client.post(
                    f"/api/products/{product_id}/images",
                    files={"file": ("r.jpg", _jpeg(), "image/jpeg")},
                    headers=self.headers,
                )
                self.products.append(product_id)

        # --- the user ------------------------------------------------------------------------------

        def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
            response = env.run(env.client.request(method, path, headers=self.headers, **kwargs))
            assert response.status_code < 500, response.text
            return response

        @rule(
            index=st.integers(0, PRODUCTS - 1),
            platforms=st.sampled_from([["ebay"], ["vinted"], ["ebay", "vinted"]]),
        )
        def publish(self, index: int, platforms: list[str]) -> None:
            self._call(
                "POST", f"/api/products/{self.products[index]}/publications", json={"platforms": platforms}
            )

        @rule(index=st.integers(0, PRODUCTS - 1), platform=st.sampled_from(["ebay", "vinted"]))
        def update(self, index: int, platform: str) -> None:
            self._call("PUT", f"/api/products/{self.products[index]}/publications/{platform}")

        @rule(index=st.integers(0, PRODUCTS - 1), platform=st.sampled_from(["ebay", "vinted"]))
        def delist(self, index: int, platform: str) -> None:
            self._call("DELETE", f"/api/products/{self.products[index]}/publications/{platform}")

        @rule(index=st.integers(0, PRODUCTS - 1), status=st.sampled_from(["sold", "archived"]))
        def sell_or_archive(self, index: int, status: str) -> None:
            self._call("POST", f"/api/products/{self.products[index]}/status", json={"status": status})

        @rule(index=st.integers(0, PRODUCTS - 1))
        def delete(self, index: int) -> None:
            self._call("DELETE", f"/api/products/{self.products[index]}")

        @rule(pick=st.integers(0, 50), command=st.sampled_from(["cancel", "retry"]))
        def cancel_or_retry(self, pick: int, command: str) -> None:
            jobs = self._call("GET", "/api/jobs", params={"limit": 200}).json()["items"]
            if jobs:
                self._call("POST", f"/api/jobs/{jobs[pick % len(jobs)]['id']}/{command}")

        # --- the platform --------------------------------------------------------------------------

        @rule(
            pick=st.integers(0, 50),
            script=st.lists(st.sampled_from(["ok", "fail_before", "fail_after", "refuse"]), max_size=2),
        )
        def a_worker_runs_a_due_job(self, pick: int, script: list[str]) -> None:
            due = env.run(self._due())
            if not due:
                return
            handoff = due[pick % len(due)]
            env.ebay.script[:] = script
            env.run(run_job({"app": env.worker}, self.tenant_id, str(handoff.job_id), handoff.run))

        async def _due(self) -> list[queue.Handoff]:
            async with self._tenant() as session:
                await queue.recover_expired_leases(session, self.tenant_id)
                due = await queue.due_handoffs(session, self.tenant_id, timedelta(0))
                await queue.mark_handed_off(session, due)
            # A retry waits its backoff; the test lets time pass for every due-later row too.
            async with self._tenant() as session:
                await session.execute(
                    text("UPDATE plugin_queue SET next_attempt_at = now() WHERE next_attempt_at > now()")
                )
            return due

        @rule(pick=st.integers(0, 50))
        def a_worker_dies_mid_job(self, pick: int) -> None:
            due = env.run(self._due())
            if due:
                handoff = due[pick % len(due)]
                env.run(self._claim_and_vanish(handoff))

        async def _claim_and_vanish(self, handoff: queue.Handoff) -> None:
            async with self._tenant() as session:
                await queue.claim(session, self.tenant_id, handoff.job_id, handoff.run, "doomed", 30)

        @rule()
        def leases_run_out(self) -> None:
            env.run(self._expire_leases())

        async def _expire_leases(self) -> None:
            """Time passes past every lease: a dead worker's run and a silent plugin's task come back."""
            async with self._tenant() as session:
                await session.execute(
                    text(
                        "UPDATE plugin_queue SET lease_expires_at = now() - interval '1 second' "
                        "WHERE status = 'running'"
                    )
                )
                await session.execute(
                    text(
                        "UPDATE plugin_tasks SET lease_expires_at = now() - interval '1 second' "
                        "WHERE finished_at IS NULL AND lease_expires_at IS NOT NULL"
                    )
                )
                await queue.recover_expired_leases(session, self.tenant_id)

        async def _delist_gone_listings(self) -> None:
            async with self._tenant() as session:
                for platform in ("ebay", "vinted"):
                    await sales.end_gone_listings(
                        session, self.tenant_id, platform, backoff=timedelta(0), limit=100
                    )

        @rule()
        def a_day_passes_without_a_plugin(self) -> None:
            async def expire() -> None:
                async with self._tenant() as session:
                    await queue.expire_plugin_waits(session, self.tenant_id, timedelta(0))

            env.run(expire())

        @rule(outcome=st.sampled_from(["success", "refused", "throttled", "silence"]))
        def the_plugin_takes_tasks(self, outcome: str) -> None:
            env.run(self._plugin(outcome))

        async def _plugin(self, outcome: str) -> None:
            async with self._tenant() as session:
                tasks = await plugin_tasks.claim_ready(session, 10, budget=10_000, window_seconds=7200)
                for task in tasks:
                    if outcome == "silence":
                        continue
                    product_id = await session.scalar(
                        text("SELECT product_id FROM plugin_queue WHERE id = :id"), {"id": task.job_id}
                    )
                    result = self._vinted_answer(task, product_id, outcome)
                    locked = await plugin_tasks.get_task(session, task.id, for_update=True)
                    assert locked is not None
                    if locked.finished_at is not None and locked.withdrawn_at is None:
                        continue
                    await plugin_tasks.record_result(session, locked, result)
                    if locked.withdrawn_at is None:
                        await queue.report_plugin_result(session, self.tenant_id, task.job_id)

        def _vinted_answer(self, task: Any, product_id: int | None, outcome: str) -> dict[str, Any]:
            if outcome == "refused":
                return {"status": "error", "responses": [{"http_status": 400, "body": {"message": "no"}}]}
            if outcome == "throttled":
                return {"status": "error", "responses": [{"http_status": 429, "body": None}]}
            items = env.vinted.setdefault(int(product_id or 0), set())
            if task.operation == "create_item":
                item = str(secrets.randbelow(10**9))
                items.add(item)
                photos = [{"http_status": 200, "body": {"id": 1}} for _ in task.requests[:-1]]
                return {
                    "status": "success",
                    "responses": [*photos, {"http_status": 200, "body": {"item": {"id": item}}}],
                }
            if task.operation == "delete_item":
                items.discard(task.requests[0]["path"].split("/")[-2])
            return {
                "status": "success",
                "responses": [{"http_status": 200, "body": {}} for _ in task.requests],
            }

        def _tenant(self) -> Any:
            return tenant_transaction(
                env.worker.db.session_factory, env.settings.tenant_schema_prefix, self.tenant_id
            )

        # --- the guarantees ------------------------------------------------------------------------

        async def _rows(self, sql: str) -> list[Any]:
            async with self._tenant() as session:
                return list((await session.execute(text(sql))).mappings())

        @invariant()
        def one_listing_per_product_and_platform(self) -> None:
            for product_id, items in env.vinted.items():
                assert len(items) <= 1, f"product {product_id} has {len(items)} Vinted items"
            doubled = env.run(
                self._rows(
                    "SELECT product_id, platform FROM plugin_queue WHERE action = 'publish' "
                    "AND status IN ('pending','queued','running','rate_limited','waiting_plugin') "
                    "GROUP BY product_id, platform HAVING count(*) > 1"
                )
            )
            assert doubled == [], doubled

        @invariant()
        def every_unfinished_job_can_move_on(self) -> None:
            stuck = env.run(
                self._rows(
                    """
                    SELECT j.id, j.status FROM plugin_queue AS j
                    WHERE (j.status = 'running' AND (j.lease_owner IS NULL OR j.lease_expires_at IS NULL))
                       OR (j.status = 'queued' AND j.handed_off_at IS NULL)
                       OR (j.status = 'waiting_plugin' AND NOT EXISTS (
                            SELECT 1 FROM plugin_tasks AS t WHERE t.job_id = j.id AND t.finished_at IS NULL))
                       -- Past its max age, only a gone product's delist keeps waiting (its next look due).
                       OR (j.status = 'waiting_plugin' AND j.next_attempt_at IS NOT NULL AND NOT (
                            j.action = 'delist' AND EXISTS (
                                SELECT 1 FROM products AS p WHERE p.id = j.product_id
                                AND (p.deleted_at IS NOT NULL OR p.status IN ('sold', 'archived')))))
                    """
                )
            )
            assert stuck == [], stuck
            unfinished = env.run(self._rows(f"SELECT id FROM plugin_queue WHERE status IN {UNFINISHED}"))
            indexed = env.run(
                self._rows(f"SELECT tenant_id FROM public.tenant_work WHERE tenant_id = {self.tenant_id}")
            )
            assert not unfinished or indexed, "unfinished jobs of a tenant the sweep forgot"

        @invariant()
        def one_history_row_per_attempt(self) -> None:
            rows = env.run(
                self._rows(
                    "SELECT h.job_id, count(*) FILTER (WHERE h.status = 'started') AS open, j.status "
                    "FROM publications_history AS h JOIN plugin_queue AS j ON j.id = h.job_id "
                    "GROUP BY h.job_id, j.status"
                )
            )
            for row in rows:
                assert row["open"] <= 1, row
                if row["status"] in ("succeeded", "failed", "cancelled"):
                    assert row["open"] == 0, row

        @precondition(lambda self: hasattr(self, "tenant_id"))
        @rule()
        def the_system_goes_quiet(self) -> None:
            """Run everything to its end (plugin answering), then no gone product is on sale anywhere."""
            for _ in range(40):
                # No run is in progress between two steps here, so whatever is still `running` belongs to a
                # worker that died: going quiet includes waiting out its lease.
                env.run(self._expire_leases())
                # ...and the sync rounds' safety net, time passing beyond its back-off: a gone product's
                # listing whose delist failed (refused, out of attempts) gets a new one.
                env.run(self._delist_gone_listings())
                env.run(self._plugin("success"))
                due = env.run(self._due())
                for handoff in due:
                    env.ebay.script.clear()
                    env.run(run_job({"app": env.worker}, self.tenant_id, str(handoff.job_id), handoff.run))
                unfinished = env.run(self._rows(f"SELECT id FROM plugin_queue WHERE status IN {UNFINISHED}"))
                if not unfinished and not due:
                    break
            assert not env.run(self._rows(f"SELECT id FROM plugin_queue WHERE status IN {UNFINISHED}"))
            gone = {
                int(row["id"])
                for row in env.run(
                    self._rows(
                        "SELECT id FROM products "
                        "WHERE deleted_at IS NOT NULL OR status IN ('sold', 'archived')"
                    )
                )
            }
            for product_id in gone:
                assert product_id not in env.ebay.listings, f"gone product {product_id} still on eBay"
                assert not env.vinted.get(product_id), f"gone product {product_id} still on Vinted"
            live = env.run(self._rows("SELECT product_id FROM platform_listings WHERE status = 'live'"))
            assert not gone & {int(row["product_id"]) for row in live}

    return Lifecycle
