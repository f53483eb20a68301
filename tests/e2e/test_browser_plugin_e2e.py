"""The real browser plugin, end to end: the extension loaded in headless Chromium drains the Vinted queue
of a tenant against the gateway, dispatcher and Vinted worker as processes, and the sandbox's Vinted pages.

What a reseller would notice, checked from Stoflow's and Vinted's sides:
- 5 products published → 5 live Vinted listings, each Vinted request sent from the Vinted page itself (the
  sandbox records every request's `Origin` and refuses writes from anywhere else), none sent twice;
- a slow photo upload keeps its task's lease alive (heartbeats reach the gateway while the upload runs);
- a 429 pauses the account (no request to Vinted during the pause), the job is retried, not failed;
- an anti-bot challenge shows "open Vinted and solve the check" in the popup;
- a browser restart while a result is still unreported sends that result afterwards, and runs nothing twice.
The popup's three states are saved as screenshots under docs/.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.browser import PluginBrowser, chromium_available, screenshot
from tests.e2e.conftest import PASSWORD, Storefront, Tenant
from tests.e2e.processes import PlatformProcesses

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not chromium_available(), reason="needs Debian's chromium (apt-get install chromium)"),
]

#: Attribute codes that map on Vinted (ops/config/reference_data/platform_mappings/vinted.json).
VINTED_ATTRIBUTES: dict[str, Any] = {
    "category": "women_dresses",
    "brand": "zara",
    "condition": "very_good",
    "size": "s",
    "color": None,
    "decade": None,
}
PHOTOS = "/api/v2/photos"
ITEMS = "/api/v2/item_upload/items"
#: Test-sized timings (seconds); the defaults are 25 s polls, 20 s heartbeats, 5-12 s gaps, 15/30 min pauses.
TIMINGS: dict[str, Any] = {
    "pollWait": 2,
    "heartbeatSeconds": 1,
    "writeGap": [0.2, 0.4],
    "readGap": [0, 0],
    "backoff": {"rateLimited": 5, "challenge": 120, "ceiling": 600},
}
FINISHED = {"succeeded", "failed", "cancelled"}


@pytest.fixture(scope="module", autouse=True)
def running_platform(platform_processes: PlatformProcesses) -> PlatformProcesses:
    platform_processes.start_sandbox(wait=False)
    platform_processes.start_api(wait=False)
    platform_processes.start_dispatcher(wait=False)
    platform_processes.start_worker("vinted", concurrency=4, wait=False)
    platform_processes.wait_all_ready()
    return platform_processes


# --- helpers --------------------------------------------------------------------------------------------


async def _reseller(storefront: Storefront) -> tuple[Tenant, int, dict[str, str]]:
    """A tenant connected to a fresh Vinted member; the member's session cookie (a logged-in browser's)."""
    tenant = await storefront.new_tenant(connect=())
    session = await storefront.sandbox.post("/_sandbox/vinted/sessions", json={})
    assert session.status_code == 201, session.text
    member = int(session.json()["user_id"])
    connected = await storefront.api.post(
        "/api/integrations/vinted/accounts",
        json={"vinted_user_id": str(member), "username": f"member_{member}"},
        headers=tenant.headers,
    )
    assert connected.status_code == 201, connected.text
    return tenant, member, dict(session.json()["cookies"])


async def _browser(
    profile: Path, platform: PlatformProcesses, cookies: dict[str, str], **timings: Any
) -> PluginBrowser:
    browser = await PluginBrowser.launch(profile)
    if cookies:
        await browser.context.add_cookies(
            [{"name": name, "value": value, "url": platform.sandbox_url} for name, value in cookies.items()]
        )
    await browser.set_servers(platform.api_url, [platform.sandbox_url])
    await browser.configure(**{**TIMINGS, **timings})
    stored = await browser.storage()
    assert stored["settings"]["stoflowUrl"] == platform.api_url, stored["settings"]
    assert stored["settings"]["vintedHosts"] == [platform.sandbox_url], stored["settings"]
    return browser


async def _publish(storefront: Storefront, tenant: Tenant, count: int) -> dict[str, Tenant]:
    jobs: dict[str, Tenant] = {}
    for seed in range(count):
        product = await storefront.new_product(
            tenant, image_seed=seed + 1, title=f"Robe Zara {seed}", **VINTED_ATTRIBUTES
        )
        [job] = await storefront.publish(tenant, product["id"], ["vinted"])
        jobs[str(job["id"])] = tenant
    return jobs


async def _live_items(storefront: Storefront, member: int) -> list[dict[str, Any]]:
    response = await storefront.sandbox.get("/_sandbox/vinted/items", params={"user_id": member})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["users"].get(str(member), {"items": []})["items"]
    return [item for item in items if not item["is_closed"]]


async def _writes(storefront: Storefront, member: int) -> list[dict[str, Any]]:
    """The member's Vinted writes, in arrival order."""
    records = await storefront.requests(platform="vinted", account=str(member))
    return [record for record in records if record["method"] != "GET"]


