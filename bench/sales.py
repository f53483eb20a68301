"""Sale -> last delist latency per source: how long a sale on one marketplace keeps the other listing up.

Real processes (gateway, dispatcher, an eBay and an Etsy worker, the sandbox) on a scratch database. Per
round: a product goes live on eBay and Etsy, a buyer purchases it in the sandbox on one of them, and the
clock runs until `GET /api/sales` shows every outcome (the other listing's delist) succeeded. Sources:
`webhook` (the sandbox's signed push) and `poll` (webhooks lost: only the periodic sale check sees it, with
`SALE_CHECK_INTERVAL_SECONDS` as given). Results go to bench/RESULTS.md (section `sales`).

    .venv/bin/python -m bench.sales --rounds 5 --check-interval 10
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

import httpx

from bench.common import (
    claimed_redis,
    machine_info,
    markdown_table,
    percentile,
    scratch_database,
    service_versions,
    today,
    write_section,
)
from tests.e2e.conftest import Storefront
from tests.e2e.processes import PlatformProcesses
from tests.e2e.test_sales_e2e import live_product, sell, wait_until_gone_everywhere


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
            processes.start_sandbox(wait=False)
            processes.start_api(wait=False)
            processes.start_dispatcher(wait=False)
            processes.start_worker("ebay", concurrency=4, wait=False)
            processes.start_worker("etsy", concurrency=4, wait=False)
            processes.wait_all_ready()
            async with (
                httpx.AsyncClient(base_url=processes.api_url, timeout=30) as api,
                httpx.AsyncClient(base_url=processes.sandbox_url, timeout=30) as sandbox,
            ):
                storefront = Storefront(api, sandbox)
                tenant = await storefront.new_tenant()
                for source, mode in (("webhook", "normal"), ("poll", "off")):
                    await sandbox.put("/_sandbox/webhooks", json={"url": processes.api_url, "mode": mode})
                    for platform in ("ebay", "etsy"):
                        for _ in range(rounds):
                            product = await live_product(storefront, tenant)
                            started = time.monotonic()
                            await sell(storefront, product, platform)
                            await wait_until_gone_everywhere(
                                storefront, tenant, product["id"], timeout=check_interval + 60
                            )
                            elapsed = time.monotonic() - started
                            samples.setdefault((source, platform), []).append(elapsed)
                            print(f"{source:8} {platform:5} {elapsed:6.2f}s", flush=True)
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
- Method: real processes (gateway, dispatcher, one eBay and one Etsy worker with the sale checks, the
  sandbox sending signed webhooks to the gateway). Each round: a product goes live on eBay and Etsy, the
  sandbox sells it on one of them, and the clock runs from that sale until `GET /api/sales` shows the other
  listing's delist `succeeded`. `webhook`: the push arrives (Etsy's only names the receipt: it makes the
  shop's check run at once). `poll`: webhooks lost, only the sale check every {args.check_interval} s sees it.

{markdown_table(["source", "sold on", "rounds", "p50 s", "p99 s"], rows)}
"""
    write_section("sales", body)
    print(body)


if __name__ == "__main__":
    main()
