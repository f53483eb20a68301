"""Sale -> last delist latency per source: how long a sale on one marketplace keeps the other listings up.

Real processes (gateway, dispatcher, an eBay, an Etsy and a Vinted worker, the sandbox, and the reference
plugin client running the Vinted tasks) on a scratch database. Per round: a product goes live on eBay, Etsy
and Vinted, a buyer purchases it in the sandbox on one of them, and the clock runs until `GET /api/sales`
shows every outcome (the other listings' delists, Vinted's through the plugin) succeeded. Sources:
`webhook` (the sandbox's signed push; eBay and Etsy only, Vinted has none) and `poll` (webhooks lost: only
the periodic sale check sees it, with `SALE_CHECK_INTERVAL_SECONDS` as given; Vinted's is a plugin task
reading the member's sold orders, on a Vinted window shrunk to 60 s with 20 requests for the checks, so
it runs every max(interval, 3 s)). Results go to bench/RESULTS.md (section `sales`).

    .venv/bin/python -m bench.sales --rounds 5 --check-interval 10
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

import asyncpg
import httpx

from bench.common import (
    claimed_redis,
    machine_info,
    markdown_table,
    percentile,
    plain_dsn,
    scratch_database,
    service_versions,
    today,
    write_section,
)
from tests.e2e.conftest import Storefront
from tests.e2e.processes import PlatformProcesses
from tests.e2e.test_sales_e2e import (
    MARKETPLACES,
    VINTED_CHECK_SHARE,
    VINTED_WINDOW_SECONDS,
    live_product,
    running_plugin,
    sell,
    vinted_seller,
    wait_until_gone_everywhere,
)


async def measure(rounds: int, check_interval: int) -> dict[tuple[str, str], list[float]]:
    """Seconds from the sandbox sale to the last delist succeeded, per (source, platform)."""
    samples: dict[tuple[str, str], list[float]] = {}
    async with claimed_redis() as redis_url, scratch_database() as database_url:
        with (
            tempfile.TemporaryDirectory() as work,
            PlatformProcesses(database_url, redis_url, Path(work), ready_timeout=120) as processes,
        ):
            processes.env["SANDBOX_WEBHOOK_URL"] = processes.api_url
            processes.env["SALE_CHECK_INTERVAL_SECONDS"] = str(check_interval)
            processes.env["VINTED_RATE_WINDOW_SECONDS"] = str(VINTED_WINDOW_SECONDS)
            processes.env["VINTED_SALE_CHECK_SHARE"] = str(VINTED_CHECK_SHARE)
            processes.env["VINTED_SYNC_INTERVAL_SECONDS"] = "0"
            processes.start_sandbox(wait=False)
            processes.start_api(wait=False)
            processes.start_dispatcher(wait=False)
            for platform in MARKETPLACES:
                processes.start_worker(platform, concurrency=4, wait=False)
            processes.wait_all_ready()

            async def on_pro_plan(tenant_id: int) -> None:
                connection = await asyncpg.connect(plain_dsn(database_url))
                try:
                    await connection.execute(
                        "UPDATE public.tenants SET tier = 'pro' WHERE id = $1", tenant_id
                    )
                finally:
                    await connection.close()

            async with (
                httpx.AsyncClient(base_url=processes.api_url, timeout=30) as api,
                httpx.AsyncClient(base_url=processes.sandbox_url, timeout=30) as sandbox,
            ):
                storefront = Storefront(api, sandbox)
                tenant = await vinted_seller(storefront, on_pro_plan)
                async with running_plugin(processes, tenant, Path(work) / "plugin"):
                    for source, mode in (("webhook", "normal"), ("poll", "off")):
                        await sandbox.put("/_sandbox/webhooks", json={"url": processes.api_url, "mode": mode})
                        for platform in MARKETPLACES if source == "poll" else ("ebay", "etsy"):
                            for _ in range(rounds):
                                product = await live_product(storefront, tenant, MARKETPLACES)
                                started = time.monotonic()
                                await sell(storefront, product, platform)
                                await wait_until_gone_everywhere(
                                    storefront, tenant, product["id"], timeout=check_interval + 60
                                )
                                elapsed = time.monotonic() - started
                                samples.setdefault((source, platform), []).append(elapsed)
                                print(f"{source:8} {platform:6} {elapsed:6.2f}s", flush=True)
        versions = await service_versions(database_url, redis_url)
    samples[("_versions", versions)] = []
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--check-interval", type=int, default=10)
    args = parser.parse_args()
    load_start = os.getloadavg()[0]
    samples = asyncio.run(measure(args.rounds, args.check_interval))
    versions = next(key[1] for key in samples if key[0] == "_versions")
    rows = [
        (source, platform, len(values), f"{percentile(values, 0.5):.2f}", f"{percentile(values, 0.99):.2f}")
        for (source, platform), values in samples.items()
        if source != "_versions"
    ]
    body = f"""## Sale -> last delist succeeded (`bench/sales.py`)

- Date: {today()}
- Machine: {machine_info()}; {versions} (all on this one machine, loopback)
- 1-minute load average: {load_start:.1f} at start, {os.getloadavg()[0]:.1f} at end
- Command: `.venv/bin/python -m bench.sales --rounds {args.rounds} --check-interval {args.check_interval}`
- Method: real processes (gateway, dispatcher, one eBay, one Etsy and one Vinted worker with the sale
  checks, the sandbox sending signed webhooks to the gateway, the reference plugin client running the
  Vinted tasks). Each round: a product goes live on eBay, Etsy and Vinted, the sandbox sells it on one of
  them, and the clock runs from that sale until `GET /api/sales` shows the other listings' delists
  `succeeded` (Vinted's through the plugin). `webhook`: the push arrives (Etsy's only names the receipt: it
  makes the shop's check run at once; Vinted sends none). `poll`: webhooks lost, only the sale check every
  {args.check_interval} s sees it; Vinted's check is a plugin task reading the member's sold orders, on a
  Vinted window shrunk to {VINTED_WINDOW_SECONDS} s ({VINTED_CHECK_SHARE} of its 40 requests for the checks:
  every max({args.check_interval}, {VINTED_WINDOW_SECONDS // VINTED_CHECK_SHARE}) s).

{markdown_table(["source", "sold on", "rounds", "p50 s", "p99 s"], rows)}
"""
    write_section("sales", body)
    print(body)


if __name__ == "__main__":
    main()
