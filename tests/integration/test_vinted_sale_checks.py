"""The Vinted sale check: a `check_sales` job that reads the member's sold orders through the plugin.

Real parts on real sockets: the gateway, the Vinted sandbox, a dispatcher and the Vinted worker (its real
adapter and the Redis limiter), eBay and Etsy pools on the in-memory fake marketplace, and the reference
plugin client running the tasks against the sandbox. The module's budget is small (6 requests per window,
3 of them for sale checks) so the share and the reserve for waiting publications are reached quickly.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from redis.asyncio import Redis
from sqlalchemy import text

from domain.sales import OrderLine, SaleSource
from ops.adapters.rate_limit import SlidingWindowLimiter, vinted_member_key, vinted_sale_check_key
from ops.config.settings import Settings
from ops.tools.plugin_client import BackoffPolicy, GapRange, PluginClient, PluginClientConfig
from ops.tools.sandbox.app import create_sandbox_app
from persistence import plugin_tasks, queue, sales
from persistence.database import Database, connect_database
from persistence.tenancy import tenant_transaction
from tests.integration.test_pipeline import FakeMarketplace
from tests.integration.test_plugin_client import _serve, _stop
from tests.integration.test_plugin_queue import _vinted_product
from tests.integration.test_sales import ETSY_CONNECTION, database_tier
from tests.pipeline_support import EBAY_CONNECTION, running_pipeline, wait_for_job
from tests.support import PASSWORD, bearer, register, unique_email
from workers.context import build_worker_app
from workers.sale_checks import ADOPTION_KEY, VintedSaleChecks, queue_vinted_sale_checks

LIMIT = 6
SHARE = 3
NO_GAP = GapRange(0, 0)


@pytest.fixture(scope="module")
def check_settings(migrated: Settings) -> Settings:
    """The module's settings; the gateway's port is chosen here so workers sign image URLs it serves."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return migrated.model_copy(
        update={
            "vinted_rate_limit": LIMIT,
            "vinted_sale_check_share": SHARE,
            "plugin_task_max_age": 3,
            "public_base_url": f"http://127.0.0.1:{port}",
        }
    )


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    server, thread, sock, port = _serve(create_sandbox_app())
    yield f"http://127.0.0.1:{port}"
    _stop(server, thread, sock)


