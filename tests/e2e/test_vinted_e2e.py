"""Vinted through the browser plugin, end to end: gateway, dispatcher, three Vinted workers and the sandbox as
real processes, the reference plugin client draining the queue, and a test-sized rate-limit window.

45 products are published to one Vinted account whose budget is 40 requests per window (a publish with one
photo is 2 requests), so the limiter must hold 25 of them back, twice. What is checked:

- the limiter's own log (sampled from Redis while the test runs): no window holds more than 40 slots, and
  the first window holds exactly 40 (no fewer than fit); Vinted never got a request before its slot;
- the held jobs wait `rate_limited` until the oldest slot leaves the window, as the rate-limit endpoint says;
- a second account of the same tenant is not held back by the first one's full window;
- every product is listed once, and another tenant's plugin, polling all along, is handed none of it;
- Vinted's own request log (the sandbox's) against the same budget: slots are taken when a task is released
  to the plugin, Vinted counts when the plugin sends, so the plugin paces its sends by the same limit and
  window (read from the rate-limit endpoint) and a lagging plugin cannot burst; see `_vinted_side_window`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from ops.adapters.rate_limit import MICROSECONDS, vinted_member_key
from ops.config.settings import Settings
from ops.tools.plugin_client import GapRange, PluginClient, PluginClientConfig, RunSummary, SendWindow
from tests.e2e.conftest import PASSWORD, Storefront, Tenant
from tests.e2e.processes import PlatformProcesses

pytestmark = pytest.mark.e2e

LIMIT = 40
#: Seconds: long enough to look at a full window over HTTP, short enough for three windows in a test.
WINDOW = 6
PRODUCTS = 45
#: Products published to a second account of the same tenant while the first one is saturated.
SECOND_ACCOUNT_PRODUCTS = 3
#: A publish with one photo: the photo upload, then the item.
REQUESTS_PER_PUBLISH = 2
#: Attribute codes that map on Vinted (ops/config/reference_data/platform_mappings/vinted.json);
#: no colour/decade.
VINTED_ATTRIBUTES: dict[str, Any] = {
    "category": "women_dresses",
    "brand": "zara",
    "condition": "very_good",
    "size": "s",
    "color": None,
    "decade": None,
}
#: The Vinted endpoints a publish calls (the session's home page is not an API request).
PUBLISH_PATHS = ("/api/v2/photos", "/api/v2/item_upload/items")
NO_GAP = GapRange(0, 0)


@pytest.fixture(scope="module")
def platform_processes(
    migrated: Settings, e2e_redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PlatformProcesses]:
    """The conftest's processes, with every child on the test-sized Vinted rate limit."""
    assert migrated.database_url is not None
    work_dir = tmp_path_factory.mktemp("e2e-vinted")
    limits = {"VINTED_RATE_LIMIT": str(LIMIT), "VINTED_RATE_WINDOW_SECONDS": str(WINDOW)}
    with PlatformProcesses(migrated.database_url, e2e_redis_url, work_dir, extra_env=limits) as processes:
        yield processes


@pytest.fixture(scope="module", autouse=True)
def running_platform(platform_processes: PlatformProcesses) -> Iterator[PlatformProcesses]:
    platform_processes.start_sandbox(wait=False)
    platform_processes.start_api(wait=False)
    platform_processes.start_dispatcher(wait=False)
    for _ in range(3):
        platform_processes.start_worker("vinted", concurrency=4, wait=False)
    platform_processes.wait_all_ready()
    yield platform_processes
    crashed = [handle for handle in platform_processes.handles if not handle.running]
    assert not crashed, f"processes died during the module: {crashed}"


# --- helpers --------------------------------------------------------------------------------------------


async def _sandbox_member(storefront: Storefront) -> int:
    """A Vinted member of the sandbox (the plugin logs in as them by user id)."""
    response = await storefront.sandbox.post("/_sandbox/vinted/sessions", json={})
    assert response.status_code == 201, response.text
    return int(response.json()["user_id"])


