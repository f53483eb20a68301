"""The browser plugin in Debian's headless Chromium, driven by Playwright (never `playwright install`).

    async with PluginBrowser.launch(profile_dir) as browser:
        await browser.configure(stoflow_url=..., vinted_hosts=[...], **timings)
        await browser.log_in(email, password)           # through the popup, as a user does
        await browser.storage()                         # chrome.storage.local as the service worker sees it

A browser restart is `close()` then `launch()` on the same profile directory: chrome.storage survives.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from playwright.async_api import BrowserContext, Page, Playwright, Worker, async_playwright

ROOT = Path(__file__).resolve().parents[2]
EXTENSION_DIR = ROOT / "plugin"
CHROMIUM = Path("/usr/bin/chromium")
DOCS = ROOT / "docs"


def _browser_pids(profile_dir: Path) -> list[int]:
    """The browser processes (not their helpers) started on this profile directory."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        flags = [arg.decode(errors="replace") for arg in argv]
        if f"--user-data-dir={profile_dir}" in flags and not any(f.startswith("--type=") for f in flags):
            pids.append(int(entry.name))
    return pids


def chromium_available() -> bool:
    return CHROMIUM.exists() and shutil.which(str(CHROMIUM)) is not None


class PluginBrowser:
    """One Chromium profile with the extension loaded, and its service worker."""

    def __init__(
        self, playwright: Playwright, context: BrowserContext, worker: Worker, profile_dir: Path
    ) -> None:
        self._playwright = playwright
        self.profile_dir = profile_dir
        self.context = context
        self.worker = worker
        self.extension_id = worker.url.split("/")[2]

    @classmethod
    async def launch(cls, profile_dir: Path) -> PluginBrowser:
        playwright = await async_playwright().start()
        try:
            context = await playwright.chromium.launch_persistent_context(
                str(profile_dir),
                headless=True,
                executable_path=str(CHROMIUM),
                args=[
                    "--headless=new",
                    f"--disable-extensions-except={EXTENSION_DIR}",
                    f"--load-extension={EXTENSION_DIR}",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                ],
            )
            workers = [w for w in context.service_workers if w.url.startswith("chrome-extension://")]
            worker = workers[0] if workers else await context.wait_for_event("serviceworker", timeout=20_000)
        except BaseException:
            await playwright.stop()
            raise
        return cls(playwright, context, worker, profile_dir)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        try:
            await self.context.close()
        finally:
            await self._playwright.stop()

    async def crash(self) -> None:
        """`kill -9` the browser (its main process, found by this profile): no shutdown code runs."""
        pids = _browser_pids(self.profile_dir)
        assert pids, f"no browser process runs on {self.profile_dir}"
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            await self._playwright.stop()

    # -- the extension's side --------------------------------------------------------------------------

    async def storage(self) -> dict[str, Any]:
        """Everything in chrome.storage.local."""
        stored: dict[str, Any] = await self.worker.evaluate("chrome.storage.local.get(null)")
        return stored

    async def configure(self, **settings: Any) -> None:
        """Merge settings (stoflowUrl, vintedHosts, pollWait, heartbeatSeconds, writeGap, backoff...)."""
        await self.worker.evaluate(
            """async (change) => {
                const { settings } = await chrome.storage.local.get("settings");
                await chrome.storage.local.set({ settings: { ...(settings ?? {}), ...change } });
            }""",
            settings,
        )

    async def set_servers(self, stoflow_url: str, vinted_hosts: list[str]) -> None:
        """Point the plugin at a Stoflow server and Vinted sites through its options page, as a user does."""
        page = await self.context.new_page()
        await page.goto(f"chrome-extension://{self.extension_id}/options.html")
        await page.fill("#stoflow-url", stoflow_url)
        await page.fill("#vinted-hosts", "\n".join(vinted_hosts))
        await page.click("#save")
        await page.wait_for_selector("#saved:not([hidden])", timeout=10_000)
        await page.close()

    async def popup(self) -> Page:
        """The popup, opened as a page of its own (the size of the real popup)."""
        page = await self.context.new_page()
        await page.set_viewport_size({"width": 348, "height": 330})
        await page.goto(f"chrome-extension://{self.extension_id}/popup.html")
        await page.wait_for_selector("#logged-out:not([hidden]), #logged-in:not([hidden])")
        return page

    async def log_in(self, email: str, password: str) -> Page:
        """Log in through the popup's form, as a user does; the popup stays open."""
        page = await self.popup()
        await page.fill("#email", email)
        await page.fill("#password", password)
        await page.click("#login-button")
        await page.wait_for_selector("#logged-in:not([hidden])", timeout=20_000)
        return page

    async def wait_for(self, predicate: str, timeout: float = 60.0) -> dict[str, Any]:
        """Poll chrome.storage until the JS `predicate` (a function of the storage) holds; return it."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            stored = await self.storage()
            if await self.worker.evaluate(f"(s) => Boolean(({predicate})(s))", stored):
                return stored
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"chrome.storage never satisfied {predicate}: {stored}")
            await asyncio.sleep(0.2)


async def screenshot(page: Page, name: str) -> Path:
    """Save the popup as docs/<name>.png (committed, linked from the README)."""
    DOCS.mkdir(exist_ok=True)
    path = DOCS / f"{name}.png"
    await page.locator("body").screenshot(path=str(path))
    return path
