"""The eBay adapter against the marketplace sandbox served over real HTTP: one listing per command,
whatever faults the sandbox throws (lost answers, 429s, 5xx, expired tokens)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

import httpx
import pytest
import structlog
import uvicorn

from domain.catalogue import PlatformMappings, ProductSnapshot
from domain.mapping.common import MappingMissing
from ops.config.reference_data import load_platform_mappings
from ops.tools.sandbox.app import create_sandbox_app
from workers.errors import AuthExpired, PermanentPlatformError, TransientPlatformError
from workers.platforms.base import JobInput
from workers.platforms.ebay import EbayAdapter
from workers.platforms.http import RetryPolicy

INVENTORY = "/sell/inventory/v1"
ACCOUNT = "seller-fr"
MAPPINGS = PlatformMappings.from_nested(load_platform_mappings())
SETTINGS = {
    "marketplace_id": "EBAY_FR",
    "fulfillment_policy_id": "ship-1",
    "payment_policy_id": "pay-1",
    "return_policy_id": "ret-1",
    "merchant_location_key": "paris-1",
}
PRODUCT = ProductSnapshot(
    id=7,
    sku="SKU-EBAY-7",
    title="Robe Zara bleue en coton",
    description="Robe d'été en coton bleu, portée deux fois.",
    price=Decimal("24.90"),
    stock_quantity=1,
    category="women_dresses",
    brand="zara",
    size="m",
    color="blue",
    condition="very_good",
    image_urls=("https://media.example.com/p/7/1.jpg", "https://media.example.com/p/7/2.jpg"),
)


# --- the sandbox on a real socket -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    """Serve a fresh sandbox with uvicorn in a thread, so timeouts and dropped connections are real."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_sandbox_app(),
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
async def seller(control: httpx.AsyncClient) -> dict[str, Any]:
    response = await control.post("/_sandbox/ebay/accounts", json={"account_id": ACCOUNT})
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


def make_adapter(http: httpx.AsyncClient, base_url: str, waits: Waits, **retry: Any) -> EbayAdapter:
    policy = RetryPolicy(initial_wait=0.01, max_wait=0.02, jitter=0.0, sleep=waits, **retry)
    return EbayAdapter(
        http,
        base_url=base_url,
        client_id="stoflow-test",
        client_secret="test-secret",
        retry=policy,
        timeout=httpx.Timeout(2.0, connect=1.0),
    )


@pytest.fixture
def adapter(http: httpx.AsyncClient, sandbox_url: str, waits: Waits) -> EbayAdapter:
    return make_adapter(http, sandbox_url, waits)


@dataclass
class Job:
    """What the job runner would keep between runs: saved progress and saved credentials."""

    credentials: dict[str, Any]
    product: ProductSnapshot | None = PRODUCT
    action: str = "publish"
    listing: dict[str, Any] | None = None
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
            credential_settings=dict(SETTINGS),
            mappings=MAPPINGS,
            save_progress=save_progress,
            save_credentials=save_credentials,
        )


def publish_job(seller: dict[str, Any], **changes: Any) -> Job:
    tokens = {"access_token": seller["access_token"], "refresh_token": seller["refresh_token"]}
    return Job(credentials=tokens, **changes)


async def sku_state(control: httpx.AsyncClient, sku: str = PRODUCT.sku or "") -> dict[str, Any]:
    response = await control.get("/_sandbox/ebay/listings", params={"account": ACCOUNT})
    skus: dict[str, Any] = response.json()["accounts"][ACCOUNT]["skus"]
    state: dict[str, Any] = skus[sku]
    return state


async def arm(control: httpx.AsyncClient, **fault: Any) -> None:
    response = await control.post("/_sandbox/faults", json={"platform": "ebay", **fault})
    assert response.status_code == 201, response.text


async def request_count(control: httpx.AsyncClient, method: str, path_prefix: str) -> int:
    response = await control.get(
        "/_sandbox/requests", params={"platform": "ebay", "method": method, "path_prefix": path_prefix}
    )
    count: int = response.json()["count"]
    return count


async def raises(kind: type[BaseException], call: Callable[[], Awaitable[object]]) -> BaseException:
    with pytest.raises(kind) as caught:
        await call()
    return caught.value


# --- publish ----------------------------------------------------------------------------------------------


