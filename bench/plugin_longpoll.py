"""Idle plugin long polls: gateway memory with 1,000 polls held, and how fast a task reaches a waiting poll.

One gateway process (`python -m ops api`, uvicorn on loopback) on a scratch database and Redis database.
Tenants are registered through the API; then:

1. baseline: the gateway's RSS at rest, and the delivery latency of a task to one waiting poll with no
   other poll open: a probe tenant's `GET /api/plugin/tasks?wait=30` is parked, the bench writes a task
   through the release path (`persistence.plugin_tasks.create_task` in a tenant transaction, which NOTIFYs
   on commit, as the Vinted worker does) and times from the commit to the poll's answer. The probe reports
   a result for each task so that it leaves the queue;
2. loaded: `tenants x polls` idle long polls (`wait=30`, re-polled as soon as they return, as plugins do)
   held at once on other tenants, RSS while holding them, the same delivery latency, and the gateway's
   PostgreSQL backends by state (is the pool held by idle polls?).

Every loop is bounded; the run stops by itself and drops its database.

    python -m bench.plugin_longpoll                 # 100 tenants x 10 idle polls, 50 deliveries per side
    python -m bench.plugin_longpoll --quick         # 20 tenants x 10 idle polls, 20 deliveries per side
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from bench.common import (
    ROOT,
    claimed_redis,
    cpu_seconds,
    machine_info,
    markdown_table,
    percentile,
    plain_dsn,
    register_tenant,
    scratch_database,
    service_versions,
    today,
    write_section,
)
from ops.config.settings import Settings
from persistence import plugin_tasks
from persistence.tenancy import tenant_transaction

PREFIX = "user_"
#: application_name of the bench's own PostgreSQL connections, so the gateway's can be told apart.
DRIVER = "bench-driver"
POLL_WAIT = 30
#: Long enough for a poll to be parked (auth transaction committed, first look done) before the task.
PARK_SECONDS = 0.3
#: Idle polls opened per step while ramping up (the pool serves their first look, 20 connections at most).
RAMP_STEP = 50
#: A task as the Vinted worker writes it (one photo upload, then the item).
REQUESTS = [
    {"method": "POST", "path": "/api/v2/photos", "body": {"photo": {"type": "item"}}},
    {"method": "POST", "path": "/api/v2/item_upload/items", "body": {"item": {"title": "bench"}}},
]


# --- the gateway process --------------------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def gateway_process(database_url: str, redis_url: str, log_path: Path) -> Iterator[tuple[str, int]]:
    """`python -m ops api` on a free loopback port; yields its base URL and pid, stops it at the end."""
    port = _free_port()
    env = {
        **{key: value for key, value in os.environ.items() if key not in ("LOG_FILE", "PUBLIC_BASE_URL")},
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "STOFLOW_ENV": "development",
        "BCRYPT_ROUNDS": "4",
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "json",
        "TENANT_MAX_SCHEMAS": "5000",
    }
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "ops", "api", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield f"http://127.0.0.1:{port}", process.pid
        finally:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


async def wait_ready(base_url: str, pid: int, limit_seconds: float = 60.0) -> None:
    deadline = time.monotonic() + limit_seconds
    async with httpx.AsyncClient(base_url=base_url, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if not _alive(pid):
                raise RuntimeError("the gateway exited during start-up (see its log)")
            try:
                if (await client.get("/ready")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"the gateway did not become ready within {limit_seconds:.0f}s")


async def wait_quiet(pid: int, limit_seconds: float = 30.0) -> None:
    """Wait until the gateway used under 5% of a core over half a second (its backlog is served)."""
    deadline = time.monotonic() + limit_seconds
    while time.monotonic() < deadline:
        before = cpu_seconds([pid])
        await asyncio.sleep(0.5)
        if cpu_seconds([pid]) - before < 0.025:
            return


def rss_mib(pid: int) -> float:
    """The process's resident set (VmRSS of /proc/<pid>/status) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


async def gateway_backends(admin: asyncpg.Connection) -> dict[str, int]:
    """The gateway's PostgreSQL connections to the bench database, by state (the bench's own excluded)."""
    rows = await admin.fetch(
        "SELECT coalesce(state, '?') AS state, count(*) AS n FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name <> $1 AND backend_type = 'client backend' "
        "GROUP BY 1",
        DRIVER,
    )
    return {str(row["state"]): int(row["n"]) for row in rows}


# --- polls ----------------------------------------------------------------------------------------------


