"""What both benchmarks share: a scratch database, realistic products, percentiles, the machine, RESULTS.md.

Each run works in its own database `stoflow_bench_<pid>` (migrated and seeded like a fresh deployment,
dropped at the end) and a Redis database number of its own (claimed among 10..15 like the e2e runs do, or
`BENCH_REDIS_DB`; flushed at the start and the end), so a developer's data and parallel test runs are never
touched.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import random
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
from redis.asyncio import Redis

from ops.config.reference_data import load_attributes, load_platform_mappings
from ops.config.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"
PASSWORD = "bench-password-123"  # noqa: S105 - a throwaway account in a scratch database


# --- services -------------------------------------------------------------------------------------------


def plain_dsn(url: str) -> str:
    """An asyncpg DSN (`postgresql://`) for any URL the settings accept."""
    for prefix in ("postgresql+asyncpg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


#: Redis databases shared with the e2e runs, claimed the same way (tests/e2e/conftest.py): SET NX on a key.
SHARED_REDIS_DATABASES = range(10, 16)
CLAIM_KEY = "stoflow:e2e:claimed-by"
CLAIM_SECONDS = 1800


@asynccontextmanager
async def claimed_redis() -> AsyncIterator[str]:
    """A Redis database of this run's own: BENCH_REDIS_DB if set, else the first free one of 10..15.

    It is flushed before use and at the end, and claimed like the e2e runs claim theirs, so neither a
    parallel e2e run nor the test suite (database 9) shares it.
    """
    base = urlsplit(os.environ.get("REDIS_URL", DEFAULT_REDIS_URL))
    fixed = os.environ.get("BENCH_REDIS_DB")
    candidates = [int(fixed)] if fixed else list(SHARED_REDIS_DATABASES)
    owner = f"bench:{os.getpid()}"
    for number in candidates:
        url = urlunsplit(base._replace(path=f"/{number}"))
        client = Redis.from_url(url)
        try:
            if fixed or await client.set(CLAIM_KEY, owner, nx=True, ex=CLAIM_SECONDS):
                await client.flushdb()
                await client.set(CLAIM_KEY, owner, ex=CLAIM_SECONDS)
                break
        finally:
            await client.aclose()
    else:
        raise RuntimeError(f"every Redis database of {SHARED_REDIS_DATABASES} is claimed; set BENCH_REDIS_DB")
    try:
        yield url
    finally:
        client = Redis.from_url(url)
        try:
            await client.flushdb()
        finally:
            await client.aclose()


@asynccontextmanager
async def scratch_database() -> AsyncIterator[str]:
    """Create `stoflow_bench_<pid>`, migrate and seed it, yield its URL, drop it at the end."""
    from migrations.runner import migrate_all
    from ops.runtime.seed import seed_reference_data
    from persistence.database import connect_database

    admin = plain_dsn(os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL))
    name = f"stoflow_bench_{os.getpid()}"
    connection = await asyncpg.connect(admin)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    url = _with_database(admin, name)
    try:
        database = connect_database(Settings(database_url=url).async_database_url, pool_size=2)
        try:
            await migrate_all(database.engine, "user_")
            await seed_reference_data(database.engine)
        finally:
            await database.dispose()
        yield url
    finally:
        connection = await asyncpg.connect(admin)
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()


def bench_settings(database_url: str, redis_url: str, **overrides: Any) -> Settings:
    """Development settings on the scratch services; registration hashes cheaply (bench setup only)."""
    values: dict[str, Any] = {
        "stoflow_env": "development",
        "database_url": database_url,
        "redis_url": redis_url,
        "bcrypt_rounds": 4,
        "log_level": "WARNING",
        "log_format": "json",
        **overrides,
    }
    return Settings(**values)


async def register_tenant(client: httpx.AsyncClient, label: str) -> tuple[dict[str, str], int]:
    """Open an account through the API; return its bearer headers and tenant id."""
    email = f"{label}-{random.randrange(10**9)}@bench.example.com"
    response = await client.post("/api/auth/register", json={"email": email, "password": PASSWORD})
    response.raise_for_status()
    body = response.json()
    return {"Authorization": f"Bearer {body['access_token']}"}, int(body["user"]["tenant_id"])


# --- products -------------------------------------------------------------------------------------------

STATUS_WEIGHTS = {"draft": 30, "published": 45, "sold": 20, "archived": 5}
#: Words sellers put in titles, with how often (per 100 titles) each appears.
TITLE_WORDS = {
    "vintage": 14,
    "oversized": 6,
    "slim fit": 5,
    "cropped": 4,
    "high waist": 4,
    "y2k": 3,
    "retro": 4,
    "brand new with tags": 3,
    "worn once": 5,
    "limited edition": 1,
}
PRODUCT_COLUMNS = (
    "sku",
    "title",
    "description",
    "price",
    "stock_quantity",
    "category",
    "brand",
    "size",
    "color",
    "material",
    "condition",
    "status",
    "published_at",
    "sold_at",
    "deleted_at",
)


@dataclass(frozen=True)
class Catalogue:
    """The reference attributes products are drawn from (codes and English names)."""

    brands: list[tuple[str, str]]  # most popular first
    categories: list[tuple[str, str]]  # leaves only
    colors: list[tuple[str, str]]
    sizes: list[tuple[str, str]]
    materials: list[tuple[str, str]]
    conditions: list[str]

    @classmethod
    def load(cls, *, ebay_mapped: bool = False) -> Catalogue:
        """Read ops/config/reference_data; `ebay_mapped` keeps only codes the eBay mapper can send."""
        attributes = load_attributes()
        ebay = load_platform_mappings()["ebay"] if ebay_mapped else None

        def pairs(kind: str, mapping_kind: str | None = None) -> list[tuple[str, str]]:
            codes = [(record.code, record.name_en) for record in attributes[kind]]
            if ebay is not None and mapping_kind is not None:
                codes = [(code, name) for code, name in codes if code in ebay.get(mapping_kind, {})]
            return codes

        parents = {record.parent for record in attributes["categories"] if record.parent}
        leaves = [(code, name) for code, name in pairs("categories", "categories") if code not in parents]
        if ebay is not None:
            # The generated products have no gender: leave out categories eBay files by gender.
            gendered = {
                code
                for code, fields in ebay.get("categories", {}).items()
                if "category_id_by_gender" in fields
            }
            leaves = [(code, name) for code, name in leaves if code not in gendered]
        return cls(
            brands=pairs("brands", "brands"),
            categories=leaves,
            colors=pairs("colors", "colors"),
            sizes=pairs("sizes", "sizes"),
            materials=pairs("materials", "materials"),
            conditions=[code for code, _ in pairs("conditions", "conditions")],
        )


def _zipf_weights(count: int, exponent: float = 1.0) -> list[float]:
    return [1 / (rank + 1) ** exponent for rank in range(count)]


def generate_products(
    count: int, rng: random.Random, catalogue: Catalogue, *, all_drafts: bool = False
) -> list[tuple[Any, ...]]:
    """Rows for PRODUCT_COLUMNS: brands Zipf-distributed, SKUs unique, a few percent soft-deleted."""
    brand_weights = _zipf_weights(len(catalogue.brands))
    now = dt.datetime.now(dt.UTC)
    words = list(TITLE_WORDS)
    word_weights = [TITLE_WORDS[word] for word in words]
    sku_numbers = rng.sample(range(10_000_000, 99_999_999), count)
    rows: list[tuple[Any, ...]] = []
    for index in range(count):
        brand_code, brand_name = rng.choices(catalogue.brands, brand_weights)[0]
        category_code, category_name = rng.choice(catalogue.categories)
        color_code, color_name = rng.choice(catalogue.colors)
        size_code, size_name = rng.choice(catalogue.sizes)
        material_code, material_name = rng.choice(catalogue.materials)
        extra = rng.choices(words, word_weights)[0] if rng.random() < 0.49 else ""
        title = " ".join(
            part for part in (brand_name, extra, category_name.lower(), color_name.lower(), size_name) if part
        )[:100]
        status = (
            "draft" if all_drafts else rng.choices(list(STATUS_WEIGHTS), list(STATUS_WEIGHTS.values()))[0]
        )
        published_at = now if status in ("published", "sold") else None
        sold_at = now if status == "sold" else None
        deleted_at = now if not all_drafts and rng.random() < 0.02 else None
        rows.append(
            (
                f"{category_code[:3].upper()}-{sku_numbers[index]}",
                title,
                f"{title}. {material_name} — measured flat, smoke-free home, ships in 48h.",
                Decimal(rng.randrange(300, 15_000)) / 100,
                0 if status == "sold" else 1,
                category_code,
                brand_code,
                size_code,
                color_code,
                material_code,
                rng.choice(catalogue.conditions),
                status,
                published_at,
                sold_at,
                deleted_at,
            )
        )
    return rows


async def copy_products(connection: asyncpg.Connection, schema: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """Bulk-load products straight into a tenant schema (COPY)."""
    await connection.copy_records_to_table(
        "products", schema_name=schema, records=rows, columns=list(PRODUCT_COLUMNS)
    )


async def add_images(connection: asyncpg.Connection, schema: str, product_ids: Sequence[int]) -> None:
    """Give each product one image row (the eBay mapper needs a picture; no file is read)."""
    await connection.copy_records_to_table(
        "product_images",
        schema_name=schema,
        records=[(pid, f"bench/{pid}/1.jpg", 0, 1200, 1600, "0" * 64) for pid in product_ids],
        columns=["product_id", "storage_key", "display_order", "width", "height", "content_sha256"],
    )


# --- measurement ----------------------------------------------------------------------------------------


def percentile(samples: Sequence[float], fraction: float) -> float:
    """Linear-interpolated percentile (`fraction` in 0..1) of a non-empty sample."""
    ordered = sorted(samples)
    if not ordered:
        raise ValueError("no samples")
    position = (len(ordered) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU time used so far by these processes (vanished ones count 0)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _CLOCK_TICKS


def pids_named(name: str) -> list[int]:
    """Every process whose command name starts with `name` (e.g. all PostgreSQL backends)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip().startswith(name):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def machine_info() -> str:
    """One line: CPU model, cores, memory, OS, Python."""
    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        match = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.MULTILINE)
        if match:
            model = match.group(1).strip()
    cores = str(os.cpu_count())
    nproc = shutil.which("nproc")
    if nproc:
        found = subprocess.run([nproc], capture_output=True, text=True, check=False)
        cores = found.stdout.strip() or cores
    memory = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        match = re.search(r"^MemTotal:\s*(\d+) kB", meminfo.read_text(), re.MULTILINE)
        if match:
            memory = f", {int(match.group(1)) / 1024 / 1024:.0f} GiB RAM"
    return (
        f"{model}, {cores} cores (nproc){memory}; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}"
    )


async def service_versions(database_url: str, redis_url: str) -> str:
    """PostgreSQL and Redis server versions."""
    connection = await asyncpg.connect(plain_dsn(database_url))
    try:
        postgres = str(await connection.fetchval("SHOW server_version"))
    finally:
        await connection.close()
    client = Redis.from_url(redis_url)
    try:
        info = await client.info("server")
    finally:
        await client.aclose()
    return f"PostgreSQL {postgres.split()[0]}, Redis {info.get('redis_version', '?')}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_section(name: str, body: str) -> None:
    """Replace (or append) the `name` section of RESULTS.md, between its markers."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    block = f"{start}\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + f"\n\n{block}\n"
    RESULTS.write_text(text if text.endswith("\n") else text + "\n")


def today() -> str:
    return dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
