"""The reference plugin client against the real gateway and the Vinted sandbox, both on real sockets.

Tasks are written straight into the tenant's queue (a `waiting_plugin` job plus its plugin task), as the
Vinted pool would; the client then claims them over HTTP, runs them against the sandbox and reports.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from PIL import Image
from sqlalchemy import text

from ops.config.settings import Settings
from ops.tools.plugin_client import BackoffPolicy, GapRange, PluginClient, PluginClientConfig, SendWindow
from ops.tools.plugin_client.api import StoflowApi
from ops.tools.plugin_client.memory import TaskMemory, state_file_for
from ops.tools.sandbox.app import create_sandbox_app
from persistence import plugin_tasks, queue
from persistence.database import Database, connect_database
from persistence.tenancy import tenant_transaction
from tests.support import PASSWORD, bearer, register, unique_email

NO_GAP = GapRange(0, 0)
ITEM_PATH = "/api/v2/item_upload/items"


def _serve(app: Any) -> tuple[uvicorn.Server, threading.Thread, socket.socket, int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="critical", ws="none", http="h11", timeout_graceful_shutdown=1, log_config=None
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    return server, thread, sock, port


def _stop(server: uvicorn.Server, thread: threading.Thread, sock: socket.socket) -> None:
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    server, thread, sock, port = _serve(create_sandbox_app())
    yield f"http://127.0.0.1:{port}"
    _stop(server, thread, sock)


@pytest.fixture(scope="module")
def gateway_url(migrated: Settings) -> Iterator[str]:
    """The real gateway on a socket, so long polls, signed image URLs and reports go over HTTP."""
    from gateway.app import create_app
    from tests.tenant_schemas import replayed_tenant_migration

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    settings = migrated.model_copy(update={"public_base_url": f"http://127.0.0.1:{port}"})
    config = uvicorn.Config(
        create_app(settings, tenant_migrator=replayed_tenant_migration),
        host="127.0.0.1",
        port=port,
        log_level="critical",
        ws="none",
        http="h11",
        timeout_graceful_shutdown=1,
        log_config=None,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the gateway did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
async def sandbox(sandbox_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sandbox_url) as control:
        assert (await control.post("/_sandbox/reset")).status_code == 200
        yield control


@pytest.fixture
async def api(gateway_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as http:
        yield http


@pytest.fixture
async def db(migrated: Settings) -> AsyncIterator[Database]:
    database = connect_database(migrated.async_database_url, pool_size=2)
    yield database
    await database.dispose()


@dataclass
class Tenant:
    email: str
    tenant_id: int
    headers: dict[str, str]
    account_id: int
    member: int
    product_id: int
    image_url: str


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), "teal").save(out, "JPEG")
    return out.getvalue()


@pytest.fixture
async def tenant(api: httpx.AsyncClient) -> Tenant:
    email = unique_email("plugin")
    body = await register(api, email)
    headers = bearer(body)
    member = 90_000_000 + uuid.uuid4().int % 1_000_000
    account = await api.post(
        "/api/integrations/vinted/accounts",
        json={"vinted_user_id": str(member), "username": "seller"},
        headers=headers,
    )
    assert account.status_code == 201, account.text
    product = await api.post(
        "/api/products", json={"title": "Pull en laine", "price": "19.90"}, headers=headers
    )
    assert product.status_code == 201, product.text
    image = await api.post(
        f"/api/products/{product.json()['id']}/images",
        files={"file": ("pull.jpg", _jpeg(), "image/jpeg")},
        headers=headers,
    )
    assert image.status_code == 201, image.text
    return Tenant(
        email=email,
        tenant_id=int(body["user"]["tenant_id"]),
        headers=headers,
        account_id=int(account.json()["id"]),
        member=member,
        product_id=int(product.json()["id"]),
        image_url=image.json()["url"],
    )


def publish_requests(image_url: str, title: str = "Pull en laine") -> list[dict[str, Any]]:
    """The requests the Vinted pool writes for a publish with one photo."""
    item = {
        "id": None,
        "currency": "EUR",
        "title": title,
        "description": "Très bon état, porté deux fois.",
        "brand_id": 53,
        "size_id": 206,
        "catalog_id": 5,
        "status_id": 2,
        "package_size_id": 1,
        "price": 19.9,
        "color_ids": [12],
        "assigned_photos": [{"id": {"$ref": "responses[0].id"}, "orientation": 0}],
    }
    return [
        {
            "method": "POST",
            "path": "/api/v2/photos",
            "body": {
                "photo": {"type": "item", "temp_uuid": str(uuid.uuid4())},
                "$upload": {"field": "photo[file]", "url": image_url},
            },
        },
        {"method": "POST", "path": ITEM_PATH, "body": {"item": item, "feedback_id": None, "parcel": None}},
    ]


async def queue_task(db: Database, settings: Settings, tenant: Tenant, requests: list[dict[str, Any]]) -> str:
    """Write a `waiting_plugin` publish job and its plugin task, as the Vinted pool does."""
    async with tenant_transaction(
        db.session_factory, settings.tenant_schema_prefix, tenant.tenant_id
    ) as session:
        job = await queue.enqueue_job(
            session,
            tenant_id=tenant.tenant_id,
            platform="vinted",
            action="publish",
            product_id=tenant.product_id,
            payload={"vinted_account_id": tenant.account_id},
        )
        await session.execute(
            text("UPDATE plugin_queue SET status = 'waiting_plugin' WHERE id = :id"), {"id": job.id}
        )
        task = await plugin_tasks.create_task(
            session,
            tenant_id=tenant.tenant_id,
            job_id=job.id,
            vinted_account_id=tenant.account_id,
            vinted_user_id=str(tenant.member),
            operation="create_item",
            requests=requests,
        )
        return str(task.id)


async def task_row(db: Database, settings: Settings, tenant: Tenant, task_id: str) -> dict[str, Any]:
    async with tenant_transaction(
        db.session_factory, settings.tenant_schema_prefix, tenant.tenant_id
    ) as session:
        row = (
            await session.execute(
                text(
                    "SELECT t.result, t.finished_at, t.lease_id, t.leases, q.status AS job_status "
                    "FROM plugin_tasks t JOIN plugin_queue q ON q.id = t.job_id WHERE t.id = :id"
                ),
                {"id": uuid.UUID(task_id)},
            )
        ).one()
        return dict(row._mapping)


async def expire_leases(db: Database, settings: Settings, tenant: Tenant) -> None:
    """Move every live lease into the past: as if 60 s went by without a heartbeat."""
    async with tenant_transaction(
        db.session_factory, settings.tenant_schema_prefix, tenant.tenant_id
    ) as session:
        await session.execute(
            text(
                "UPDATE plugin_tasks SET lease_expires_at = now() - interval '1 second' "
                "WHERE finished_at IS NULL AND lease_id IS NOT NULL"
            )
        )


def client_for(
    tenant: Tenant,
    gateway_url: str,
    sandbox_url: str,
    state_dir: Path,
    *,
    backoff: BackoffPolicy | None = None,
    write_gap: GapRange = NO_GAP,
    vinted_limit: int | None = None,
    vinted_window: float | None = None,
) -> PluginClient:
    return PluginClient(
        PluginClientConfig(
            api_url=gateway_url,
            email=tenant.email,
            password=PASSWORD,
            vinted_url=sandbox_url,
            state_dir=state_dir,
            write_gap=write_gap,
            read_gap=NO_GAP,
            backoff=backoff or BackoffPolicy(),
            sandbox_login=True,
            poll_wait=1,
            heartbeat_seconds=0.2,
            retry_seconds=0.05,
            vinted_limit=vinted_limit,
            vinted_window=vinted_window,
        )
    )


async def vinted_requests(sandbox: httpx.AsyncClient, **filters: str) -> list[dict[str, Any]]:
    response = await sandbox.get("/_sandbox/requests", params={"platform": "vinted", **filters})
    requests: list[dict[str, Any]] = response.json()["requests"]
    return requests


async def test_a_publish_task_uploads_the_photo_creates_the_item_and_reports_success(
    tenant: Tenant,
    db: Database,
    migrated: Settings,
    sandbox: httpx.AsyncClient,
    gateway_url: str,
    sandbox_url: str,
    tmp_path: Path,
) -> None:
    task_id = await queue_task(db, migrated, tenant, publish_requests(tenant.image_url))
    client = client_for(tenant, gateway_url, sandbox_url, tmp_path, write_gap=GapRange(0.2, 0.3))

    summary = await client.run(until_idle=True)

    assert (summary.ran, summary.reported, summary.re_reported, summary.deferred) == (1, 1, 0, 0)
    items = (await sandbox.get("/_sandbox/vinted/items", params={"user_id": tenant.member})).json()
    [item] = items["users"][str(tenant.member)]["items"]
    assert item["title"] == "Pull en laine"
    [photo] = item["photos"]
    assert photo["byte_size"] == len((await httpx.AsyncClient().get(tenant.image_url)).content) > 0
    row = await task_row(db, migrated, tenant, task_id)
    assert row["finished_at"] is not None
    assert row["result"]["status"] == "success"
    assert [r["http_status"] for r in row["result"]["responses"]] == [200, 200]
    assert row["result"]["responses"][-1]["body"]["item"]["id"] == item["id"]
    assert row["result"]["responses"][0]["body"]["id"] == photo["id"]
    assert row["job_status"] == "pending"  # handed back to the Vinted pool to finish from the result
    # Like a browser: the home page first, then the writes, each after the minimum write gap.
    sent = await vinted_requests(sandbox)
    assert [(r["method"], r["path"]) for r in sent] == [
        ("GET", "/"),
        ("POST", "/api/v2/photos"),
        ("POST", ITEM_PATH),
    ]
    assert all(r["account"] == str(tenant.member) for r in sent)
    # The writes carry the Vinted site's own origin, as the page's requests do (others are refused).
    assert [r["origin"] for r in sent[1:]] == [sandbox_url, sandbox_url]
    assert sent[2]["at"] - sent[1]["at"] >= 0.2
    # Paced by the account's limit and window as the gateway gives them, its sends logged on disk.
    assert client.send_windows[tenant.account_id] == SendWindow(
        migrated.vinted_rate_limit, float(migrated.vinted_rate_window_seconds)
    )
    memory = TaskMemory(state_file_for(tmp_path, tenant.email))
    memory.open()
    record = memory.get(task_id)
    memory.close()
    assert record is not None and record.reported_at is not None and record.result is not None
    assert {**record.result, "error": None} == row["result"]


async def test_a_task_that_ran_before_a_crash_is_reported_from_disk_and_not_run_again(
    tenant: Tenant,
    db: Database,
    migrated: Settings,
    sandbox: httpx.AsyncClient,
    gateway_url: str,
    sandbox_url: str,
    api: httpx.AsyncClient,
    tmp_path: Path,
) -> None:
    task_id = await queue_task(db, migrated, tenant, publish_requests(tenant.image_url))
    # The first client claimed it, sent both requests, saved both answers, and died before reporting.
    claim = await api.get("/api/plugin/tasks", params={"wait": 0, "limit": 1}, headers=tenant.headers)
    [task] = claim.json()["tasks"]
    photo = {"http_status": 200, "body": {"id": 8123}}
    created = {
        "http_status": 200,
        "body": {"item": {"id": 4000123, "url": "https://www.vinted.fr/items/4000123"}},
    }
    memory = TaskMemory(state_file_for(tmp_path, tenant.email))
    memory.open()
    memory.begin(
        task_id,
        job_id=task["job_id"],
        operation="create_item",
        vinted_account_id=tenant.account_id,
        lease_id=task["lease_id"],
        request_count=2,
    )
    memory.add_response(task_id, photo)
    memory.add_response(task_id, created)
    memory.close()
    await expire_leases(db, migrated, tenant)

    summary = await client_for(tenant, gateway_url, sandbox_url, tmp_path).run(until_idle=True)

    assert (summary.ran, summary.recovered, summary.reported) == (0, 1, 1)
    assert await vinted_requests(sandbox) == []
    row = await task_row(db, migrated, tenant, task_id)
    assert row["result"] == {"status": "success", "responses": [photo, created], "error": None}


async def test_a_task_handed_out_again_is_re_reported_with_its_new_lease(
    tenant: Tenant,
    db: Database,
    migrated: Settings,
    sandbox: httpx.AsyncClient,
    gateway_url: str,
    sandbox_url: str,
    tmp_path: Path,
) -> None:
    task_id = await queue_task(db, migrated, tenant, publish_requests(tenant.image_url))
    # A run cut short after the photo upload, whose lease the server no longer accepts.
    photo = {"http_status": 200, "body": {"id": 8124}}
    memory = TaskMemory(state_file_for(tmp_path, tenant.email))
    memory.open()
    memory.begin(
        task_id,
        job_id=str(uuid.uuid4()),
        operation="create_item",
        vinted_account_id=tenant.account_id,
        lease_id=str(uuid.uuid4()),
        request_count=2,
    )
    memory.add_response(task_id, photo)
    memory.close()

    summary = await client_for(tenant, gateway_url, sandbox_url, tmp_path).run(until_idle=True)

    assert (summary.ran, summary.recovered, summary.re_reported, summary.reported) == (0, 1, 1, 1)
    assert await vinted_requests(sandbox) == []
    row = await task_row(db, migrated, tenant, task_id)
    result = row["result"]
    assert result["status"] == "error"
    assert result["error"]["code"] == "interrupted"
    assert [r["http_status"] for r in result["responses"]] == [200, 0]
    assert row["lease_id"] is not None and str(row["lease_id"]) == row["leases"][-1]


async def test_a_429_is_reported_and_the_account_backs_off_before_its_next_task(
    tenant: Tenant,
    db: Database,
    migrated: Settings,
    sandbox: httpx.AsyncClient,
    gateway_url: str,
    sandbox_url: str,
    tmp_path: Path,
) -> None:
    first = await queue_task(db, migrated, tenant, publish_requests(tenant.image_url, "Premier"))
    second = await queue_task(db, migrated, tenant, publish_requests(tenant.image_url, "Second"))
    fault = {
        "platform": "vinted",
        "kind": "rate_limit",
        "path_prefix": ITEM_PATH,
        "count": 1,
        "retry_after": 0,
    }
    assert (await sandbox.post("/_sandbox/faults", json=fault)).status_code == 201
    backoff = BackoffPolicy(rate_limited=0.6, challenge=60)
    client = client_for(tenant, gateway_url, sandbox_url, tmp_path, backoff=backoff)

    summary = await client.run(until_idle=True)

    assert (summary.ran, summary.released) == (1, 1)
    result = (await task_row(db, migrated, tenant, first))["result"]
    assert result["status"] == "error"
    assert [r["http_status"] for r in result["responses"]] == [200, 429]
    assert result["error"]["code"] == "rate_limited"
    state = client.backoff_of(tenant.account_id)
    assert state is not None and state.streak == 1
    assert 0 < state.backoff_until - time.time() <= 0.6
    untouched = await task_row(db, migrated, tenant, second)
    assert untouched["finished_at"] is None
    assert len(await vinted_requests(sandbox, path_prefix="/api/v2/photos")) == 1  # the second never started

    # Once the backoff is over (and the unstarted task's lease has lapsed) the account works again.
    await expire_leases(db, migrated, tenant)
    await asyncio.sleep(max(state.backoff_until - time.time(), 0) + 0.05)
    summary = await client.run(until_idle=True)

    assert (summary.ran, summary.reported) == (1, 1)
    assert (await task_row(db, migrated, tenant, second))["result"]["status"] == "success"
    assert client.backoff_of(tenant.account_id) is None
    assert client.memory.accounts == {}  # a success ends the streak


async def test_an_anti_bot_challenge_backs_the_account_off_for_30_minutes(
    tenant: Tenant,
    db: Database,
    migrated: Settings,
    sandbox: httpx.AsyncClient,
    gateway_url: str,
    sandbox_url: str,
    tmp_path: Path,
) -> None:
    task_id = await queue_task(db, migrated, tenant, publish_requests(tenant.image_url))
    fault = {"platform": "vinted", "kind": "antibot", "path_prefix": ITEM_PATH, "mode": "datadome"}
    assert (await sandbox.post("/_sandbox/faults", json=fault)).status_code == 201
    client = client_for(tenant, gateway_url, sandbox_url, tmp_path)
    started = time.time()

    summary = await client.run(until_idle=True)

    assert summary.ran == 1
    result = (await task_row(db, migrated, tenant, task_id))["result"]
    assert [r["http_status"] for r in result["responses"]] == [200, 403]
    assert "captcha" in result["responses"][-1]["body"]["url"]
    assert result["error"]["code"] == "antibot_challenge"
    state = client.backoff_of(tenant.account_id)
    assert state is not None and state.streak == 1
    assert 30 * 60 <= state.backoff_until - started <= 30 * 60 + 30
    # The backoff is on disk: a restarted client claims nothing until it ends.
    again = await client_for(tenant, gateway_url, sandbox_url, tmp_path).run(until_idle=True)
    assert (again.ran, again.released) == (0, 0)


async def test_the_task_is_on_disk_before_its_first_request_and_a_kill_mid_task_never_repeats_it(
    tenant: Tenant,
    db: Database,
    migrated: Settings,
    sandbox: httpx.AsyncClient,
    gateway_url: str,
    sandbox_url: str,
    tmp_path: Path,
) -> None:
    task_id = await queue_task(db, migrated, tenant, publish_requests(tenant.image_url))
    fault = {"platform": "vinted", "kind": "latency", "path_prefix": "/api/v2/photos", "delay_seconds": 5}
    assert (await sandbox.post("/_sandbox/faults", json=fault)).status_code == 201
    run = asyncio.create_task(client_for(tenant, gateway_url, sandbox_url, tmp_path).run(until_idle=True))
    deadline = time.monotonic() + 10
    while not await vinted_requests(sandbox, path_prefix="/api/v2/photos"):
        assert time.monotonic() < deadline and not run.done()
        await asyncio.sleep(0.02)

    state = json.loads(state_file_for(tmp_path, tenant.email).read_text())
    assert state["tasks"][task_id]["responses"] == []  # written before the upload left
    run.cancel()  # killed while the upload is in flight
    with pytest.raises(asyncio.CancelledError):
        await run
    await expire_leases(db, migrated, tenant)

    summary = await client_for(tenant, gateway_url, sandbox_url, tmp_path).run(until_idle=True)

    assert (summary.ran, summary.recovered) == (0, 1)
    assert len(await vinted_requests(sandbox, method="POST")) == 1  # the upload was never sent again
    result = (await task_row(db, migrated, tenant, task_id))["result"]
    assert result["status"] == "error"
    assert result["error"]["code"] == "interrupted"
    assert [r["http_status"] for r in result["responses"]] == [0]


def _busiest_window(times: list[float], length: float) -> int:
    """The most moments any half-open window `[t, t + length)` holds."""
    ordered = sorted(times)
    return max(
        (sum(1 for other in ordered if moment <= other < moment + length) for moment in ordered), default=0
    )


async def test_the_client_never_sends_more_than_the_limit_in_a_window_even_across_a_restart(
    tenant: Tenant,
    db: Database,
    migrated: Settings,
    sandbox: httpx.AsyncClient,
    gateway_url: str,
    sandbox_url: str,
    tmp_path: Path,
) -> None:
    limit, window = 3, 2.0
    wardrobe = [{"method": "GET", "path": f"/api/v2/wardrobe/{tenant.member}/items"}]
    for _ in range(4):
        await queue_task(db, migrated, tenant, wardrobe)
    client = client_for(tenant, gateway_url, sandbox_url, tmp_path, vinted_limit=limit, vinted_window=window)

    summary = await client.run(until_idle=True)

    assert (summary.ran, summary.reported, summary.deferred) == (4, 4, 0)
    sent = await vinted_requests(sandbox, account=str(tenant.member))
    # The home page that opens the session is a request to Vinted too: 1 + 4, in three windows.
    assert [r["path"] for r in sent].count(wardrobe[0]["path"]) == 4 and len(sent) == 5, sent
    moments = [float(r["at"]) for r in sent]
    assert _busiest_window(moments, window) <= limit, [round(m - moments[0], 3) for m in moments]
    assert max(moments) - min(moments) >= window

    # A new client (a restarted browser) reads the sends from disk: its own first sends wait too.
    await queue_task(db, migrated, tenant, wardrobe)
    again = client_for(tenant, gateway_url, sandbox_url, tmp_path, vinted_limit=limit, vinted_window=window)
    assert (await again.run(until_idle=True)).ran == 1
    sent = await vinted_requests(sandbox, account=str(tenant.member))
    assert len(sent) == 7, sent
    moments = [float(r["at"]) for r in sent]
    assert _busiest_window(moments, window) <= limit, [round(m - moments[0], 3) for m in moments]
    memory = TaskMemory(state_file_for(tmp_path, tenant.email))
    memory.open()
    assert 0 < len(memory.sends[tenant.account_id]) <= limit
    memory.close()


async def test_a_refused_access_token_is_refreshed(gateway_url: str, tenant: Tenant) -> None:
    api = StoflowApi(gateway_url, tenant.email, PASSWORD)
    try:
        await api.login()
        api._access_token = "forged"  # as if it had expired

        response = await api.call("GET", "/api/plugin/tasks", params={"wait": 0})

        assert response.status_code == 200
        assert api._access_token != "forged"
    finally:
        await api.aclose()


async def test_stoflow_plugin_command_drains_the_queue(
    tenant: Tenant,
    db: Database,
    migrated: Settings,
    sandbox: httpx.AsyncClient,
    gateway_url: str,
    sandbox_url: str,
    tmp_path: Path,
) -> None:
    task_id = await queue_task(db, migrated, tenant, publish_requests(tenant.image_url))
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL", "VINTED_API_BASE", "PUBLIC_BASE_URL"}
    }
    env.update({"STOFLOW_PLUGIN_PASSWORD": PASSWORD, "LOG_FORMAT": "json"})
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ops",
        "plugin",
        "--api-url",
        gateway_url,
        "--email",
        tenant.email,
        "--vinted-url",
        sandbox_url,
        "--write-gap",
        "0-0",
        "--read-gap",
        "0-0",
        "--state-dir",
        str(tmp_path),
        "--poll-wait",
        "1",
        "--vinted-limit",
        "5",
        "--vinted-window",
        "3",
        "--until-idle",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)

    assert process.returncode == 0, stderr.decode()
    assert "ran 1," in stdout.decode()
    assert PASSWORD not in stderr.decode() + stdout.decode()
    assert (await task_row(db, migrated, tenant, task_id))["result"]["status"] == "success"
    assert state_file_for(tmp_path, tenant.email).exists()
