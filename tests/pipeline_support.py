"""Run the real dispatcher and a real ARQ worker inside a test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from ops.config.settings import Settings
from workers.context import WorkerApp
from workers.dispatcher import Dispatcher
from workers.platforms.base import PlatformAdapter
from workers.pool import build_worker

FINISHED = {"succeeded", "failed", "cancelled"}


@contextlib.asynccontextmanager
async def running_pipeline(
    settings: Settings,
    platform: str,
    adapter: PlatformAdapter | None,
    *,
    configure: Callable[[WorkerApp], None] | None = None,
    sweep_seconds: float = 0.2,
    check_sales: bool | None = None,
) -> AsyncIterator[Dispatcher]:
    """A dispatcher and one worker of `platform` with `adapter` (None: the real ones), stopped on exit."""
    dispatcher = Dispatcher(settings, sweep_seconds=sweep_seconds)
    worker = build_worker(
        settings,
        platform,
        10,
        adapters=None if adapter is None else {platform: adapter},
        handle_signals=False,
        configure=configure,
        check_sales=check_sales,
    )
    dispatching = asyncio.create_task(dispatcher.run())
    working = asyncio.create_task(worker.async_run())
    try:
        yield dispatcher
    finally:
        dispatcher.stop()
        await dispatching
        # Let running jobs finish (a job cut mid-flight leaves connections half-open), then stop.
        worker.allow_pick_jobs = False
        deadline = asyncio.get_running_loop().time() + 10
        while any(not task.done() for task in worker.tasks.values()):
            if asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.05)
        await worker.close()
        with contextlib.suppress(asyncio.CancelledError):
            await working


async def wait_for_job(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    job_id: str,
    *,
    until: Callable[[dict[str, Any]], bool] = lambda job: job["status"] in FINISHED,
    timeout: float = 20.0,
) -> dict[str, Any]:
    """Poll GET /api/jobs/{id} until `until` holds; fail the test on timeout."""
    deadline = asyncio.get_running_loop().time() + timeout
    job: dict[str, Any] = {}
    while asyncio.get_running_loop().time() < deadline:
        response = await client.get(f"/api/jobs/{job_id}", headers=headers)
        assert response.status_code == 200, response.text
        job = response.json()
        if until(job):
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} did not get there in {timeout}s; last seen {job}")


EBAY_CONNECTION = {
    "access_token": "sandbox-access",
    "refresh_token": "sandbox-refresh",
    "marketplace_id": "EBAY_FR",
    "fulfillment_policy_id": "F1",
    "payment_policy_id": "P1",
    "return_policy_id": "R1",
    "merchant_location_key": "paris-1",
}


def new_sku() -> str:
    return f"SKU-{uuid.uuid4().hex[:10].upper()}"