async def _connect_vinted(storefront: Storefront, tenant: Tenant, member: int) -> int:
    response = await storefront.api.post(
        "/api/integrations/vinted/accounts",
        json={"vinted_user_id": member, "username": f"member_{member}"},
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


async def _rate_limit(storefront: Storefront, tenant: Tenant, account_id: int) -> dict[str, Any]:
    response = await storefront.api.get(
        f"/api/integrations/vinted/accounts/{account_id}/rate-limit", headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    usage: dict[str, Any] = response.json()
    assert (usage["limit"], usage["window_seconds"]) == (LIMIT, WINDOW), usage
    return usage


async def _publish_to(
    storefront: Storefront, tenant: Tenant, product_id: int, account_id: int | None = None
) -> str:
    body: dict[str, Any] = {"platforms": ["vinted"]}
    if account_id is not None:
        body["vinted_account_id"] = account_id
    accepted = await storefront.api.post(
        f"/api/products/{product_id}/publications", json=body, headers=tenant.headers
    )
    assert accepted.status_code == 202, accepted.text
    [job] = accepted.json()["jobs"]
    assert (job["platform"], job["action"]) == ("vinted", "publish"), job
    return str(job["id"])


async def _vinted_sends(storefront: Storefront, member: int) -> list[float]:
    """When Vinted received each photo upload and item creation of a member (sandbox clock, sorted)."""
    records = await storefront.requests(platform="vinted", account=str(member))
    return sorted(
        float(record["at"])
        for record in records
        if record["method"] == "POST" and record["path"] in PUBLISH_PATHS and record["status"] < 400
    )


def _at(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def _busiest_window(times: list[float], length: float) -> int:
    """The most moments any half-open window `[t, t + length)` holds."""
    ordered = sorted(times)
    busiest, start = 0, 0
    for end, moment in enumerate(ordered):
        while ordered[start] <= moment - length:
            start += 1
        busiest = max(busiest, end - start + 1)
    return busiest


def _offsets(times: list[float]) -> list[float]:
    """For failure messages: each moment as seconds after the first."""
    return [round(moment - times[0], 2) for moment in sorted(times)]


@dataclass
class SlotLog:
    """Every slot the limiter granted to some accounts, read from its Redis logs while the test runs.

    The limiter prunes a slot only once it has left the window (WINDOW seconds), so sampling twice a
    second sees each one; members are unique per slot, scored with Redis's clock in microseconds.
    """

    redis_url: str
    keys: dict[int, str]
    slots: dict[int, dict[bytes, float]] = field(default_factory=dict)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        redis = Redis.from_url(self.redis_url)
        try:
            while True:
                await self.sample(redis)
                if self.stop.is_set():
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), 0.5)
        finally:
            await redis.aclose()

    async def sample(self, redis: Redis) -> None:
        for account, key in list(self.keys.items()):
            entries = await redis.zrange(key, 0, -1, withscores=True)
            self.slots.setdefault(account, {}).update(
                {member: score / MICROSECONDS for member, score in entries}
            )

    async def sample_now(self) -> None:
        redis = Redis.from_url(self.redis_url)
        try:
            await self.sample(redis)
        finally:
            await redis.aclose()

    def watch(self, account: int, member: int) -> None:
        self.keys[account] = vinted_member_key(str(member))

    def of(self, account: int) -> list[float]:
        """When each slot of `account` was taken (epoch seconds, sorted)."""
        return sorted(self.slots.get(account, {}).values())


@dataclass
class ForeignPoller:
    """Another tenant's plugin: long-polls its own queue the whole time and keeps whatever it is handed."""

    api_url: str
    email: str
    polls: int = 0
    received: list[dict[str, Any]] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        async with httpx.AsyncClient(base_url=self.api_url, timeout=30.0) as http:
            login = await http.post(
                "/api/auth/login",
                params={"source": "plugin"},
                json={"email": self.email, "password": PASSWORD},
            )
            assert login.status_code == 200, login.text
            headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
            while not self.stop.is_set():
                response = await http.get(
                    "/api/plugin/tasks", params={"wait": 2, "limit": 50}, headers=headers
                )
                assert response.status_code == 200, response.text
                self.polls += 1
                self.received.extend(response.json()["tasks"])


@dataclass
class Scenario:
    """The seller (two Vinted accounts, one sandbox member each), its products, and what watches them."""

    storefront: Storefront
    seller: Tenant
    tenant_id: int
    account: int
    member: int
    second_member: int
    first_products: list[dict[str, Any]]
    second_products: list[dict[str, Any]]
    slots: SlotLog
    foreign: ForeignPoller
    second_account: int | None = None


# --- the test -------------------------------------------------------------------------------------------


async def test_forty_five_publishes_through_the_plugin_respect_the_vinted_window(
    storefront: Storefront, running_platform: PlatformProcesses, e2e_redis_url: str, tmp_path: Path
) -> None:
    seller = await storefront.new_tenant(connect=())
    stranger = await storefront.new_tenant(connect=())
    tenant_id = int((await storefront.api.get("/api/auth/me", headers=seller.headers)).json()["tenant_id"])
    member, second_member = await _sandbox_member(storefront), await _sandbox_member(storefront)
    account = await _connect_vinted(storefront, seller, member)

    products: list[dict[str, Any]] = []
    for start in range(0, PRODUCTS + SECOND_ACCOUNT_PRODUCTS, 8):
        batch = range(start, min(start + 8, PRODUCTS + SECOND_ACCOUNT_PRODUCTS))
        products += await asyncio.gather(
            *(
                storefront.new_product(
                    seller, image_seed=index, title=f"Robe Zara fleurie n°{index}", **VINTED_ATTRIBUTES
                )
                for index in batch
            )
        )
    scenario = Scenario(
        storefront=storefront,
        seller=seller,
        tenant_id=tenant_id,
        account=account,
        member=member,
        second_member=second_member,
        first_products=products[:PRODUCTS],
        second_products=products[PRODUCTS:],
        slots=SlotLog(e2e_redis_url, {account: vinted_member_key(str(member))}),
        foreign=ForeignPoller(running_platform.api_url, stranger.email),
    )

    # The seller's plugin (gaps 0) and another tenant's plugin wait on their queues before anything is
    # published, as installed browsers would.
    plugin = PluginClient(
        PluginClientConfig(
            api_url=running_platform.api_url,
            email=seller.email,
            password=PASSWORD,
            vinted_url=running_platform.sandbox_url,
            state_dir=tmp_path / "plugin",
            write_gap=NO_GAP,
            read_gap=NO_GAP,
            sandbox_login=True,
            poll_wait=WINDOW + 4,
            heartbeat_seconds=5.0,
        )
    )
    plugin_run: asyncio.Task[RunSummary] = asyncio.create_task(
        plugin.run(max_tasks=PRODUCTS + SECOND_ACCOUNT_PRODUCTS)
    )
    watchers = [asyncio.create_task(scenario.foreign.run()), asyncio.create_task(scenario.slots.run())]
    try:
        await _publish_and_watch(scenario)
        summary = await asyncio.wait_for(plugin_run, timeout=30)
    finally:
        scenario.foreign.stop.set()
        scenario.slots.stop.set()
        for task in (plugin_run, *watchers):
            if not task.done():
                with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                    await asyncio.wait_for(task, timeout=10)
    for watcher in watchers:
        await watcher  # their own assertions
    assert summary.ran == PRODUCTS + SECOND_ACCOUNT_PRODUCTS and summary.deferred == 0, summary
    # The plugin paces its own sends by the window the API process runs with (read from the rate-limit
    # endpoint), not by the 40 per 2 hours default.
    assert plugin.send_windows.get(account) == SendWindow(LIMIT, WINDOW), plugin.send_windows

    # (e) The other tenant's plugin polled all along and was never handed one of these tasks.
    assert scenario.foreign.polls >= 3, scenario.foreign.polls
    assert scenario.foreign.received == [], scenario.foreign.received

    # (a) The limiter's log: 90 slots, never more than 40 in a window, the first window used to the full
    # (no fewer than fit), the rest in later windows, and Vinted got no request before its slot.
    slots = scenario.slots.of(account)
    assert len(slots) == PRODUCTS * REQUESTS_PER_PUBLISH, _offsets(slots)
    assert _busiest_window(slots, WINDOW) <= LIMIT, _offsets(slots)
    assert sum(1 for moment in slots if moment < slots[0] + WINDOW) == LIMIT, _offsets(slots)
    assert slots[LIMIT] >= slots[0] + WINDOW, _offsets(slots)
    sent = await _vinted_sends(storefront, member)
    assert len(sent) == PRODUCTS * REQUESTS_PER_PUBLISH, _offsets(sent)
    early = [(round(s, 3), round(r, 3)) for s, r in zip(sent, slots, strict=True) if s < r]
    assert not early, f"Vinted got requests before their slots were taken: {early}"

    _vinted_side_window(sent, slots)


async def _publish_and_watch(scenario: Scenario) -> None:
    """Publish, watch the window fill and the held jobs wait, use a second account meanwhile, then check."""
    storefront, seller, account = scenario.storefront, scenario.seller, scenario.account
    first_jobs = await asyncio.gather(
        *(_publish_to(storefront, seller, product["id"]) for product in scenario.first_products)
    )
    fit = LIMIT // REQUESTS_PER_PUBLISH
    held = len(first_jobs) - fit

    # (b) The window fills with the first 20 publishes; the other 25 wait, each until the oldest counted
    # request leaves the window, which is what the rate-limit endpoint reports as `resets_at`.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WINDOW
    while True:
        usage = await _rate_limit(storefront, seller, account)
        everything = await storefront.jobs_of(seller)
        jobs = {job_id: everything[job_id] for job_id in first_jobs if job_id in everything}
        again = await _rate_limit(storefront, seller, account)
        limited = [job for job in jobs.values() if job["status"] == "rate_limited"]
        if usage == again and usage["used"] == LIMIT and len(limited) == held:
            break
        assert loop.time() < deadline, (usage, sorted(job["status"] for job in jobs.values()))
        await asyncio.sleep(0.1)
    assert usage["remaining"] == 0 and usage["resets_at"] is not None, usage
    resets_at = _at(usage["resets_at"])
    # The others were released to the plugin: waiting for it, or back in the pool to finish from its result.
    released = [job for job in jobs.values() if job["status"] != "rate_limited"]
    assert len(released) == fit, sorted(job["status"] for job in jobs.values())
    for job in limited:
        assert job["next_attempt_at"] is not None, job
        assert abs(_at(job["next_attempt_at"]) - resets_at) <= 1.0, (job["next_attempt_at"], usage)
        assert job["error"] is None, job

    # (d) A second Vinted account of the same tenant has a budget of its own: published while the first is
    # saturated, its tasks are released at once.
    scenario.second_account = second = await _connect_vinted(storefront, seller, scenario.second_member)
    scenario.slots.watch(second, scenario.second_member)
    second_jobs = await asyncio.gather(
        *(_publish_to(storefront, seller, product["id"], second) for product in scenario.second_products)
    )
    deadline = loop.time() + WINDOW
    while True:
        jobs = await storefront.jobs_of(seller)
        statuses = [jobs[job_id]["status"] for job_id in second_jobs]
        assert "rate_limited" not in statuses, statuses
        if all(status not in ("pending", "queued", "running") for status in statuses):
            break
        assert loop.time() < deadline, statuses
        await asyncio.sleep(0.05)
    second_usage = await _rate_limit(storefront, seller, second)
    assert second_usage["used"] == SECOND_ACCOUNT_PRODUCTS * REQUESTS_PER_PUBLISH, second_usage
    first_usage = await _rate_limit(storefront, seller, account)
    assert first_usage["used"] == LIMIT, first_usage
    # Every slot of the second account was taken while the first account's window was still full.
    await scenario.slots.sample_now()
    second_slots = scenario.slots.of(second)
    assert len(second_slots) == SECOND_ACCOUNT_PRODUCTS * REQUESTS_PER_PUBLISH, second_slots
    assert max(second_slots) < resets_at, (_offsets([resets_at, *second_slots]), usage)

    # (c) Everything goes out in the end, once each: one live listing per product, and the member's
    # sandbox items are exactly those listings.
    owners = dict.fromkeys([*first_jobs, *second_jobs], seller)
    # Generous: a plugin slowed by a loaded machine (or a tracer) catches up one window at a time.
    finished = await storefront.wait_for_jobs(owners, timeout=12 * WINDOW + 60)
    failed = {job_id: job for job_id, job in finished.items() if job["status"] != "succeeded"}
    assert not failed, failed
    await _assert_listed_once(storefront, seller, scenario.first_products, scenario.member)
    await _assert_listed_once(storefront, seller, scenario.second_products, scenario.second_member)


async def _assert_listed_once(
    storefront: Storefront, seller: Tenant, products: list[dict[str, Any]], member: int
) -> None:
    external_ids = []
    for product in products:
        [listing] = (await storefront.publications(seller, product["id"]))["listings"]
        assert (listing["platform"], listing["status"]) == ("vinted", "live"), listing
        external_ids.append(str(listing["external_id"]))
    assert len(set(external_ids)) == len(products), external_ids
    response = await storefront.sandbox.get("/_sandbox/vinted/items", params={"user_id": member})
    assert response.status_code == 200, response.text
    items = response.json()["users"].get(str(member), {"items": []})["items"]
    assert sorted(str(item["id"]) for item in items) == sorted(external_ids)
    assert not any(item["is_closed"] for item in items), items
    assert sorted(item["title"] for item in items) == sorted(product["title"] for product in products)


def _vinted_side_window(sent: list[float], slots: list[float]) -> None:
    """Vinted's own count: at most 40 requests in any window of its log, however late the plugin sends.

    The plugin client keeps its own sliding log of sends per account, paced by the limit and window the
    rate-limit endpoint gives (VINTED_RATE_LIMIT / VINTED_RATE_WINDOW_SECONDS of the API process).
    """
    busiest = _busiest_window(sent, WINDOW)
    lag = max(moment - slot for moment, slot in zip(sent, slots, strict=True))
    assert busiest <= LIMIT, (
        f"Vinted saw {busiest} requests in one {WINDOW}s window (limit {LIMIT}); the plugin sent up to "
        f"{lag:.2f}s after the slots were taken: {_offsets(sent)}"
    )