@pytest.fixture(scope="module")
def gateway_url(check_settings: Settings) -> Iterator[str]:
    from gateway.app import create_app
    from tests.tenant_schemas import replayed_tenant_migration

    port = int(check_settings.public_base_url.rsplit(":", 1)[1])
    config = uvicorn.Config(
        create_app(check_settings, tenant_migrator=replayed_tenant_migration),
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
    yield check_settings.public_base_url
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
async def api(gateway_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as http:
        yield http


@pytest.fixture
async def sandbox(sandbox_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sandbox_url) as control:
        yield control


@pytest.fixture
async def db(migrated: Settings) -> AsyncIterator[Database]:
    database = connect_database(migrated.async_database_url, pool_size=4)
    yield database
    await database.dispose()


@pytest.fixture
async def redis(migrated: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(migrated.required_redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def pipelines(check_settings: Settings, sandbox_url: str) -> AsyncIterator[FakeMarketplace]:
    """The Vinted pool (real adapter, sale checks enqueued by the test) and eBay/Etsy on the fake."""
    market = FakeMarketplace()
    settings = check_settings.model_copy(update={"vinted_api_base": sandbox_url})
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(running_pipeline(settings, "vinted", None, check_sales=False))
        await stack.enter_async_context(running_pipeline(settings, "ebay", market))
        await stack.enter_async_context(running_pipeline(settings, "etsy", market))
        yield market


class Seller:
    def __init__(self, email: str, headers: dict[str, str], tenant_id: int, account_id: int, member: str):
        self.email = email
        self.headers = headers
        self.tenant_id = tenant_id
        self.account_id = account_id
        self.member = member


async def _seller(api: httpx.AsyncClient, db: Database, *, marketplaces: bool = True) -> Seller:
    email = unique_email("vinted-check")
    body = await register(api, email)
    headers = bearer(body)
    tenant_id = int(body["user"]["tenant_id"])
    await database_tier(db, tenant_id, "pro")
    member = str(80_000_000 + uuid.uuid4().int % 10_000_000)
    account = await api.post(
        "/api/integrations/vinted/accounts",
        json={"vinted_user_id": int(member), "username": "seller"},
        headers=headers,
    )
    assert account.status_code == 201, account.text
    if marketplaces:
        for platform, connection in (("ebay", EBAY_CONNECTION), ("etsy", ETSY_CONNECTION)):
            response = await api.put(f"/api/integrations/{platform}", json=connection, headers=headers)
            assert response.status_code == 200, response.text
    return Seller(email, headers, tenant_id, int(account.json()["id"]), member)


def _plugin(seller: Seller, gateway_url: str, sandbox_url: str, state_dir: Path) -> PluginClient:
    return PluginClient(
        PluginClientConfig(
            api_url=gateway_url,
            email=seller.email,
            password=PASSWORD,
            vinted_url=sandbox_url,
            state_dir=state_dir,
            write_gap=NO_GAP,
            read_gap=NO_GAP,
            backoff=BackoffPolicy(),
            sandbox_login=True,
            poll_wait=1,
            heartbeat_seconds=0.2,
            retry_seconds=0.05,
            vinted_limit=1000,
            vinted_window=60,
        )
    )


async def _drain_until(
    api: httpx.AsyncClient, plugin: PluginClient, seller: Seller, job_id: str, *, timeout: float = 30
) -> dict[str, Any]:
    """Let the plugin run whatever is ready until the job finishes (a check may need two tasks)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        job = (await api.get(f"/api/jobs/{job_id}", headers=seller.headers)).json()
        if job["status"] in ("succeeded", "failed", "cancelled", "rate_limited"):
            return dict(job)
        if job["status"] == "waiting_plugin":
            await plugin.run(until_idle=True)
        await asyncio.sleep(0.1)
    raise AssertionError(f"the job {job_id} did not finish: {job}")


async def _check(db: Database, settings: Settings, seller: Seller) -> str:
    """What the scheduler does when the member's check comes due: one `check_sales` job per account."""
    async with tenant_transaction(db.session_factory, settings.tenant_schema_prefix, seller.tenant_id) as s:
        assert await queue_vinted_sale_checks(s, seller.tenant_id, seller.member) == 1
        job_id = await s.scalar(
            text(
                "SELECT id FROM plugin_queue WHERE action = 'check_sales' AND status = 'pending' "
                "ORDER BY created_at DESC LIMIT 1"
            )
        )
    return str(job_id)


async def _live_everywhere(api: httpx.AsyncClient, plugin: PluginClient, seller: Seller) -> dict[str, Any]:
    product = await _vinted_product(api, seller.headers)
    accepted = await api.post(
        f"/api/products/{product['id']}/publications",
        json={"platforms": ["vinted", "ebay", "etsy"]},
        headers=seller.headers,
    )
    assert accepted.status_code == 202, accepted.text
    for job in accepted.json()["jobs"]:
        if job["platform"] == "vinted":
            finished = await _drain_until(api, plugin, seller, job["id"])
        else:
            finished = await wait_for_job(api, seller.headers, job["id"])
        assert finished["status"] == "succeeded", finished
    detail = (await api.get(f"/api/products/{product['id']}", headers=seller.headers)).json()
    assert {row["platform"]: row["status"] for row in detail["listings"]} == {
        "vinted": "live",
        "ebay": "live",
        "etsy": "live",
    }
    return dict(detail)


async def _live_on_vinted(api: httpx.AsyncClient, plugin: PluginClient, seller: Seller) -> dict[str, Any]:
    product = await _vinted_product(api, seller.headers)
    [job] = (
        await api.post(
            f"/api/products/{product['id']}/publications",
            json={"platforms": ["vinted"]},
            headers=seller.headers,
        )
    ).json()["jobs"]
    assert (await _drain_until(api, plugin, seller, job["id"]))["status"] == "succeeded"
    return dict((await api.get(f"/api/products/{product['id']}", headers=seller.headers)).json())


def _item_id(product: dict[str, Any]) -> int:
    return int(next(row["external_id"] for row in product["listings"] if row["platform"] == "vinted"))


async def _my_orders_reads(sandbox: httpx.AsyncClient, member: str) -> int:
    sent = (await sandbox.get("/_sandbox/requests", params={"platform": "vinted"})).json()["requests"]
    return sum(1 for request in sent if request["path"].startswith("/api/v2/my_orders"))


async def test_a_sold_order_read_by_the_check_is_one_sale_that_takes_the_other_listings_down(
    api: httpx.AsyncClient,
    sandbox: httpx.AsyncClient,
    db: Database,
    check_settings: Settings,
    pipelines: FakeMarketplace,
    gateway_url: str,
    sandbox_url: str,
    tmp_path: Path,
) -> None:
    seller = await _seller(api, db)
    plugin = _plugin(seller, gateway_url, sandbox_url, tmp_path)
    product = await _live_everywhere(api, plugin, seller)
    bought = await sandbox.post("/_sandbox/vinted/sales", json={"item_id": _item_id(product)})
    assert bought.status_code == 201, bought.text
    transaction = str(bought.json()["transaction_id"])

    job = await _drain_until(api, plugin, seller, await _check(db, check_settings, seller))

    assert job["status"] == "succeeded" and job["action"] == "check_sales", job
    assert job["result"]["sales"] == 1 and transaction in job["result"]["seen"]
    [sale] = (
        await api.get("/api/sales", params={"product_id": product["id"]}, headers=seller.headers)
    ).json()["items"]
    assert (sale["platform"], sale["order_id"], sale["source"]) == ("vinted", transaction, "poll")
    for outcome in sale["outcomes"]:
        assert outcome["action"] == "delist"
        await wait_for_job(api, seller.headers, outcome["job_id"])
    assert sorted(outcome["platform"] for outcome in sale["outcomes"]) == ["ebay", "etsy"]
    after = (await api.get(f"/api/products/{product['id']}", headers=seller.headers)).json()
    assert after["status"] == "sold" and after["stock_quantity"] == 0
    assert {row["platform"]: row["status"] for row in after["listings"]} == {
        "vinted": "sold",
        "ebay": "delisted",
        "etsy": "delisted",
    }
    # The task the plugin ran is the sale check's: my_orders first, then the new order's transaction.
    async with tenant_transaction(
        db.session_factory, check_settings.tenant_schema_prefix, seller.tenant_id
    ) as session:
        tasks = (
            await session.execute(
                text("SELECT operation, requests FROM plugin_tasks WHERE job_id = :job ORDER BY created_at"),
                {"job": uuid.UUID(job["id"])},
            )
        ).all()
    assert [row.operation for row in tasks] == ["list_sold_orders", "list_sold_orders"]
    assert [request["path"] for row in tasks for request in row.requests] == [
        "/api/v2/my_orders?type=sold&page=1&per_page=50",
        f"/api/v2/transactions/{transaction}",
    ]


async def test_reading_the_same_order_again_records_no_second_sale(
    api: httpx.AsyncClient,
    sandbox: httpx.AsyncClient,
    db: Database,
    check_settings: Settings,
    pipelines: FakeMarketplace,
    gateway_url: str,
    sandbox_url: str,
    tmp_path: Path,
) -> None:
    seller = await _seller(api, db)
    plugin = _plugin(seller, gateway_url, sandbox_url, tmp_path)
    product = await _live_everywhere(api, plugin, seller)
    transaction = (await sandbox.post("/_sandbox/vinted/sales", json={"item_id": _item_id(product)})).json()[
        "transaction_id"
    ]
    first = await _drain_until(api, plugin, seller, await _check(db, check_settings, seller))
    assert first["result"]["sales"] == 1
    reads_before = await _my_orders_reads(sandbox, seller.member)

    second = await _drain_until(api, plugin, seller, await _check(db, check_settings, seller))

    # The order is on the list again: recorded already, so its transaction is not read a second time.
    assert second["status"] == "succeeded" and second["result"]["sales"] == 0, second
    assert await _my_orders_reads(sandbox, seller.member) == reads_before + 1
    # The same line recorded again (a result read twice, a webhook-less duplicate): still one sale.
    async with tenant_transaction(
        db.session_factory, check_settings.tenant_schema_prefix, seller.tenant_id
    ) as session:
        again = await sales.record_order_line(
            session,
            seller.tenant_id,
            OrderLine("vinted", str(_item_id(product)), str(transaction), 1),
            SaleSource.POLL,
        )
    assert again is not None and not again.created
    # The plugin reports the same sale afterwards (it keys it by the item): still the one sale.
    event = await api.post(
        "/api/plugin/events",
        json={"type": "sold", "platform": "vinted", "external_id": str(_item_id(product))},
        headers=seller.headers,
    )
    assert event.status_code == 202, event.text
    listed = (
        await api.get("/api/sales", params={"product_id": product["id"]}, headers=seller.headers)
    ).json()["items"]
    assert len(listed) == 1
    after = (await api.get(f"/api/products/{product['id']}", headers=seller.headers)).json()
    assert after["oversold"] is False and after["stock_quantity"] == 0


async def test_a_sale_the_plugin_reported_first_is_not_recorded_again_by_the_check(
    api: httpx.AsyncClient,
    sandbox: httpx.AsyncClient,
    db: Database,
    check_settings: Settings,
    pipelines: FakeMarketplace,
    gateway_url: str,
    sandbox_url: str,
    tmp_path: Path,
) -> None:
    seller = await _seller(api, db, marketplaces=False)
    plugin = _plugin(seller, gateway_url, sandbox_url, tmp_path)
    # Two items of the same title: the check reads the sold order's transaction (its title is still
    # listed, by the second item) and finds the item whose sale the plugin already reported.
    sold, twin = [await _live_on_vinted(api, plugin, seller) for _ in range(2)]
    await sandbox.post("/_sandbox/vinted/sales", json={"item_id": _item_id(sold)})
    event = await api.post(
        "/api/plugin/events",
        json={"type": "sold", "platform": "vinted", "external_id": str(_item_id(sold))},
        headers=seller.headers,
    )
    assert event.status_code == 202, event.text

    job = await _drain_until(api, plugin, seller, await _check(db, check_settings, seller))

    assert job["status"] == "succeeded" and job["result"]["sales"] == 0, job
    [sale] = (await api.get("/api/sales", params={"product_id": sold["id"]}, headers=seller.headers)).json()[
        "items"
    ]
    assert sale["source"] == "plugin"
    after = (await api.get(f"/api/products/{sold['id']}", headers=seller.headers)).json()
    assert after["oversold"] is False and after["status"] == "sold"
    untouched = (await api.get(f"/api/products/{twin['id']}", headers=seller.headers)).json()
    assert untouched["status"] == "published" and untouched["stock_quantity"] == 1


async def test_the_checks_never_spend_more_than_their_share_of_the_window(
    api: httpx.AsyncClient,
    sandbox: httpx.AsyncClient,
    db: Database,
    redis: Redis,
    check_settings: Settings,
    pipelines: FakeMarketplace,
    gateway_url: str,
    sandbox_url: str,
    tmp_path: Path,
) -> None:
    seller = await _seller(api, db, marketplaces=False)
    plugin = _plugin(seller, gateway_url, sandbox_url, tmp_path)
    outcomes = []
    for _ in range(SHARE + 2):
        outcomes.append(await _drain_until(api, plugin, seller, await _check(db, check_settings, seller)))
        if outcomes[-1]["status"] == "rate_limited":
            break

    assert [job["status"] for job in outcomes] == ["succeeded"] * SHARE + ["rate_limited"]
    waiting = outcomes[-1]
    assert waiting["next_attempt_at"] is not None
    # Within the share: SHARE requests reached Vinted, and the member still has the rest of its budget.
    assert await redis.zcard(vinted_sale_check_key(seller.member)) == SHARE
    assert await redis.zcard(vinted_member_key(seller.member)) == SHARE
    usage = (
        await api.get(
            f"/api/integrations/vinted/accounts/{seller.account_id}/rate-limit", headers=seller.headers
        )
    ).json()
    assert usage["used"] == SHARE and usage["remaining"] == LIMIT - SHARE
    async with db.session_factory() as session:
        logged = await session.scalar(
            text(
                "SELECT coalesce(sum(slots), 0) FROM public.vinted_request_log "
                "WHERE member = :member AND sale_check"
            ),
            {"member": seller.member},
        )
    assert logged == SHARE


async def test_a_check_does_not_take_the_slot_a_waiting_publish_needs(
    api: httpx.AsyncClient,
    db: Database,
    redis: Redis,
    check_settings: Settings,
    pipelines: FakeMarketplace,
    gateway_url: str,
    sandbox_url: str,
    tmp_path: Path,
) -> None:
    seller = await _seller(api, db, marketplaces=False)
    plugin = _plugin(seller, gateway_url, sandbox_url, tmp_path)
    # Five of the member's six slots are spent (elsewhere): the publish (a photo and the item: two) waits.
    limiter = SlidingWindowLimiter(redis, LIMIT, check_settings.vinted_rate_window_seconds)
    assert (await limiter.acquire(vinted_member_key(seller.member), LIMIT - 1)).granted
    product = await _vinted_product(api, seller.headers)
    [publish] = (
        await api.post(
            f"/api/products/{product['id']}/publications",
            json={"platforms": ["vinted"]},
            headers=seller.headers,
        )
    ).json()["jobs"]
    assert (await wait_for_job(api, seller.headers, publish["id"], until=_rate_limited))["attempts"] <= 1

    check = await _drain_until(api, plugin, seller, await _check(db, check_settings, seller))

    # One slot is free and the check needs one, but the waiting publish needs two: the check waits too.
    assert check["status"] == "rate_limited", check
    assert await redis.zcard(vinted_member_key(seller.member)) == LIMIT - 1
    assert await redis.zcard(vinted_sale_check_key(seller.member)) == 0


def _rate_limited(job: dict[str, Any]) -> bool:
    return bool(job["status"] == "rate_limited")


async def test_the_hand_out_gives_waiting_publications_their_slots_before_a_check(
    api: httpx.AsyncClient, db: Database, check_settings: Settings
) -> None:
    """PostgreSQL's gate, when tasks were released while the plugin was away: the publish goes first,
    and the check stays queued while handing it out would leave the waiting publish no room."""
    seller = await _seller(api, db, marketplaces=False)
    prefix = check_settings.tenant_schema_prefix
    async with tenant_transaction(db.session_factory, prefix, seller.tenant_id) as session:
        task_ids = {}
        for operation, slots in (
            ("list_sold_orders", 1),
            ("create_item", 4),
            ("create_item", 3),
        ):
            job = await queue.enqueue_job(
                session,
                tenant_id=seller.tenant_id,
                platform="vinted",
                action="check_sales" if operation == "list_sold_orders" else "publish",
                product_id=None,
                payload={"vinted_account_id": seller.account_id},
            )
            task = await plugin_tasks.create_task(
                session,
                tenant_id=seller.tenant_id,
                job_id=job.id,
                vinted_account_id=seller.account_id,
                vinted_user_id=seller.member,
                operation=operation,
                requests=[{"method": "GET", "path": "/", "body": None}] * slots,
            )
            task_ids[(operation, slots)] = task.id
    async with tenant_transaction(db.session_factory, prefix, seller.tenant_id) as session:
        first = await plugin_tasks.claim_ready(
            session, 10, budget=LIMIT, window_seconds=7200, sale_check_share=SHARE
        )
    # The first publish (4) goes; the second (3) does not fit, and the check (1) would fit but must leave
    # the waiting publish its room: it stays queued.
    assert [task.id for task in first] == [task_ids[("create_item", 4)]]
    async with tenant_transaction(db.session_factory, prefix, seller.tenant_id) as session:
        second = await plugin_tasks.claim_ready(
            session, 10, budget=LIMIT, window_seconds=7200, sale_check_share=SHARE
        )
    assert second == []


async def test_with_the_plugin_away_the_check_fails_in_time_and_the_next_one_is_queued(
    api: httpx.AsyncClient,
    db: Database,
    check_settings: Settings,
    pipelines: FakeMarketplace,
) -> None:
    seller = await _seller(api, db, marketplaces=False)
    job_id = await _check(db, check_settings, seller)
    waiting = await wait_for_job(api, seller.headers, job_id, until=lambda job: job["status"] != "pending")
    assert waiting["status"] in ("queued", "running", "waiting_plugin"), waiting

    # Nobody claims the task: after PLUGIN_TASK_MAX_AGE (3 s here) the sweep fails the job, it is not stuck.
    failed = await wait_for_job(api, seller.headers, job_id, timeout=30)
    assert failed["status"] == "failed" and failed["error"]["code"] == "plugin_unavailable", failed
    # The next due check is not blocked behind it.
    assert await _check(db, check_settings, seller) != job_id


async def test_accounts_linked_before_the_vinted_check_existed_get_one(
    api: httpx.AsyncClient, db: Database, redis: Redis, check_settings: Settings
) -> None:
    seller = await _seller(api, db, marketplaces=False)
    async with db.session_factory() as session, session.begin():
        # As an account linked before this release: no sale check row.
        await session.execute(
            text("DELETE FROM public.sale_checks WHERE platform = 'vinted' AND tenant_id = :tenant"),
            {"tenant": seller.tenant_id},
        )
    await redis.delete(ADOPTION_KEY)
    app = await build_worker_app(check_settings, "vinted", 1)
    try:
        checks = VintedSaleChecks(app)
        assert await checks.adopt_accounts() >= 1
        assert await checks.adopt_accounts() == 0, "once an hour across the pool"
    finally:
        await app.close()
    async with db.session_factory() as session:
        scheduled = (
            await session.execute(
                text(
                    "SELECT account, due_at <= now() AS due FROM public.sale_checks "
                    "WHERE platform = 'vinted' AND tenant_id = :tenant"
                ),
                {"tenant": seller.tenant_id},
            )
        ).all()
    assert [(row.account, row.due) for row in scheduled] == [(seller.member, True)]