@dataclass
class IdlePolls:
    """Long polls held open on tenants that never get a task; each re-polls as soon as it returns."""

    target: int
    held: int = 0
    answered: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    #: how long each answered idle poll was held (≈ POLL_WAIT when it really waited)
    durations: list[float] = field(default_factory=list)
    unexpected_tasks: int = 0
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    #: set once `target` polls are in flight at the same time
    all_held: asyncio.Event = field(default_factory=asyncio.Event)

    async def hold(self, client: httpx.AsyncClient, headers: dict[str, str]) -> None:
        while not self.stop.is_set():
            self.held += 1
            if self.held >= self.target:
                self.all_held.set()
            started = time.perf_counter()
            try:
                response = await client.get(
                    "/api/plugin/tasks", params={"wait": POLL_WAIT, "limit": 10}, headers=headers
                )
            except httpx.HTTPError as exc:
                self.errors[type(exc).__name__] += 1
                await asyncio.sleep(1)
                continue
            finally:
                self.held -= 1
            if response.status_code != 200:
                self.errors[str(response.status_code)] += 1
                await asyncio.sleep(1)
                continue
            self.answered += 1
            self.durations.append(time.perf_counter() - started)
            self.unexpected_tasks += len(response.json()["tasks"])


@dataclass
class Probe:
    """One tenant whose single poll receives the tasks the bench releases."""

    client: httpx.AsyncClient
    headers: dict[str, str]
    tenant_id: int
    sessions: async_sessionmaker[AsyncSession]
    admin: asyncpg.Connection
    #: the most gateway backends seen in each state while every poll was parked (sampled per delivery)
    parked_backends: Counter[str] = field(default_factory=Counter)
    #: indexes (from 0) of the samples that saw a gateway backend active or idle in a transaction
    busy_samples: list[int] = field(default_factory=list)
    samples: int = 0

    async def deliver(self) -> float:
        """Park a poll, release a task, return seconds from the commit to the poll's answer."""
        poll = asyncio.create_task(
            self.client.get("/api/plugin/tasks", params={"wait": POLL_WAIT, "limit": 1}, headers=self.headers)
        )
        await asyncio.sleep(PARK_SECONDS)
        if poll.done():
            raise RuntimeError(f"the probe's poll answered before any task: {poll.result().text}")
        backends = await gateway_backends(self.admin)
        for state, count in backends.items():
            self.parked_backends[state] = max(self.parked_backends[state], count)
        if backends.get("active") or backends.get("idle in transaction"):
            self.busy_samples.append(self.samples)
        self.samples += 1
        async with tenant_transaction(self.sessions, PREFIX, self.tenant_id) as session:
            created = await plugin_tasks.create_task(
                session,
                tenant_id=self.tenant_id,
                job_id=uuid.uuid4(),
                vinted_account_id=1,
                # A member of its own per delivery: this measures the long poll's wake-up, and the Vinted
                # budget (40 per member per window) must never be what holds a task back here.
                vinted_user_id=f"bench-longpoll-{self.tenant_id}-{self.samples}",
                operation="create_item",
                requests=REQUESTS,
            )
        committed = time.perf_counter()
        response = await poll
        latency = time.perf_counter() - committed
        response.raise_for_status()
        [task] = response.json()["tasks"]
        if task["id"] != str(created.id):
            raise RuntimeError(f"the probe got {task['id']}, not the task just released")
        reported = await self.client.post(
            f"/api/plugin/tasks/{task['id']}/result",
            json={
                "lease_id": task["lease_id"],
                "status": "success",
                "responses": [{"http_status": 200, "body": {"id": 1}}, {"http_status": 200, "body": {}}],
            },
            headers=self.headers,
        )
        reported.raise_for_status()
        return latency

    async def deliveries(self, count: int) -> list[float]:
        return [await self.deliver() for _ in range(count)]


async def api_latencies(client: httpx.AsyncClient, headers: dict[str, str], count: int) -> list[float]:
    """GET /api/auth/me, sequentially: an ordinary request that needs a pooled connection."""
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        response = await client.get("/api/auth/me", headers=headers)
        response.raise_for_status()
        samples.append(time.perf_counter() - started)
    return samples


@asynccontextmanager
async def driver_sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """The bench's own engine for the release path, named so the gateway's connections can be counted."""
    engine = create_async_engine(
        Settings(database_url=database_url).async_database_url,
        pool_size=2,
        connect_args={"server_settings": {"application_name": DRIVER}},
    )
    try:
        yield async_sessionmaker(engine, expire_on_commit=False)
    finally:
        await engine.dispose()


# --- the run --------------------------------------------------------------------------------------------


@dataclass
class Side:
    name: str
    rss_mib: float
    latencies: list[float]
    api: list[float]
    backends: dict[str, int]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