async def _wait_until(check: Any, timeout: float = 60.0, what: str = "") -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


def _heartbeats(platform: PlatformProcesses) -> list[float]:
    """When the gateway answered 200 to a heartbeat (epoch seconds), from its JSON request log."""
    moments = []
    for line in (platform.log_dir / "api.log").read_text("utf-8", errors="replace").splitlines():
        if "/heartbeat" not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") == "request" and entry.get("status") == 200:
            moments.append(datetime.fromisoformat(entry["timestamp"]).timestamp())
    return moments


# --- tests ----------------------------------------------------------------------------------------------


async def test_five_products_become_five_live_listings_sent_from_the_vinted_page(
    storefront: Storefront, running_platform: PlatformProcesses, tmp_path: Path
) -> None:
    tenant, member, cookies = await _reseller(storefront)
    async with await _browser(tmp_path / "profile", running_platform, cookies) as browser:
        logged_out = await browser.popup()
        assert "Not connected" in await logged_out.inner_text("body")
        await screenshot(logged_out, "plugin-popup-logged-out")
        popup = await browser.log_in(tenant.email, PASSWORD)
        # The first photo upload is slow: its task must keep its lease meanwhile.
        await storefront.arm_fault(
            platform="vinted", kind="latency", path_prefix=PHOTOS, count=1, delay_seconds=5
        )

        jobs = await _publish(storefront, tenant, 5)
        await browser.wait_for("(s) => s.status?.state === 'working'", timeout=60)
        await popup.reload()
        await popup.wait_for_selector("#logged-in:not([hidden])")
        assert "publishing on Vinted" in await popup.inner_text("#state")
        await screenshot(popup, "plugin-popup-working")
        finished = await storefront.wait_for_jobs(jobs, timeout=120)
        await browser.wait_for("(s) => (s.budget ?? []).some((b) => b.used >= 10)", timeout=30)
        await popup.reload()
        await popup.wait_for_selector("#logged-in:not([hidden])")
        popup_text = await popup.inner_text("body")
        stored = await browser.storage()

    assert {job["status"] for job in finished.values()} == {"succeeded"}, finished
    items = await _live_items(storefront, member)
    assert len(items) == 5
    assert sorted(item["title"] for item in items) == [f"Robe Zara {n}" for n in range(5)]
    writes = await _writes(storefront, member)
    # One photo and one item per product, nothing sent twice, every write from the Vinted page's origin.
    assert [record["path"] for record in writes].count(PHOTOS) == 5
    assert [record["path"] for record in writes].count(ITEMS) == 5
    assert {record["origin"] for record in writes} == {running_platform.sandbox_url}
    assert all(record["status"] == 200 for record in writes)
    # The slow upload (the first photo) lasted 5 s; the gateway renewed leases all along.
    slow_started = writes[0]["at"]
    assert writes[0]["path"] == PHOTOS and writes[1]["at"] >= slow_started + 5
    during = [moment for moment in _heartbeats(running_platform) if slow_started < moment < slow_started + 5]
    assert len(during) >= 3, during
    # The popup tells what was done: 5 tasks today, 10 of the member's 40 requests used.
    assert "5" in popup_text and f"member_{member}: 10/40" in popup_text
    assert stored["status"]["doneToday"] == 5
    assert all(record["reported"] for record in stored["tasks"].values())