async def test_publish_creates_one_live_listing(
    adapter: EbayAdapter, control: httpx.AsyncClient, seller: dict[str, Any]
) -> None:
    job = publish_job(seller)

    outcome = await adapter.publish(job.run())

    state = await sku_state(control)
    assert state["live_listing_ids"] == [outcome.external_id]
    assert len(state["offers"]) == 1
    offer = state["offers"][0]
    assert outcome.url == f"https://www.ebay.fr/itm/{outcome.external_id}"
    assert outcome.data == {"offer_id": offer["offerId"]}
    assert job.progress == {"inventory_item": PRODUCT.sku, "offer_id": offer["offerId"]}
    assert offer["pricingSummary"]["price"] == {"value": "24.90", "currency": "EUR"}
    assert state["inventory_item"]["locale"] == "fr_FR"  # sent with Content-Language: fr-FR
    assert job.saved_credentials == []


async def test_publish_run_again_keeps_one_listing(
    adapter: EbayAdapter, control: httpx.AsyncClient, seller: dict[str, Any]
) -> None:
    job = publish_job(seller)
    first = await adapter.publish(job.run())

    again = await adapter.publish(job.run())  # a retry that kept the saved progress
    lost_progress = await adapter.publish(publish_job(seller).run())  # a run with nothing saved

    assert again.external_id == lost_progress.external_id == first.external_id
    state = await sku_state(control)
    assert len(state["offers"]) == 1
    assert state["live_listing_ids"] == [first.external_id]
    assert await request_count(control, "POST", f"{INVENTORY}/offer") == 3 + 1  # 3 publishes, 1 create


async def test_run_after_a_fix_sends_the_current_product(
    adapter: EbayAdapter, control: httpx.AsyncClient, seller: dict[str, Any]
) -> None:
    job = publish_job(seller)
    first = await adapter.publish(job.run())
    job.product = replace(PRODUCT, price=Decimal("21.00"))

    again = await adapter.publish(job.run())  # the offer id comes from progress; the offer is re-sent

    state = await sku_state(control)
    assert again.external_id == first.external_id
    assert state["offers"][0]["pricingSummary"]["price"]["value"] == "21.00"


async def test_lost_answer_to_offer_create_is_adopted_in_process(
    adapter: EbayAdapter, control: httpx.AsyncClient, seller: dict[str, Any]
) -> None:
    await arm(control, kind="response_lost", path_prefix=f"{INVENTORY}/offer", methods=["POST"], count=1)

    outcome = await adapter.publish(publish_job(seller).run())

    state = await sku_state(control)
    assert len(state["offers"]) == 1  # the repeated create was refused with 25002 and adopted
    assert state["live_listing_ids"] == [outcome.external_id]


@pytest.mark.parametrize("mode", ["502", "drop"])
async def test_lost_answer_then_next_run_keeps_one_listing(
    http: httpx.AsyncClient,
    sandbox_url: str,
    waits: Waits,
    control: httpx.AsyncClient,
    seller: dict[str, Any],
    mode: str,
) -> None:
    no_retries = make_adapter(http, sandbox_url, waits, attempts=1)
    job = publish_job(seller)
    await arm(control, kind="response_lost", mode=mode, path_prefix=f"{INVENTORY}/offer", methods=["POST"])
    await raises(TransientPlatformError, lambda: no_retries.publish(job.run()))
    assert "offer_id" not in job.progress

    # The publish call's answer is lost too: the listing exists but the run cannot know its id.
    await arm(control, kind="response_lost", mode=mode, path_prefix=f"{INVENTORY}/offer/", methods=["POST"])
    await raises(TransientPlatformError, lambda: no_retries.publish(job.run()))
    assert "offer_id" in job.progress

    outcome = await no_retries.publish(job.run())

    state = await sku_state(control)
    assert len(state["offers"]) == 1
    assert state["live_listing_ids"] == [outcome.external_id]
    assert state["offers"][0]["ended_listing_ids"] == []


async def test_rate_limit_burst_waits_retry_after_then_succeeds(
    adapter: EbayAdapter, control: httpx.AsyncClient, seller: dict[str, Any], waits: Waits
) -> None:
    await arm(control, kind="rate_limit", count=2, retry_after=3, path_prefix=f"{INVENTORY}/inventory_item")

    outcome = await adapter.publish(publish_job(seller).run())

    assert waits.seconds == [3.0, 3.0]  # Retry-After honoured, not the (tiny) backoff
    assert (await sku_state(control))["live_listing_ids"] == [outcome.external_id]


