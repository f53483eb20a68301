"""One ARQ worker process of a platform pool (`stoflow worker --platform X --concurrency N`)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Callable
from typing import Any

import structlog
import uvloop
from arq.connections import RedisSettings
from arq.worker import Worker, func

import persistence.ai_credits  # noqa: F401 - registers the AI credit refund with the queue (workers, dispatcher)
from ops.adapters import heartbeats
from ops.config.settings import Settings
from workers.context import WorkerApp, build_worker_app
from workers.jobs import run_job
from workers.platforms.base import PlatformAdapter
from workers.sale_checks import SaleChecker, VintedSaleChecks
from workers.sync import start_sync_loop

log = structlog.get_logger(__name__)

QUEUE_PREFIX = "stoflow:queue:"
# Our own lease, not ARQ's timeout, detects a dead worker; this only stops a job that hangs forever.
JOB_TIMEOUT_SECONDS = 900
#: The pools that look for their accounts' sales (Vinted's come from the plugin).
SALE_CHECK_PLATFORMS = frozenset({"ebay", "etsy"})


def queue_name(platform: str) -> str:
    return f"{QUEUE_PREFIX}{platform}"


def default_adapters(app: WorkerApp) -> dict[str, PlatformAdapter]:
    """The adapters of the real marketplaces, built on the worker's shared HTTP client."""
    from workers.platforms.registry import build_adapters

    return build_adapters(app)


def build_worker(
    settings: Settings,
    platform: str,
    concurrency: int,
    *,
    adapters: dict[str, PlatformAdapter] | None = None,
    burst: bool = False,
    handle_signals: bool = True,
    configure: Callable[[WorkerApp], None] | None = None,
    check_sales: bool | None = None,
) -> Worker:
    """An ARQ worker on the platform's queue whose jobs share one `WorkerApp`.

    eBay and Etsy workers also run the periodic sale checks, and Vinted workers enqueue theirs as
    `check_sales` jobs (`check_sales`; default: with the real adapters only, so a test's in-memory
    marketplace is never polled for orders; Vinted's also need VINTED_SALE_CHECK_SHARE > 0).
    """
    run_checks = check_sales if check_sales is not None else adapters is None

    async def startup(ctx: dict[str, Any]) -> None:
        app = await build_worker_app(settings, platform, concurrency)
        app.adapters = adapters if adapters is not None else default_adapters(app)
        if configure is not None:
            configure(app)
        ctx["app"] = app
        ctx["heartbeat"] = asyncio.create_task(
            heartbeats.keep_beating(app.redis, heartbeats.this_process(platform, concurrency))
        )
        reader = app.adapters.get(platform)
        if run_checks and platform in SALE_CHECK_PLATFORMS and hasattr(reader, "read_orders"):
            stop = asyncio.Event()
            checker = SaleChecker(app, platform, reader)  # type: ignore[arg-type]
            ctx["sale_checks"] = (stop, asyncio.create_task(checker.run(stop)))
        elif run_checks and platform == "vinted" and settings.vinted_sale_check_share > 0:
            # Vinted's checks are plugin tasks: this loop only turns due checks into `check_sales` jobs.
            stop = asyncio.Event()
            ctx["sale_checks"] = (stop, asyncio.create_task(VintedSaleChecks(app).run(stop)))
        # What start-up built lives as long as the process: out of the cyclic collector's way.
        gc.freeze()
        log.info("worker_started", platform=platform, concurrency=concurrency, owner=app.owner)
        # The listing sync of this pool (eBay, Etsy, Vinted); stopped by `app.close()`.
        app.background.extend(task for task in (start_sync_loop(app),) if task is not None)

    async def shutdown(ctx: dict[str, Any]) -> None:
        checks: tuple[asyncio.Event, asyncio.Task[None]] | None = ctx.get("sale_checks")
        if checks is not None:
            checks[0].set()
            await checks[1]
        beating: asyncio.Task[None] | None = ctx.get("heartbeat")
        if beating is not None:
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating
        app: WorkerApp | None = ctx.get("app")
        if app is not None:
            await app.close()

    return Worker(
        functions=[func(run_job, name="run_job", max_tries=1)],
        queue_name=queue_name(platform),
        redis_settings=RedisSettings.from_dsn(settings.required_redis_url),
        on_startup=startup,
        on_shutdown=shutdown,
        max_jobs=concurrency,
        job_timeout=JOB_TIMEOUT_SECONDS,
        # No result kept: a re-hand of the same run must not be refused as a duplicate once it finished
        # (the row's run guard already makes a late duplicate a no-op).
        keep_result=0,
        poll_delay=0.1,
        burst=burst,
        handle_signals=handle_signals,
        log_results=False,
    )


def run_worker(settings: Settings, platform: str, concurrency: int) -> None:
    """Run a worker until SIGINT/SIGTERM, on uvloop.

    A worker's time goes mostly to socket round trips (ARQ's Redis traffic, the claim and the landing),
    which uvloop's transports make cheaper than asyncio's own loop, as uvicorn does for the gateway.
    """
    uvloop.run(_run(settings, platform, concurrency))


async def _run(settings: Settings, platform: str, concurrency: int) -> None:
    # Built inside the running loop: ARQ's Worker binds `asyncio.get_event_loop()` when constructed, and a
    # worker built before `asyncio.run` would schedule its main task on another loop and die at start.
    worker = build_worker(settings, platform, concurrency)
    try:
        await worker.async_run()
    except asyncio.CancelledError:
        # SIGTERM/SIGINT: ARQ cancels its main task to stop; that is a clean exit, not a crash.
        if worker.main_task is None or not worker.main_task.cancelled():
            raise
    finally:
        await worker.close()