async def run(tenants: int, polls_per_tenant: int, deliveries: int) -> str:
    idle_total = tenants * polls_per_tenant
    load_before = os.getloadavg()[0]
    async with scratch_database() as database_url, claimed_redis() as redis_url:
        versions = await service_versions(database_url, redis_url)
        log_path = Path(tempfile.gettempdir()) / f"bench-plugin-longpoll-{os.getpid()}.log"
        with gateway_process(database_url, redis_url, log_path) as (base_url, pid):
            await wait_ready(base_url, pid)
            limits = httpx.Limits(max_connections=idle_total + 50, max_keepalive_connections=idle_total + 50)
            async with (
                httpx.AsyncClient(base_url=base_url, timeout=POLL_WAIT + 30, limits=limits) as client,
                driver_sessions(database_url) as sessions,
            ):
                admin = await asyncpg.connect(
                    plain_dsn(database_url), server_settings={"application_name": DRIVER}
                )
                try:
                    return await _measure(
                        client,
                        sessions,
                        admin,
                        pid,
                        tenants,
                        polls_per_tenant,
                        deliveries,
                        versions,
                        load_before,
                    )
                finally:
                    await admin.close()


async def _measure(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    admin: asyncpg.Connection,
    pid: int,
    tenants: int,
    polls_per_tenant: int,
    deliveries: int,
    versions: str,
    load_before: float,
) -> str:
    idle_total = tenants * polls_per_tenant
    started = time.perf_counter()
    probe_headers, probe_tenant = await register_tenant(client, "probe")
    idle_headers: list[dict[str, str]] = []
    semaphore = asyncio.Semaphore(4)

    async def register(index: int) -> None:
        async with semaphore:
            headers, _tenant = await register_tenant(client, f"idle{index}")
            idle_headers.append(headers)

    await asyncio.gather(*(register(index) for index in range(tenants)))
    registered = time.perf_counter() - started
    probe = Probe(client, probe_headers, probe_tenant, sessions, admin)

    # Warm-up: imports, pools, prepared statements, the hub's LISTEN connection.
    await probe.deliveries(5)
    await api_latencies(client, probe_headers, 10)
    probe.parked_backends.clear()
    await wait_quiet(pid)
    baseline = Side(
        "no other poll",
        rss_mib(pid),
        await probe.deliveries(deliveries),
        await api_latencies(client, probe_headers, 50),
        dict(probe.parked_backends),
    )
    baseline_busy = list(probe.busy_samples)
    probe.parked_backends.clear()
    probe.busy_samples.clear()
    probe.samples = 0

    idle = IdlePolls(target=idle_total)
    holders: list[asyncio.Task[None]] = []
    ramp_started = time.perf_counter()
    for start in range(0, idle_total, RAMP_STEP):
        for index in range(start, min(start + RAMP_STEP, idle_total)):
            headers = idle_headers[index % tenants]
            holders.append(asyncio.create_task(idle.hold(client, headers)))
        await asyncio.sleep(0.25)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(30):
            await idle.all_held.wait()
    await wait_quiet(pid)  # every first look done: all parked
    ramp = time.perf_counter() - ramp_started
    held_at_measure = idle.held
    rss_peak = rss_mib(pid)
    loaded_latencies: list[float] = []
    for _ in range(deliveries):
        loaded_latencies.append(await probe.deliver())
        rss_peak = max(rss_peak, rss_mib(pid))
    loaded = Side(
        f"{idle_total:,} idle polls held",
        rss_peak,
        loaded_latencies,
        await api_latencies(client, probe_headers, 50),
        dict(probe.parked_backends),
    )
    held_min = min(idle.held, held_at_measure)
    idle.stop.set()
    for holder in holders:
        holder.cancel()
    await asyncio.gather(*holders, return_exceptions=True)
    load_after = os.getloadavg()[0]

    return _report(
        tenants,
        polls_per_tenant,
        deliveries,
        versions,
        (load_before, load_after),
        registered,
        ramp,
        held_min,
        idle,
        baseline,
        loaded,
        (baseline_busy, list(probe.busy_samples)),
    )


