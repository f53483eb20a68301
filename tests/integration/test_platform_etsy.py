"""The Etsy adapter against the marketplace sandbox served over real HTTP: one listing per command,
images uploaded once, whatever faults the sandbox throws (lost answers, 429s, 5xx, expired tokens)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
import structlog
import uvicorn
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from domain.catalogue import PlatformMappings, ProductSnapshot
from domain.mapping.common import NotEligible, PolicyViolation
from ops.config.reference_data import load_platform_mappings
from ops.tools.sandbox.app import create_sandbox_app
from workers.errors import AuthExpired, PermanentPlatformError, TransientPlatformError
from workers.platforms.base import JobInput
from workers.platforms.etsy import EtsyAdapter
from workers.platforms.http import RequestRateLimiter, RetryPolicy

APPLICATION = "/v3/application"
SHOP_ID = 5550001
MAPPINGS = PlatformMappings.from_nested(load_platform_mappings())
TODAY = date(2026, 1, 15)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


# --- the sandbox (and our media) on a real socket ---------------------------------------------------------


def with_media(sandbox: ASGIApp) -> ASGIApp:
    """Serve `/media/...` images (as the gateway would) next to the sandbox; `/media/missing...` is 404."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and path.startswith("/media/"):
            missing = path.startswith("/media/missing")
            response = Response(status_code=404) if missing else Response(PNG, media_type="image/png")
            await response(scope, receive, send)
            return
        await sandbox(scope, receive, send)

    return app


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    """Serve a fresh sandbox with uvicorn in a thread, so timeouts and dropped connections are real."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        with_media(create_sandbox_app()),
        log_level="critical",
        lifespan="off",
        ws="none",
        http="h11",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the sandbox did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=5)
    sock.close()


def product_for(base_url: str, **changes: Any) -> ProductSnapshot:
    product = ProductSnapshot(
        id=9,
        sku="SKU-ETSY-9",
        title="Veste en jean Levi's années 90",
        description="Veste en jean vintage, très bon état.",
        price=Decimal("59.00"),
        stock_quantity=1,
        category="women_dresses",
        condition="very_good",
        decade="1990s",
        image_urls=(f"{base_url}/media/p/9/1.png?sig=abc", f"{base_url}/media/p/9/2.png?sig=def"),
    )
    return replace(product, **changes)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
async def control(sandbox_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sandbox_url) as client:
        assert (await client.post("/_sandbox/reset")).status_code == 200
        yield client


@pytest.fixture
async def shop(control: httpx.AsyncClient) -> dict[str, Any]:
    response = await control.post("/_sandbox/etsy/accounts", json={"shop_id": SHOP_ID})
    assert response.status_code == 201
    account: dict[str, Any] = response.json()
    return account


@dataclass
class Waits:
    """The in-process retry waits, recorded instead of slept."""

    seconds: list[float] = field(default_factory=list)

    async def __call__(self, delay: float) -> None:
        self.seconds.append(delay)


@pytest.fixture
def waits() -> Waits:
    return Waits()


def make_adapter(
    http: httpx.AsyncClient,
    base_url: str,
    waits: Waits,
    *,
    limiter: RequestRateLimiter | None = None,
    **retry: Any,
) -> EtsyAdapter:
    return EtsyAdapter(
        http,
        base_url=base_url,
        api_key="stoflow-test-keystring",
        shared_secret="stoflow-test-secret",
        # Tests are not throttled unless they say so; the limiter has its own tests below.
        limiter=limiter or RequestRateLimiter(10_000, burst=100),
        retry=RetryPolicy(initial_wait=0.01, max_wait=0.02, jitter=0.0, sleep=waits, **retry),
        timeout=httpx.Timeout(2.0, connect=1.0),
        today=lambda: TODAY,
    )


@pytest.fixture
def adapter(http: httpx.AsyncClient, sandbox_url: str, waits: Waits) -> EtsyAdapter:
    return make_adapter(http, sandbox_url, waits)


@dataclass
class Job:
    """What the job runner would keep between runs: saved progress and saved credentials."""

    credentials: dict[str, Any]
    product: ProductSnapshot | None
    action: str = "publish"
    listing: dict[str, Any] | None = None
    settings: dict[str, Any] = field(
        default_factory=lambda: {"shop_id": str(SHOP_ID), "shipping_profile_id": "8001"}
    )
    progress: dict[str, Any] = field(default_factory=dict)
    saved_credentials: list[dict[str, Any]] = field(default_factory=list)
    job_id: uuid.UUID = field(default_factory=uuid.uuid4)
    runs: int = 0

    def run(self) -> JobInput:
        """The input of the next run, carrying what earlier runs saved."""
        self.runs += 1

        async def save_progress(step: dict[str, Any]) -> None:
            self.progress = {**self.progress, **step}

        async def save_credentials(tokens: dict[str, Any]) -> None:
            self.saved_credentials.append(dict(tokens))
            self.credentials = dict(tokens)

        return JobInput(
            tenant_id=1,
            job_id=self.job_id,
            action=self.action,
            attempt=self.runs,
            payload={},
            progress=dict(self.progress),
            product=self.product,
            listing=self.listing,
            credentials=dict(self.credentials),
            credential_settings=dict(self.settings),
            mappings=MAPPINGS,
            save_progress=save_progress,
            save_credentials=save_credentials,
        )


def new_job(shop: dict[str, Any], product: ProductSnapshot | None, **changes: Any) -> Job:
    tokens = {"access_token": shop["access_token"], "refresh_token": shop["refresh_token"]}
    return Job(credentials=tokens, product=product, **changes)


async def listings_of(control: httpx.AsyncClient, sku: str = "SKU-ETSY-9") -> list[dict[str, Any]]:
    response = await control.get("/_sandbox/etsy/listings", params={"shop_id": SHOP_ID})
    shops = response.json()["shops"]
    if str(SHOP_ID) not in shops:
        return []
    found: list[dict[str, Any]] = shops[str(SHOP_ID)]["skus"].get(sku, [])
    return found


async def arm(control: httpx.AsyncClient, **fault: Any) -> None:
    response = await control.post("/_sandbox/faults", json={"platform": "etsy", **fault})
    assert response.status_code == 201, response.text


async def etsy_requests(control: httpx.AsyncClient, **filters: str) -> list[dict[str, Any]]:
    response = await control.get("/_sandbox/requests", params={"platform": "etsy", **filters})
    found: list[dict[str, Any]] = response.json()["requests"]
    return found


async def raises(kind: type[BaseException], call: Callable[[], Awaitable[object]]) -> BaseException:
    with pytest.raises(kind) as caught:
        await call()
    return caught.value


# --- publish ----------------------------------------------------------------------------------------------


async def test_publish_creates_one_active_listing_with_its_images(
    adapter: EtsyAdapter, control: httpx.AsyncClient, shop: dict[str, Any], sandbox_url: str
) -> None:
    job = new_job(shop, product_for(sandbox_url))

    outcome = await adapter.publish(job.run())

    [listing] = await listings_of(control)
    assert listing["state"] == "active"
    assert len(listing["images"]) == 2
    assert all(image["byte_size"] == len(PNG) for image in listing["images"])
    assert outcome.external_id == str(listing["listing_id"])
    assert outcome.url == listing["url"]
    assert outcome.data == {
        "listing_id": listing["listing_id"],
        "shop_id": SHOP_ID,
        # what the listing shows, by stable path: an update re-sends only images that changed
        "images": ["/media/p/9/1.png", "/media/p/9/2.png"],
    }
    assert job.progress == {"listing_id": listing["listing_id"], "images_uploaded": 2}
    assert listing["price"] == {"amount": 5900, "divisor": 100, "currency_code": "EUR"}


async def test_publish_run_again_keeps_one_listing_and_its_images(
    adapter: EtsyAdapter, control: httpx.AsyncClient, shop: dict[str, Any], sandbox_url: str
) -> None:
    job = new_job(shop, product_for(sandbox_url))
    first = await adapter.publish(job.run())

    again = await adapter.publish(job.run())  # a retry that kept the saved progress
    lost_progress = await adapter.publish(new_job(shop, product_for(sandbox_url)).run())  # nothing saved

    assert again.external_id == lost_progress.external_id == first.external_id
    [listing] = await listings_of(control)
    assert len(listing["images"]) == 2
    assert listing["state"] == "active"
    posts = await etsy_requests(control, method="POST", path_prefix=f"{APPLICATION}/shops")
    assert [r["path"] for r in posts].count(f"{APPLICATION}/shops/{SHOP_ID}/listings") == 1
    # Without saved progress the found listing's photos are put again, each over itself: never added.
    assert len(posts) == 1 + 2 + 2


async def shop_listings(control: httpx.AsyncClient) -> list[dict[str, Any]]:
    """Every listing of the shop, with or without a SKU (a draft gets its SKU only from its inventory)."""
    response = await control.get("/_sandbox/etsy/listings", params={"shop_id": SHOP_ID})
    found: list[dict[str, Any]] = response.json()["shops"].get(str(SHOP_ID), {}).get("listings", [])
    return [listing for listing in found if not listing["deleted"]]


@pytest.mark.parametrize("mode", ["502", "drop"])
async def test_lost_answer_to_create_then_next_run_adopts_the_draft_and_gives_it_the_sku(
    adapter: EtsyAdapter,
    control: httpx.AsyncClient,
    shop: dict[str, Any],
    sandbox_url: str,
    waits: Waits,
    mode: str,
) -> None:
    job = new_job(shop, product_for(sandbox_url))
    await arm(
        control,
        kind="response_lost",
        mode=mode,
        path_prefix=f"{APPLICATION}/shops/{SHOP_ID}/listings",
        methods=["POST"],
    )

    # Not repeated in-process: the lost answer may hide a listing (it does here).
    await raises(TransientPlatformError, lambda: adapter.publish(job.run()))
    assert waits.seconds == []
    [draft] = await shop_listings(control)
    assert draft["state"] == "draft" and draft["skus"] == []  # as on Etsy: no SKU before the inventory

    outcome = await adapter.publish(job.run())

    [listing] = await shop_listings(control)
    assert outcome.external_id == str(listing["listing_id"]) == str(draft["listing_id"])
    assert listing["state"] == "active"
    assert listing["skus"] == ["SKU-ETSY-9"]
    assert len(listing["images"]) == 2
    # And from now on the inventory SKU finds it, even without the job's saved progress.
    again = await adapter.publish(new_job(shop, product_for(sandbox_url)).run())
    assert again.external_id == outcome.external_id
    assert len(await shop_listings(control)) == 1


async def test_lost_answer_to_an_image_upload_is_repeated_over_itself(
    adapter: EtsyAdapter, control: httpx.AsyncClient, shop: dict[str, Any], sandbox_url: str
) -> None:
    job = new_job(shop, product_for(sandbox_url))
    await arm(control, kind="response_lost", path_prefix=f"{APPLICATION}/shops/{SHOP_ID}/listings/", count=1)

    # An upload at a rank with `overwrite` is idempotent, so the lost answer is retried at once.
    await adapter.publish(job.run())

    [listing] = await listings_of(control)
    assert len(listing["images"]) == 2
    assert [image["rank"] for image in listing["images"]] == [1, 2]
    assert listing["state"] == "active"


async def test_product_without_images_fails_before_any_call(
    adapter: EtsyAdapter, control: httpx.AsyncClient, shop: dict[str, Any], sandbox_url: str
) -> None:
    job = new_job(shop, product_for(sandbox_url, image_urls=()))

    error = await raises(PolicyViolation, lambda: adapter.publish(job.run()))

    assert isinstance(error, PolicyViolation)
    assert error.code == "policy_violation"
    assert "etsy requires at least one image" in error.detail
    assert await etsy_requests(control) == []


async def test_recent_second_hand_product_is_not_eligible(
    adapter: EtsyAdapter, control: httpx.AsyncClient, shop: dict[str, Any], sandbox_url: str
) -> None:
    job = new_job(shop, product_for(sandbox_url, decade="2010s"))

    error = await raises(NotEligible, lambda: adapter.publish(job.run()))

    assert isinstance(error, NotEligible)
    assert error.code == "not_eligible"
    assert await etsy_requests(control) == []


async def test_unreadable_image_fails_the_job(
    adapter: EtsyAdapter, shop: dict[str, Any], sandbox_url: str
) -> None:
    job = new_job(shop, product_for(sandbox_url, image_urls=(f"{sandbox_url}/media/missing.png",)))

    error = await raises(PermanentPlatformError, lambda: adapter.publish(job.run()))

    assert isinstance(error, PermanentPlatformError)
    assert error.code == "image_unavailable"
    assert "listing_id" in job.progress  # the draft is kept and reused when the job is retried


async def test_rate_limit_burst_waits_retry_after_then_succeeds(
    adapter: EtsyAdapter, control: httpx.AsyncClient, shop: dict[str, Any], sandbox_url: str, waits: Waits
) -> None:
    await arm(control, kind="rate_limit", count=2, retry_after=2, path_prefix=f"{APPLICATION}/shops")

    outcome = await adapter.publish(new_job(shop, product_for(sandbox_url)).run())

    assert waits.seconds == [2.0, 2.0]
    [listing] = await listings_of(control)
    assert outcome.external_id == str(listing["listing_id"])


async def test_server_errors_are_transient_after_the_in_process_budget(
    adapter: EtsyAdapter, control: httpx.AsyncClient, shop: dict[str, Any], sandbox_url: str, waits: Waits
) -> None:
    await arm(control, kind="server_error", status=500, count=None, path_prefix=f"{APPLICATION}/shops")

    error = await raises(
        TransientPlatformError, lambda: adapter.publish(new_job(shop, product_for(sandbox_url)).run())
    )

    assert "500" in str(error)
    assert len(await etsy_requests(control)) == 3
    assert len(waits.seconds) == 2


async def test_marketplace_validation_error_is_platform_rejected_with_its_message(
    adapter: EtsyAdapter, shop: dict[str, Any], sandbox_url: str
) -> None:
    job = new_job(
        shop, product_for(sandbox_url), settings={"shop_id": str(SHOP_ID), "shipping_profile_id": "0"}
    )

    error = await raises(PermanentPlatformError, lambda: adapter.publish(job.run()))

    assert isinstance(error, PermanentPlatformError)
    assert error.code == "platform_rejected"
    assert "shipping_profile_id" in error.message and "greater than or equal to 1" in error.message
    assert job.progress == {}


# --- OAuth ------------------------------------------------------------------------------------------------


async def test_expired_token_is_refreshed_once_and_saved(
    adapter: EtsyAdapter, control: httpx.AsyncClient, shop: dict[str, Any], sandbox_url: str
) -> None:
    await arm(control, kind="token_expired", path_prefix=f"{APPLICATION}/shops")
    job = new_job(shop, product_for(sandbox_url))

    with structlog.testing.capture_logs() as logs:
        await adapter.publish(job.run())

    [listing] = await listings_of(control)
    assert listing["state"] == "active"
    [saved] = job.saved_credentials
    secrets = {shop["access_token"], shop["refresh_token"], saved["access_token"], saved["refresh_token"]}
    assert not [entry for entry in logs if any(secret in str(entry) for secret in secrets)]
    assert saved["access_token"] != shop["access_token"]
    assert saved["refresh_token"] != shop["refresh_token"]  # Etsy rotates it: the new one is kept
    assert len(await etsy_requests(control, path_prefix="/v3/public/oauth/token")) == 1


async def test_revoked_refresh_token_is_auth_expired(
    adapter: EtsyAdapter, control: httpx.AsyncClient, shop: dict[str, Any], sandbox_url: str
) -> None:
    await control.post("/_sandbox/etsy/revoke", json={"refresh_token": shop["refresh_token"]})
    await arm(control, kind="token_expired", path_prefix=f"{APPLICATION}/shops")
    job = new_job(shop, product_for(sandbox_url))

    error = await raises(AuthExpired, lambda: adapter.publish(job.run()))

    assert isinstance(error, AuthExpired)
    assert "refresh_token is revoked" in error.message
    assert shop["refresh_token"] not in error.message
    assert job.saved_credentials == []


# --- update and delist ------------------------------------------------------------------------------------


async def published(adapter: EtsyAdapter, shop: dict[str, Any], sandbox_url: str) -> dict[str, Any]:
    outcome = await adapter.publish(new_job(shop, product_for(sandbox_url)).run())
    return {"external_id": outcome.external_id, "url": outcome.url, "data": outcome.data}


async def test_update_changes_price_title_and_quantity(
    adapter: EtsyAdapter, control: httpx.AsyncClient, shop: dict[str, Any], sandbox_url: str
) -> None:
    listing = await published(adapter, shop, sandbox_url)
    changed = product_for(
        sandbox_url, price=Decimal("49.50"), title="Veste en jean Levi's 1990s", stock_quantity=2
    )

    outcome = await adapter.update(new_job(shop, changed, action="update", listing=listing).run())

    [after] = await listings_of(control)
    assert after["price"]["amount"] == 4950
    assert after["title"] == "Veste en jean Levi's 1990s"
    assert after["quantity"] == 2
    assert after["state"] == "active"
    assert outcome.external_id == listing["external_id"]


async def test_delist_deactivates_and_a_deleted_listing_counts_as_delisted(
    adapter: EtsyAdapter, control: httpx.AsyncClient, shop: dict[str, Any], sandbox_url: str
) -> None:
    listing = await published(adapter, shop, sandbox_url)
    job = new_job(shop, product_for(sandbox_url), action="delist", listing=listing)

    await adapter.delist(job.run())
    [after] = await listings_of(control)
    assert after["state"] == "inactive"

    headers = {"x-api-key": "k:s", "Authorization": f"Bearer {shop['access_token']}"}
    deleted = await control.delete(f"{APPLICATION}/listings/{listing['external_id']}", headers=headers)
    assert deleted.status_code == 204
    outcome = await adapter.delist(job.run())  # nothing left to end: still a success
    assert outcome.external_id == listing["external_id"]


async def test_publish_after_delist_reactivates_the_same_listing_at_the_new_price(
    adapter: EtsyAdapter, control: httpx.AsyncClient, shop: dict[str, Any], sandbox_url: str
) -> None:
    listing = await published(adapter, shop, sandbox_url)
    await adapter.delist(new_job(shop, product_for(sandbox_url), action="delist", listing=listing).run())

    outcome = await adapter.publish(new_job(shop, product_for(sandbox_url, price=Decimal("45"))).run())

    [after] = await listings_of(control)
    assert outcome.external_id == listing["external_id"]
    assert after["state"] == "active"
    assert after["price"]["amount"] == 4500
    assert len(after["images"]) == 2


# --- the rate limiter -------------------------------------------------------------------------------------


async def test_limiter_spaces_requests_to_the_rate() -> None:
    now = [100.0]
    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(round(delay, 6))

    limiter = RequestRateLimiter(10, clock=lambda: now[0], sleep=sleep)
    for _ in range(4):
        await limiter.acquire()
    assert slept == [0.1, 0.2, 0.3]

    now[0] += 10  # idle for a while: no debt is carried over, and no burst beyond `burst`
    slept.clear()
    for _ in range(2):
        await limiter.acquire()
    assert slept == [0.1]


async def test_default_limiter_keeps_a_publish_within_ten_requests_per_second(
    http: httpx.AsyncClient, control: httpx.AsyncClient, shop: dict[str, Any], sandbox_url: str, waits: Waits
) -> None:
    adapter = make_adapter(http, sandbox_url, waits, limiter=RequestRateLimiter(10))
    await adapter.publish(new_job(shop, product_for(sandbox_url, sku="SKU-LIMIT")).run())

    times = sorted(r["at"] for r in await etsy_requests(control))
    assert len(times) >= 8
    # Arrival times jitter on a loaded machine (two sends may land together after a stall), so the rule is
    # checked as a rate: n requests never span less than the n - 1 intervals of 0.1 s the limiter imposes.
    assert times[-1] - times[0] >= 0.1 * (len(times) - 1) - 0.05


# --- which listing is this product's ----------------------------------------------------------------------


async def test_a_new_product_with_a_deleted_products_sku_gets_its_own_listing(
    adapter: EtsyAdapter, control: httpx.AsyncClient, shop: dict[str, Any], sandbox_url: str
) -> None:
    old = product_for(sandbox_url, id=9, created_at=datetime(2026, 1, 1, tzinfo=UTC))
    first = await adapter.publish(new_job(shop, old).run())
    await adapter.delist(
        new_job(shop, old, action="delist", listing={"external_id": first.external_id, "data": {}}).run()
    )
    # The old product is deleted (its SKU freed); a new one takes the SKU, with its own photo and category.
    clock = (await control.get("/_sandbox/clock")).json()["now"]
    new = product_for(
        sandbox_url,
        id=10,
        title="Chemise en soie années 70",
        decade="1970s",
        category="women_skirts",
        image_urls=(f"{sandbox_url}/media/p/10/1.png?sig=new",),
        created_at=datetime.fromtimestamp(clock + 1, tz=UTC),
    )
    await control.post("/_sandbox/clock/advance", json={"seconds": 5})

    second = await adapter.publish(new_job(shop, new).run())

    assert second.external_id != first.external_id
    listings = {str(x["listing_id"]): x for x in await shop_listings(control)}
    assert listings[first.external_id]["state"] == "inactive"
    fresh = listings[second.external_id]
    assert fresh["state"] == "active"
    assert fresh["title"] == "Chemise en soie années 70"
    assert len(fresh["images"]) == 1
    assert fresh["skus"] == ["SKU-ETSY-9"]


async def test_products_of_one_title_published_at_once_keep_their_own_drafts(
    adapter: EtsyAdapter, control: httpx.AsyncClient, shop: dict[str, Any], sandbox_url: str
) -> None:
    products = [product_for(sandbox_url, id=20 + i, sku=f"SKU-TWIN-{i}") for i in range(4)]
    # Every create answer is lost: each next run must adopt its own draft, never a twin's.
    await arm(
        control,
        kind="response_lost",
        path_prefix=f"{APPLICATION}/shops/{SHOP_ID}/listings",
        methods=["POST"],
        count=4,
    )
    jobs = [new_job(shop, p) for p in products]
    for job in jobs:
        await raises(TransientPlatformError, lambda job=job: adapter.publish(job.run()))

    outcomes = await asyncio.gather(*(adapter.publish(job.run()) for job in jobs))

    listings = await shop_listings(control)
    assert len(listings) == 4
    assert {o.external_id for o in outcomes} == {str(x["listing_id"]) for x in listings}
    by_id = {str(x["listing_id"]): x for x in listings}
    for product, outcome in zip(products, outcomes, strict=True):
        assert by_id[outcome.external_id]["skus"] == [product.sku]
        assert "[stoflow:" not in by_id[outcome.external_id]["description"]


async def test_update_reaches_the_inventory_as_etsy_takes_it(
    adapter: EtsyAdapter, control: httpx.AsyncClient, shop: dict[str, Any], sandbox_url: str
) -> None:
    listing = await published(adapter, shop, sandbox_url)
    changed = product_for(sandbox_url, price=Decimal("42.10"), stock_quantity=3)

    await adapter.update(new_job(shop, changed, action="update", listing=listing).run())

    inventory = await control.get(
        f"{APPLICATION}/listings/{listing['external_id']}/inventory",
        headers={"x-api-key": "k:s", "Authorization": f"Bearer {shop['access_token']}"},
    )
    [product] = inventory.json()["products"]
    assert product["sku"] == "SKU-ETSY-9"
    assert product["offerings"][0]["price"]["amount"] == 4210
    assert product["offerings"][0]["quantity"] == 3
    # Every request the client sent conformed to the schemas (the sandbox is strict: it would have refused).
    assert all(r["violations"] == [] for r in await etsy_requests(control))


async def test_update_sends_only_the_images_that_changed(
    adapter: EtsyAdapter, control: httpx.AsyncClient, shop: dict[str, Any], sandbox_url: str
) -> None:
    listing = await published(adapter, shop, sandbox_url)
    uploads = f"{APPLICATION}/shops/{SHOP_ID}/listings/{listing['external_id']}/images"

    def image_posts(records: list[dict[str, Any]]) -> int:
        return sum(1 for r in records if r["method"] == "POST" and r["path"] == uploads)

    before = image_posts(await etsy_requests(control))
    # Same images, newly signed URLs: nothing is uploaded again.
    resigned = product_for(
        sandbox_url,
        image_urls=(f"{sandbox_url}/media/p/9/1.png?sig=new", f"{sandbox_url}/media/p/9/2.png?sig=new"),
    )
    outcome = await adapter.update(new_job(shop, resigned, action="update", listing=listing).run())
    assert image_posts(await etsy_requests(control)) == before
    listing = {**listing, "data": outcome.data}

    # The second image replaced by another, and the listing keeps only one: one upload, one image left.
    changed = product_for(sandbox_url, image_urls=(f"{sandbox_url}/media/p/9/1.png?sig=x",))
    outcome = await adapter.update(new_job(shop, changed, action="update", listing=listing).run())
    [after] = await listings_of(control)
    assert len(after["images"]) == 1
    assert image_posts(await etsy_requests(control)) == before
    assert outcome.data["images"] == ["/media/p/9/1.png"]

    swapped = product_for(
        sandbox_url,
        image_urls=(f"{sandbox_url}/media/p/9/1.png?sig=y", f"{sandbox_url}/media/p/9/7.png?sig=y"),
    )
    listing = {**listing, "data": outcome.data}
    await adapter.update(new_job(shop, swapped, action="update", listing=listing).run())
    [after] = await listings_of(control)
    assert len(after["images"]) == 2
    assert image_posts(await etsy_requests(control)) == before + 1


async def test_sync_sees_a_listing_deactivated_or_deleted_outside_stoflow(
    adapter: EtsyAdapter, control: httpx.AsyncClient, shop: dict[str, Any], sandbox_url: str
) -> None:
    listing = await published(adapter, shop, sandbox_url)
    probe = new_job(shop, None, action="sync", listing=listing)
    assert await adapter.listing_ended(probe.run()) is None

    deactivated = await control.post(
        "/_sandbox/etsy/deactivations", json={"listing_id": listing["external_id"]}
    )
    assert deactivated.status_code == 201 and deactivated.json()["state"] == "inactive"
    assert (
        await adapter.listing_ended(probe.run()) == "The listing is inactive on Etsy (ended outside Stoflow)."
    )
    # Deactivating what is not active is refused, like Shop Manager has nothing to do.
    again = await control.post("/_sandbox/etsy/deactivations", json={"listing_id": listing["external_id"]})
    assert again.status_code == 404

    headers = {"x-api-key": "k:s", "Authorization": f"Bearer {shop['access_token']}"}
    assert (
        await control.delete(f"{APPLICATION}/listings/{listing['external_id']}", headers=headers)
    ).status_code == 204
    assert await adapter.listing_ended(probe.run()) == "The listing was deleted on Etsy outside Stoflow."