async def test_a_429_pauses_the_account_and_a_challenge_asks_the_user_to_solve_it(
    storefront: Storefront, running_platform: PlatformProcesses, tmp_path: Path
) -> None:
    tenant, member, cookies = await _reseller(storefront)
    async with await _browser(tmp_path / "profile", running_platform, cookies, pollLimit=1) as browser:
        popup = await browser.log_in(tenant.email, PASSWORD)
        await storefront.arm_fault(platform="vinted", kind="rate_limit", path_prefix=ITEMS, count=1)
        jobs = await _publish(storefront, tenant, 2)

        async def one_succeeded() -> bool:
            seen = await storefront.jobs_of(tenant)
            return any(seen[job]["status"] == "succeeded" for job in jobs)

        await _wait_until(one_succeeded, timeout=90, what="the job after the pause")
        statuses = {job: (await storefront.jobs_of(tenant))[job] for job in jobs}
        writes = await _writes(storefront, member)

        # Then a challenge on the next item: the popup asks the user to solve it, in plain words.
        await storefront.arm_fault(platform="vinted", kind="antibot", path_prefix=ITEMS, count=1)
        challenged = await _publish(storefront, tenant, 1)
        stored = await browser.wait_for("(s) => s.status?.state === 'paused'", timeout=60)
        await popup.reload()
        await popup.wait_for_selector("#challenge:not([hidden])")
        await screenshot(popup, "plugin-popup-paused-challenge")
        popup_text = await popup.inner_text("body")
        await asyncio.sleep(3)
        after_challenge = await _writes(storefront, member)

    limited = [index for index, record in enumerate(writes) if record["status"] == 429]
    assert len(limited) == 1, writes
    paused_from = writes[limited[0]]["at"]
    # Nothing reached Vinted during the 5 s pause; the next task ran after it.
    assert writes[limited[0] + 1]["at"] >= paused_from + 5, writes
    # The job that met the 429 is retried later by Stoflow, not failed; the other one succeeded.
    outcomes = [job["status"] for job in statuses.values()]
    assert outcomes.count("succeeded") == 1 and not FINISHED & {*outcomes} - {"succeeded"}, statuses
    assert "Paused by Vinted" in popup_text and "solve the" in popup_text and "check" in popup_text
    assert stored["status"]["penalty"] == "challenge"
    assert "open Vinted and solve the check" in stored["status"]["lastError"]["message"]
    # The challenge is never "solved" by the plugin: nothing more is sent while it pauses.
    assert after_challenge[-1]["status"] == 403 and len(after_challenge) == len(writes) + 2
    assert set(challenged) <= set(await storefront.jobs_of(tenant))


async def test_a_browser_killed_before_the_report_sends_it_after_restart_and_runs_nothing_twice(
    storefront: Storefront, running_platform: PlatformProcesses, tmp_path: Path
) -> None:
    tenant, member, cookies = await _reseller(storefront)
    profile = tmp_path / "profile"
    api = next(handle for handle in running_platform.handles if handle.name == "api")
    browser = await _browser(profile, running_platform, cookies, pollLimit=1)
    try:
        await browser.log_in(tenant.email, PASSWORD)
        # The first item creation is slow; Stoflow goes away while it runs, so its result cannot be reported.
        await storefront.arm_fault(
            platform="vinted", kind="latency", path_prefix=ITEMS, count=1, delay_seconds=3
        )
        jobs = await _publish(storefront, tenant, 3)

        async def item_sent() -> bool:
            return any(record["path"] == ITEMS for record in await _writes(storefront, member))

        await _wait_until(item_sent, timeout=60, what="the first item creation")
        api.terminate()
        stored = await browser.wait_for(
            "(s) => Object.values(s.tasks ?? {}).some((t) => t.result && !t.reported)", timeout=30
        )
        unreported = [task_id for task_id, task in stored["tasks"].items() if not task["reported"]]
    finally:
        await browser.crash()
    api.restart()

    async with await _browser(profile, running_platform, cookies, pollLimit=1) as browser:
        finished = await storefront.wait_for_jobs(jobs, timeout=120)
        stored = await browser.storage()

    assert {job["status"] for job in finished.values()} == {"succeeded"}, finished
    assert len(await _live_items(storefront, member)) == 3
    writes = await _writes(storefront, member)
    assert [record["path"] for record in writes].count(ITEMS) == 3, writes
    assert [record["path"] for record in writes].count(PHOTOS) == 3, writes
    assert len(unreported) == 1
    assert stored["tasks"][unreported[0]]["reported"] is True
    assert stored["tasks"][unreported[0]]["result"]["status"] == "success"


async def test_a_member_logged_out_of_vinted_is_told_so_and_the_task_is_left_for_later(
    storefront: Storefront, running_platform: PlatformProcesses, tmp_path: Path
) -> None:
    tenant, member, _ = await _reseller(storefront)
    # No Vinted session cookie in this browser: the member is logged out of Vinted.
    async with await _browser(tmp_path / "profile", running_platform, {}, pollLimit=1) as browser:
        popup = await browser.log_in(tenant.email, PASSWORD)
        [job_id] = await _publish(storefront, tenant, 1)
        stored = await browser.wait_for("(s) => s.status?.penalty === 'logged_out_of_vinted'", timeout=60)
        await popup.reload()
        await popup.wait_for_selector("#logged-in:not([hidden])")
        popup_text = await popup.inner_text("body")
        job = (await storefront.jobs_of(tenant))[job_id]

    assert "Log in to Vinted in this browser" in popup_text
    # Vinted did nothing, so the task is not remembered as run: it comes back once its lease lapses.
    assert stored["tasks"] == {}
    assert job["status"] == "waiting_plugin", job
    assert await _live_items(storefront, member) == []
    refused = await storefront.requests(platform="vinted", method="POST", path_prefix=PHOTOS)
    assert [record["status"] for record in refused if record["account"] is None] == [401]