async def test_long_retry_after_is_left_to_the_job_runner(
    adapter: EbayAdapter, control: httpx.AsyncClient, seller: dict[str, Any], waits: Waits
) -> None:
    await arm(control, kind="rate_limit", retry_after=120, path_prefix=f"{INVENTORY}/inventory_item")

    error = await raises(TransientPlatformError, lambda: adapter.publish(publish_job(seller).run()))

    assert isinstance(error, TransientPlatformError)
    assert error.retry_after == 120
    assert waits.seconds == []


async def test_server_errors_are_transient_after_the_in_process_budget(
    adapter: EbayAdapter, control: httpx.AsyncClient, seller: dict[str, Any], waits: Waits
) -> None:
    await arm(control, kind="server_error", status=503, count=None, path_prefix=f"{INVENTORY}/inventory_item")

    error = await raises(TransientPlatformError, lambda: adapter.publish(publish_job(seller).run()))

    assert "503" in str(error)
    assert "A system error has occurred" in str(error)
    assert await request_count(control, "PUT", f"{INVENTORY}/inventory_item") == 3
    assert len(waits.seconds) == 2


async def test_timeout_is_retried_in_process(
    http: httpx.AsyncClient,
    sandbox_url: str,
    waits: Waits,
    control: httpx.AsyncClient,
    seller: dict[str, Any],
) -> None:
    adapter = EbayAdapter(
        http,
        base_url=sandbox_url,
        client_id="stoflow-test",
        client_secret="test-secret",
        retry=RetryPolicy(initial_wait=0.01, max_wait=0.02, jitter=0.0, sleep=waits),
        timeout=httpx.Timeout(0.3, connect=1.0),
    )
    await arm(control, kind="timeout", delay_seconds=1.0, path_prefix=f"{INVENTORY}/inventory_item")

    outcome = await adapter.publish(publish_job(seller).run())

    assert (await sku_state(control))["live_listing_ids"] == [outcome.external_id]
    assert len(waits.seconds) == 1


async def test_marketplace_validation_error_is_platform_rejected_with_its_message(
    adapter: EbayAdapter, control: httpx.AsyncClient, seller: dict[str, Any]
) -> None:
    job = publish_job(seller, product=replace(PRODUCT, image_urls=("media/7/1.jpg",)))

    error = await raises(PermanentPlatformError, lambda: adapter.publish(job.run()))

    assert isinstance(error, PermanentPlatformError)
    assert error.code == "platform_rejected"
    assert "picture URLs must use HTTPS" in error.message
    assert job.progress == {}


async def test_unmappable_product_fails_before_any_call(
    adapter: EbayAdapter, control: httpx.AsyncClient, seller: dict[str, Any]
) -> None:
    job = publish_job(seller, product=replace(PRODUCT, category=None))

    error = await raises(MappingMissing, lambda: adapter.publish(job.run()))

    assert isinstance(error, MappingMissing)
    assert error.code == "mapping_missing"
    counts = (await control.get("/_sandbox/requests/counts", params={"platform": "ebay"})).json()
    assert counts["total"] == 0


# --- OAuth ------------------------------------------------------------------------------------------------


async def test_expired_token_is_refreshed_once_and_saved(
    adapter: EbayAdapter, control: httpx.AsyncClient, seller: dict[str, Any]
) -> None:
    await arm(control, kind="token_expired", path_prefix=f"{INVENTORY}/inventory_item")
    job = publish_job(seller)

    with structlog.testing.capture_logs() as logs:
        outcome = await adapter.publish(job.run())

    assert (await sku_state(control))["live_listing_ids"] == [outcome.external_id]
    assert len(job.saved_credentials) == 1
    saved = job.saved_credentials[0]
    assert any(entry["event"] == "platform_token_refreshed" for entry in logs)
    secrets = {seller["access_token"], seller["refresh_token"], saved["access_token"]}
    assert not [entry for entry in logs if any(secret in str(entry) for secret in secrets)]
    assert saved["access_token"] != seller["access_token"]
    assert saved["refresh_token"] == seller["refresh_token"]
    assert await request_count(control, "POST", "/identity/v1/oauth2/token") == 1


async def test_revoked_refresh_token_is_auth_expired(
    adapter: EbayAdapter, control: httpx.AsyncClient, seller: dict[str, Any]
) -> None:
    await control.post("/_sandbox/ebay/revoke", json={"refresh_token": seller["refresh_token"]})
    job = publish_job(seller)

    error = await raises(AuthExpired, lambda: adapter.publish(job.run()))

    assert isinstance(error, AuthExpired)
    assert error.code == "auth_expired"
    assert "invalid" in error.message
    assert seller["refresh_token"] not in error.message
    assert job.saved_credentials == []