def _report(
    tenants: int,
    polls_per_tenant: int,
    deliveries: int,
    versions: str,
    load: tuple[float, float],
    registered: float,
    ramp: float,
    held: int,
    idle: IdlePolls,
    baseline: Side,
    loaded: Side,
    busy: tuple[list[int], list[int]],
) -> str:
    idle_total = tenants * polls_per_tenant
    rows = []
    for side in (baseline, loaded):
        rows.append(
            [
                side.name,
                f"{side.rss_mib:.1f}",
                _ms(percentile(side.latencies, 0.5)),
                _ms(percentile(side.latencies, 0.99)),
                _ms(max(side.latencies)),
                _ms(percentile(side.api, 0.5)),
                _ms(percentile(side.api, 0.99)),
                ", ".join(f"{state} {count}" for state, count in sorted(side.backends.items())) or "none",
            ]
        )
    ratio_p50 = percentile(loaded.latencies, 0.5) / percentile(baseline.latencies, 0.5)
    ratio_p99 = percentile(loaded.latencies, 0.99) / percentile(baseline.latencies, 0.99)
    per_poll_kib = (loaded.rss_mib - baseline.rss_mib) * 1024 / idle_total
    table = markdown_table(
        [
            "side",
            "gateway RSS MiB",
            "delivery p50 ms",
            "delivery p99 ms",
            "delivery max ms",
            "GET /api/auth/me p50 ms",
            "p99 ms",
            "gateway PG backends while parked (max per state)",
        ],
        rows,
    )
    held_durations = sorted(idle.durations)
    held_note = (
        f"{len(held_durations)} idle polls answered during the run, held {held_durations[0]:.1f}-"
        f"{held_durations[-1]:.1f}s each (wait={POLL_WAIT})"
        if held_durations
        else f"none returned during the measurement (shorter than their {POLL_WAIT}s wait)"
    )
    in_transaction = loaded.backends.get("idle in transaction", 0) + loaded.backends.get("active", 0)
    backends_total = sum(loaded.backends.values())
    pool_verdict = (
        "not held: in every sample taken while the polls were parked, none of the gateway's backends was "
        "active or idle in a transaction"
        if in_transaction == 0
        else f"{len(busy[1])} of {deliveries} samples (numbers {busy[1][:10]}) saw up to {in_transaction} "
        "gateway backend(s) active or idle in a transaction; the others saw none"
    )
    if busy[0]:
        pool_verdict += f" (without idle polls: {len(busy[0])} of {deliveries} samples did)"
    errors = ", ".join(f"{name} x{count}" for name, count in idle.errors.items()) or "none"
    return f"""## Plugin long polls (`bench/plugin_longpoll.py`)

- Date: {today()}
- Machine: {machine_info()}; {versions} (all on this one machine, loopback)
- 1-minute load average: {load[0]:.1f} at start, {load[1]:.1f} at end (shared machine)
- Command: `.venv/bin/python -m bench.plugin_longpoll --tenants {tenants} --polls {polls_per_tenant}
  --deliveries {deliveries}`
- Setup: one gateway process (`python -m ops api`, uvicorn, one event loop; DB pool 10 + 10 overflow) on a
  scratch database; {tenants + 1} tenants registered through the API ({registered:.1f}s); the client is one
  asyncio httpx client in another process with a connection limit above the poll count.
- Method: a probe tenant parks `GET /api/plugin/tasks?wait={POLL_WAIT}&limit=1` ({PARK_SECONDS}s), then the
  bench commits a task through the release path (`plugin_tasks.create_task` in a tenant transaction: NOTIFY
  on commit) and times commit → answer received; the probe reports a result each time. {deliveries}
  deliveries per side, sequential. Loaded side: {idle_total:,} idle polls ({tenants} tenants x
  {polls_per_tenant}, other than the probe's) opened {RAMP_STEP} per 0.25 s ({ramp:.1f}s to all parked),
  re-polled as soon as they return; {held:,} were in flight at the lowest point of the measurement;
  {held_note};
  idle-poll errors: {errors}; tasks handed to idle polls: {idle.unexpected_tasks}.
- RSS is the gateway process's resident set (VmRSS) after warm-up, and the peak while holding. PG backends
  are the `pg_stat_activity` rows of the bench database other than the bench's own, sampled before each
  delivery (every poll parked at that moment); the most seen per state.

{table}

- Memory: {loaded.rss_mib - baseline.rss_mib:+.1f} MiB for {idle_total:,} held polls, about
  {per_poll_kib:.0f} KiB per poll (a parked request: its connection, h11 state, the handler's coroutine and
  an `asyncio.Event` in the hub).
- Delivery with {idle_total:,} polls held vs none: p50 x{ratio_p50:.2f}, p99 x{ratio_p99:.2f}. A NOTIFY
  wakes only the events of its tenant, so parked polls of other tenants cost nothing per delivery; what
  they cost is event-loop time for their own traffic (each re-polls every {POLL_WAIT}s: auth transaction and
  one look).
- Pool: {pool_verdict} (at most {backends_total} gateway backends in all, including the hub's LISTEN
  connection, for {idle_total + 1:,} parked polls). Each poll commits its authentication transaction
  before it waits and opens a short tenant transaction only to look (when woken, or when a lease it saw
  expires). So a 20-connection pool serves any number of parked polls, and ordinary requests alongside
  them (`/api/auth/me` columns) still answer in milliseconds.
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--polls", type=int, default=10, help="idle polls per tenant")
    parser.add_argument("--deliveries", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="20 tenants x 10 polls, 20 deliveries")
    parser.add_argument("--no-record", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()
    if args.quick:
        args.tenants, args.polls, args.deliveries = 20, 10, 20
    report = asyncio.run(run(args.tenants, args.polls, args.deliveries))
    print(report)
    if not args.no_record:
        write_section("plugin-longpoll", report)


if __name__ == "__main__":
    main()
