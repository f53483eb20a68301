"""Hardening figures: image uploads vs logins (before/after), and retention against 100k expired rows.

    .venv/bin/python -m bench.hardening [--rounds 5] [--uploads 12] [--expired 100000]

1. Uploads: a gateway process (`python -m ops api`) of the code before this work (the merge base with
   `main`, exported with `git archive`) and one of this tree, on the same scratch database and Redis. Each
   round sends 12 concurrent uploads of a 16-bit 6,000 x 6,000 greyscale PNG (a ~85 kB file) and, while
   they run, one login after another; it records the process's peak RSS (VmRSS sampled every 20 ms) and
   the logins' latency. bcrypt runs at its production cost (12 rounds) in both.
2. Retention: 100,000 idempotency records older than 24 h; the retention pass in batches of 1,000 next
   to one unbatched DELETE. A probe updates random expired rows all along: its wait is how long a row
   lock was held. Longest batch transaction and the probe's worst wait, side by side.

Both write their section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import random
import socket
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

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

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench password 1"  # noqa: S105 - a throwaway account of the scratch database


def sixteen_bit_png(width: int, height: int) -> bytes:
    """A tiny PNG declaring a 16-bit greyscale image (one repeated row compresses to almost nothing)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    row = b"\0" + b"\x12\x34" * width
    compressor = zlib.compressobj(9)
    pixels = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def export_tree(revision: str, target: Path) -> Path:
    """The source tree of `revision` (git archive), to run the code before this work side by side."""
    git = ["git", "archive", revision]
    archive = subprocess.run(git, cwd=ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return target


@asynccontextmanager
async def gateway(tree: Path, env: dict[str, str]) -> AsyncIterator[tuple[str, int]]:
    port = _free_port()
    process = subprocess.Popen(  # noqa: ASYNC220 - started once per round, not on a hot path
        [sys.executable, "-m", "ops", "api", "--port", str(port)],
        cwd=tree,
        env={**env, "PYTHONPATH": str(tree)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base) as http:
            for _ in range(120):
                try:
                    if (await http.get("/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.5)
        yield base, process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


async def upload_round(base: str, pid: int, uploads: int, png: bytes) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base, timeout=600) as http:
        email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
        registered = (
            await http.post("/api/auth/register", json={"email": email, "password": PASSWORD})
        ).json()
        headers = {"Authorization": f"Bearer {registered['access_token']}"}
        product = (
            await http.post("/api/products", json={"title": "Veste", "price": "20.00"}, headers=headers)
        ).json()
        peak = _rss_bytes(pid)
        done = asyncio.Event()

        async def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, _rss_bytes(pid))
                await asyncio.sleep(0.02)

        async def upload() -> int:
            response = await http.post(
                f"/api/products/{product['id']}/images",
                files={"file": ("big.png", png, "image/png")},
                headers=headers,
            )
            return response.status_code

        logins: list[float] = []

        async def log_in_meanwhile() -> None:
            await asyncio.sleep(0.5)
            while not done.is_set():
                started = time.perf_counter()
                response = await http.post("/api/auth/login", json={"email": email, "password": PASSWORD})
                if response.status_code == 200:
                    logins.append(time.perf_counter() - started)
                await asyncio.sleep(0.2)

        sampler = asyncio.create_task(sample())
        login_task = asyncio.create_task(log_in_meanwhile())
        started = time.perf_counter()
        statuses = await asyncio.gather(*(upload() for _ in range(uploads)))
        elapsed = time.perf_counter() - started
        done.set()
        await asyncio.gather(sampler, login_task)
    return {"peak": peak, "logins": logins, "statuses": statuses, "elapsed": elapsed}


async def bench_uploads(
    database_url: str, redis_url: str, rounds: int, uploads: int, before: Path
) -> tuple[str, list[list[object]]]:
    png = sixteen_bit_png(6000, 6000)
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "STOFLOW_ENV": "development",
        "BCRYPT_ROUNDS": "12",
        "LOG_LEVEL": "ERROR",
        "LOG_FORMAT": "json",
        "MEDIA_ROOT": tempfile.mkdtemp(prefix="bench-media-"),
    }
    results: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    trees = {"before": before, "after": ROOT}
    for round_number in range(rounds):
        for variant in ("before", "after"):  # side by side, alternating, in one run
            async with gateway(trees[variant], env) as (base, pid):
                outcome = await upload_round(base, pid, uploads, png)
            results[variant].append(outcome)
            print(
                f"round {round_number + 1} {variant}: peak RSS {outcome['peak'] / 2**20:.0f} MiB, "
                f"logins {len(outcome['logins'])} max {max(outcome['logins'], default=0):.2f}s, "
                f"uploads {sorted(set(outcome['statuses']))} in {outcome['elapsed']:.1f}s",
                flush=True,
            )
    rows: list[list[object]] = []
    for variant in ("before", "after"):
        runs = results[variant]
        peaks = [run["peak"] / 2**20 for run in runs]
        logins = [latency for run in runs for latency in run["logins"]]
        statuses = sorted({status for run in runs for status in run["statuses"]})
        rows.append(
            [
                variant,
                f"{percentile(peaks, 0.5):.0f}",
                f"{max(peaks):.0f}",
                len(logins),
                f"{percentile(logins, 0.5):.2f}" if logins else "—",
                f"{max(logins):.2f}" if logins else "—",
                f"{percentile([run['elapsed'] for run in runs], 0.5):.1f}",
                ", ".join(str(status) for status in statuses),
            ]
        )
    header = (
        f"PNG: 16-bit greyscale 6,000 x 6,000, {len(png):,} bytes; {uploads} concurrent uploads per round, "
        f"{rounds} rounds per variant, alternating; logins one after another during the uploads."
    )
    return header, rows


async def probe_locks(
    probe: asyncpg.Connection, tenant_id: int, expired: int, stop: asyncio.Event, waits: list[float]
) -> None:
    """Update random expired rows until stopped: each wait is how long a purge held that row's lock."""
    while not stop.is_set():
        key = f"k{random.randint(1, expired)}"
        started = time.perf_counter()
        await probe.execute(
            "UPDATE public.idempotency_keys SET status_code = status_code WHERE tenant_id = $1 AND key = $2",
            tenant_id,
            key,
        )
        waits.append(time.perf_counter() - started)
        await asyncio.sleep(0.005)


async def bench_retention(database_url: str, expired: int, rounds: int) -> list[list[object]]:
    from persistence.database import connect_database
    from persistence.retention import purge_expired

    dsn = plain_dsn(database_url)
    rows: list[list[object]] = []
    for variant, batch in (("batches of 1,000", 1000), ("one DELETE (unbatched)", expired)):
        longest: list[float] = []
        waits: list[float] = []
        totals: list[float] = []
        for _ in range(rounds):
            connection = await asyncpg.connect(dsn)
            try:
                tenant_id = await connection.fetchval(
                    "INSERT INTO public.tenants (name, tier) VALUES ('bench', 'free') RETURNING id"
                )
                await connection.execute(
                    "INSERT INTO public.idempotency_keys (tenant_id, method, path, key, request_hash, "
                    "status_code, headers, body, created_at) SELECT $1, 'POST', '/api/products', "
                    "'k' || i, repeat('0', 64), 201, '{}'::jsonb, '\\x00'::bytea, "
                    "now() - interval '25 hours' FROM generate_series(1, $2) AS i",
                    tenant_id,
                    expired,
                )
                await connection.execute("ANALYZE public.idempotency_keys")
            finally:
                await connection.close()
            database = connect_database(database_url.replace("postgresql://", "postgresql+asyncpg://", 1))
            probe = await asyncpg.connect(dsn)
            stop = asyncio.Event()
            probe_waits: list[float] = []

            prober = asyncio.create_task(probe_locks(probe, tenant_id, expired, stop, probe_waits))
            started = time.perf_counter()
            try:
                report = await purge_expired(
                    database.engine,
                    "user_",
                    login_session_age=timedelta(days=30),
                    plugin_task_age=timedelta(days=7),
                    batch_size=batch,
                )
            finally:
                totals.append(time.perf_counter() - started)
                stop.set()
                await prober
                await probe.close()
                await database.dispose()
            assert report.deleted["idempotency_keys"] >= expired
            longest.append(report.longest_batch_seconds)
            waits.append(max(probe_waits, default=0.0))
            print(
                f"retention {variant}: {report.deleted['idempotency_keys']:,} rows in {totals[-1]:.2f}s, "
                f"longest batch {report.longest_batch_seconds * 1000:.0f} ms, probe worst wait "
                f"{waits[-1] * 1000:.0f} ms ({len(probe_waits)} probes)",
                flush=True,
            )
        rows.append(
            [
                variant,
                f"{expired:,}",
                f"{percentile(totals, 0.5):.2f}",
                f"{percentile(longest, 0.5) * 1000:.0f}",
                f"{max(longest) * 1000:.0f}",
                f"{max(waits) * 1000:.0f}",
            ]
        )
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--uploads", type=int, default=12)
    parser.add_argument("--expired", type=int, default=100_000)
    parser.add_argument("--before", default="081ca11", help="revision of the code before this work")
    parser.add_argument("--skip-uploads", action="store_true")
    arguments = parser.parse_args()
    started = today()
    load_start = os.getloadavg()[0]
    async with claimed_redis() as redis_url, scratch_database() as database_url:
        versions = await service_versions(database_url, redis_url)
        retention_rows = await bench_retention(database_url, arguments.expired, arguments.rounds)
        upload_section = ""
        if not arguments.skip_uploads:
            with tempfile.TemporaryDirectory(prefix="stoflow-before-") as scratch:
                before = export_tree(arguments.before, Path(scratch))
                header, upload_rows = await bench_uploads(
                    database_url, redis_url, arguments.rounds, arguments.uploads, before
                )
            upload_section = (
                f"{header}\n\n"
                + markdown_table(
                    [
                        "gateway",
                        "peak RSS p50 MiB",
                        "peak RSS max MiB",
                        "logins",
                        "login p50 s",
                        "login max s",
                        "12 uploads p50 s",
                        "upload statuses",
                    ],
                    upload_rows,
                )
                + "\n"
            )
    load_end = os.getloadavg()[0]
    command = " ".join(["python -m bench.hardening", *sys.argv[1:]])
    body = f"""## Hardening (`bench/hardening.py`)

- Date: {started}
- Machine: {machine_info()}; {versions} (all on this one machine, loopback)
- 1-minute load average: {load_start:.1f} at start, {load_end:.1f} at end (shared machine)
- Command: `.venv/bin/{command}`; before = `{arguments.before}` (main before this work), after = this tree

### Image uploads and a concurrent login (must-show 8: RSS under 1 GiB, login under 1 s)

{upload_section or "(not run this time)"}
### Retention against {arguments.expired:,} expired idempotency records (must-show 6: no lock held 1 s)

{
        markdown_table(
            [
                "purge",
                "expired rows",
                "total s p50",
                "longest transaction ms p50",
                "longest transaction ms max",
                "probe worst wait ms",
            ],
            retention_rows,
        )
    }
"""
    write_section("hardening", body)
    print(body)


if __name__ == "__main__":
    asyncio.run(main())