# --- update and delist ------------------------------------------------------------------------------------


async def published(adapter: EbayAdapter, seller: dict[str, Any]) -> dict[str, Any]:
    outcome = await adapter.publish(publish_job(seller).run())
    return {"external_id": outcome.external_id, "url": outcome.url, "data": outcome.data}


async def test_update_changes_price_and_title(
    adapter: EbayAdapter, control: httpx.AsyncClient, seller: dict[str, Any]
) -> None:
    listing = await published(adapter, seller)
    changed = replace(PRODUCT, price=Decimal("19.50"), title="Robe Zara bleue en coton, taille M")
    job = publish_job(seller, action="update", product=changed, listing=listing)

    outcome = await adapter.update(job.run())

    state = await sku_state(control)
    assert state["offers"][0]["pricingSummary"]["price"]["value"] == "19.50"
    assert state["inventory_item"]["product"]["title"] == "Robe Zara bleue en coton, taille M"
    assert state["live_listing_ids"] == [listing["external_id"]]
    assert outcome.external_id == listing["external_id"]
    assert outcome.data == listing["data"]


async def test_update_of_price_and_stock_reaches_the_offer_as_ebay_takes_it(
    adapter: EbayAdapter, control: httpx.AsyncClient, seller: dict[str, Any]
) -> None:
    listing = await published(adapter, seller)
    since = (await control.get("/_sandbox/clock")).json()["now"]
    changed = replace(PRODUCT, price=Decimal("31.90"), stock_quantity=4)

    await adapter.update(publish_job(seller, action="update", product=changed, listing=listing).run())

    state = await sku_state(control)
    [offer] = state["offers"]
    assert offer["pricingSummary"]["price"] == {"value": "31.90", "currency": "EUR"}
    assert offer["availableQuantity"] == 4
    assert state["inventory_item"]["availability"]["shipToLocationAvailability"]["quantity"] == 4
    assert state["live_listing_ids"] == [listing["external_id"]]
    # updateOffer got its own body (no sku/marketplaceId/format), and every request met the strict schemas.
    sent = (await control.get("/_sandbox/requests", params={"platform": "ebay", "since": str(since)})).json()[
        "requests"
    ]
    assert {r["endpoint"] for r in sent} >= {"PUT /sell/inventory/v1/offer/{offer_id}"}
    assert all(r["violations"] == [] and r["status"] < 300 for r in sent), sent


async def test_delist_withdraws_and_a_repeat_succeeds(
    adapter: EbayAdapter, control: httpx.AsyncClient, seller: dict[str, Any]
) -> None:
    listing = await published(adapter, seller)
    job = publish_job(seller, action="delist", listing=listing)

    await adapter.delist(job.run())
    again = await adapter.delist(job.run())  # already withdrawn: nothing left to do

    state = await sku_state(control)
    assert state["live_listing_ids"] == []
    assert state["offers"][0]["ended_listing_ids"] == [listing["external_id"]]
    assert again.data == listing["data"]


async def test_publish_after_delist_reuses_the_offer_with_the_new_price(
    adapter: EbayAdapter, control: httpx.AsyncClient, seller: dict[str, Any]
) -> None:
    listing = await published(adapter, seller)
    await adapter.delist(publish_job(seller, action="delist", listing=listing).run())

    outcome = await adapter.publish(publish_job(seller, product=replace(PRODUCT, price=Decimal("15"))).run())

    state = await sku_state(control)
    assert len(state["offers"]) == 1
    assert state["live_listing_ids"] == [outcome.external_id]
    assert outcome.external_id != listing["external_id"]
    assert state["offers"][0]["pricingSummary"]["price"]["value"] == "15.00"


async def test_concurrent_runs_of_one_command_make_one_offer(
    adapter: EbayAdapter, control: httpx.AsyncClient, seller: dict[str, Any]
) -> None:
    # A lease that expired while the first run was still going: two runs race on the same SKU.
    outcomes = await asyncio.gather(*(adapter.publish(publish_job(seller).run()) for _ in range(3)))

    state = await sku_state(control)
    assert len(state["offers"]) == 1
    assert {o.external_id for o in outcomes} == set(state["live_listing_ids"])
