"""The operator console in a real browser: headless Chromium (Debian's package) driven by Playwright,
against the gateway, the dispatcher, eBay and Vinted worker processes and the marketplace sandbox.

An operator created with `stoflow operator create` logs in on the page; a publish that fails (a missing
brand eBay requires) appears in the failures within the refresh interval with what the reseller reads;
the reseller adds the brand and the operator's Retry button runs the job again, which succeeds; a
Vinted member's budget bar fills as the worker releases tasks to the plugin queue. The test saves the
screenshots under docs/ (idle, failures, busy) that the README links.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright

from tests.e2e.conftest import Storefront, Tenant
from tests.e2e.processes import PlatformProcesses

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
CHROMIUM_PRESENT = CHROMIUM.exists()
DOCS = Path(__file__).resolve().parents[2] / "docs"
#: The page's refresh interval (gateway.console.page.REFRESH_SECONDS) and the margin a browser needs.
REFRESH_SECONDS = 2
MARGIN_SECONDS = 2.5
VINTED_ATTRIBUTES: dict[str, Any] = {"size": "s", "color": None, "decade": None}


@pytest.fixture(scope="module")
def processes(platform_processes: PlatformProcesses) -> PlatformProcesses:
    platform_processes.start_sandbox(wait=False)
    platform_processes.start_api(wait=False)
    platform_processes.start_dispatcher(wait=False)
    for _ in range(2):
        platform_processes.start_worker("ebay", concurrency=2, wait=False)
    platform_processes.start_worker("vinted", concurrency=2, wait=False)
    platform_processes.wait_all_ready()
    return platform_processes


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM_PRESENT:
        if os.environ.get("CI"):
            pytest.fail("CI must install Debian's chromium (.ci/run does)")
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


def _operator(processes: PlatformProcesses) -> tuple[str, str]:
    email = f"operator-{secrets.token_hex(4)}@example.com"
    created = processes.run_cli("operator", "create", "--email", email)
    assert created.returncode == 0, created.stderr
    [line] = [line for line in created.stdout.splitlines() if line.startswith("password: ")]
    return email, line.removeprefix("password: ")


async def _eventually(check: Callable[[], Any], timeout: float, what: str) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        await asyncio.sleep(0.1)


async def _job_status(storefront: Storefront, tenant: Tenant, job_id: str) -> dict[str, Any]:
    response = await storefront.api.get(f"/api/jobs/{job_id}", headers=tenant.headers)
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()
    return job


async def _backlog(page: Page, platform: str) -> int:
    """Jobs of the pool waiting or running, as the page shows them."""
    total = 0
    for column in ("pending", "queued", "running"):
        text = await page.locator(f'#pools tr[data-platform="{platform}"] td.{column}').inner_text()
        total += int(text.strip())
    return total


async def _vinted_tenant(storefront: Storefront, member: str) -> Tenant:
    tenant = await storefront.new_tenant(connect=())
    account = await storefront.api.post(
        "/api/integrations/vinted/accounts",
        json={"vinted_user_id": int(member), "username": "console_demo"},
        headers=tenant.headers,
    )
    assert account.status_code == 201, account.text
    return tenant


async def _budget_used(page: Page, member: str) -> int:
    bar = page.locator(f'#budgets tr[data-member="{member}"] svg.bar')
    if await bar.count() == 0:
        return 0
    return int(await bar.get_attribute("data-used") or 0)


async def test_an_operator_watches_fails_retries_and_sees_budgets_fill_in_a_real_browser(
    processes: PlatformProcesses, storefront: Storefront, browser: Browser
) -> None:
    email, password = _operator(processes)
    page = await browser.new_page(viewport={"width": 1500, "height": 1000})
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)

    # Without a session the page is its login form; the token never shows in a URL.
    await page.goto(f"{processes.api_url}/ops")
    await page.fill('input[name="email"]', email)
    await page.fill('input[name="password"]', password)
    await page.click('#login-form button[type="submit"]')
    await page.wait_for_selector("#pools")
    assert page.url == f"{processes.api_url}/ops"
    cookies = await page.context.cookies()
    [session] = [cookie for cookie in cookies if cookie["name"] == "stoflow_ops"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert await page.evaluate("document.cookie") == ""

    # Idle: three worker processes report their heartbeats, nothing waits.
    await _eventually(
        lambda: _at_least(page.locator("#workers tr.alive").count(), 3), 15, "three live workers"
    )
    DOCS.mkdir(exist_ok=True)
    await page.screenshot(path=str(DOCS / "ops-console-idle.png"), full_page=True)

    # A publish eBay refuses for want of a brand fails; the page shows it within the refresh interval.
    reseller = await storefront.new_tenant()
    product = await storefront.new_product(reseller, brand=None)
    [job] = await storefront.publish(reseller, product["id"], ["ebay"])
    failed = await _eventually(
        lambda: _failed(storefront, reseller, job["id"]), 30, "the brandless publish to fail"
    )
    assert failed["error"]["code"] == "mapping_missing"
    row = page.locator(f'#failures tr[data-job="{job["id"]}"]')
    await row.wait_for(timeout=(REFRESH_SECONDS + MARGIN_SECONDS) * 1000)
    assert failed["error"]["message"] in await row.locator("td.message").inner_text()
    await page.screenshot(path=str(DOCS / "ops-console-failures.png"), full_page=True)

    # The reseller adds the brand; the operator's Retry button runs the job again and it succeeds.
    patched = await storefront.api.patch(
        f"/api/products/{product['id']}", json={"brand": "zara"}, headers=reseller.headers
    )
    assert patched.status_code == 200, patched.text
    await row.locator("button.retry").click()
    await page.wait_for_selector(".note.ok", timeout=10_000)
    done = await _eventually(
        lambda: _finished(storefront, reseller, job["id"]), 30, "the retried job to finish"
    )
    assert done["status"] == "succeeded", done
    await row.wait_for(state="detached", timeout=(REFRESH_SECONDS + MARGIN_SECONDS) * 1000)

    # A Vinted member's budget bar fills as the worker releases tasks (2 requests a publish with a photo).
    member = str(secrets.randbelow(10**9) + 10**9)
    seller = await _vinted_tenant(storefront, member)
    vinted_products = [
        await storefront.new_product(seller, image_seed=seed, **VINTED_ATTRIBUTES) for seed in range(3)
    ]
    await storefront.publish(seller, vinted_products[0]["id"], ["vinted"])
    first = await _eventually(lambda: _budget_used(page, member), 20, "the member's bar to appear")
    assert first == 2
    for product in vinted_products[1:]:
        await storefront.publish(seller, product["id"], ["vinted"])
    await _eventually(lambda: _at_least(_budget_used(page, member), 6), 20, "the member's bar to fill")
    filled = page.locator(f'#budgets tr[data-member="{member}"] svg.bar rect.fill')
    assert int(await filled.get_attribute("width") or 0) > 0

    # Busy: eBay answers slowly and a backlog builds up; the queue table and its charts show it.
    await storefront.arm_fault(platform="ebay", kind="latency", delay_seconds=1.5, count=None)
    backlog = [await storefront.new_product(reseller, image_seed=seed) for seed in range(12)]
    for product in backlog:
        await storefront.publish(reseller, product["id"], ["ebay"])
    await _eventually(lambda: _at_least(_backlog(page, "ebay"), 4), 20, "an eBay backlog")
    await page.screenshot(path=str(DOCS / "ops-console-busy.png"), full_page=True)
    await storefront.clear_faults()
    assert not [error for error in errors if "Content Security Policy" in error], errors


async def _failed(storefront: Storefront, tenant: Tenant, job_id: str) -> dict[str, Any] | None:
    job = await _job_status(storefront, tenant, job_id)
    return job if job["status"] == "failed" else None


async def _finished(storefront: Storefront, tenant: Tenant, job_id: str) -> dict[str, Any] | None:
    job = await _job_status(storefront, tenant, job_id)
    return job if job["status"] in {"succeeded", "failed", "cancelled"} else None


async def _at_least(value: Any, floor: int) -> bool:
    return int(await value) >= floor
