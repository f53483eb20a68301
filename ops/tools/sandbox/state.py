"""In-memory state of the marketplace sandbox: accounts, tokens, listings, the request log and the clock.

Everything lives in one `SandboxState` so that `reset()` can start a test from nothing. The platform modules
mutate it while holding `lock`; readers (inspection endpoints) take the same lock so that they never see a
half-applied write.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from starlette.requests import Request

from ops.tools.sandbox.catalogue import etsy_taxonomy_ids

Platform = Literal["ebay", "etsy", "vinted"]
PLATFORMS: tuple[Platform, ...] = ("ebay", "etsy", "vinted")

JsonDict = dict[str, Any]


class SandboxClock:
    """Wall-clock time plus an offset that tests may advance to expire tokens without sleeping."""

    def __init__(self) -> None:
        self.offset_seconds = 0.0

    def now(self) -> float:
        """Return the sandbox's current epoch time in seconds."""
        return time.time() + self.offset_seconds

    def advance(self, seconds: float) -> None:
        """Move the sandbox clock forward."""
        self.offset_seconds += seconds


@dataclass
class RequestRecord:
    """One request that reached a fake marketplace; `endpoint` is the route template once it is known."""

    platform: Platform
    method: str
    path: str
    account: str | None
    at: float
    endpoint: str | None = None
    status: int | None = None
    fault: str | None = None
    #: How the request broke its endpoint's contract (ops/tools/sandbox/contract.py); empty when it conforms.
    violations: list[str] = field(default_factory=list)
    #: The `Origin` header a browser sent (the page the request came from); None when there was none.
    origin: str | None = None

    def to_json(self) -> JsonDict:
        """Render the record for the inspection API."""
        return {
            "platform": self.platform,
            "method": self.method,
            "path": self.path,
            "endpoint": self.endpoint or self.path,
            "account": self.account,
            "at": self.at,
            "status": self.status,
            "fault": self.fault,
            "violations": list(self.violations),
            "origin": self.origin,
        }


@dataclass
class AccessToken:
    """A bearer token the sandbox issued, tied to the account that may use it."""

    account: str
    expires_at: float
    kind: Literal["user", "application"] = "user"
    revoked: bool = False


# --- eBay -----------------------------------------------------------------------------------------------


@dataclass
class EbayOffer:
    """An offer of the Sell Inventory API; `listing_id` is set while it is published."""

    offer_id: str
    sku: str
    marketplace_id: str
    format: str
    body: JsonDict
    status: Literal["UNPUBLISHED", "PUBLISHED"] = "UNPUBLISHED"
    listing_id: str | None = None
    listing_status: str | None = None
    ended_listing_ids: list[str] = field(default_factory=list)


@dataclass
class EbayAccount:
    """One eBay seller: inventory items keyed by SKU and offers keyed by offer id."""

    account_id: str
    inventory: dict[str, JsonDict] = field(default_factory=dict)
    offers: dict[str, EbayOffer] = field(default_factory=dict)


@dataclass
class EbayState:
    """Sellers, the refresh tokens that name them, and the access tokens issued for them."""

    accounts: dict[str, EbayAccount] = field(default_factory=dict)
    refresh_tokens: dict[str, str] = field(default_factory=dict)
    revoked_refresh_tokens: set[str] = field(default_factory=set)
    access_tokens: dict[str, AccessToken] = field(default_factory=dict)

    def account(self, account_id: str) -> EbayAccount:
        """Return the seller, creating it on first use."""
        return self.accounts.setdefault(account_id, EbayAccount(account_id))


# --- Etsy -----------------------------------------------------------------------------------------------


@dataclass
class EtsyListing:
    """A shop listing as Etsy v3 returns it, plus its images."""

    listing_id: int
    shop_id: int
    user_id: int
    fields: JsonDict
    images: list[JsonDict] = field(default_factory=list)
    deleted: bool = False


@dataclass
class EtsyShop:
    """A shop's settings that listings must name: its return policies and processing profiles."""

    shop_id: int
    user_id: int
    #: ISO country of the shop: outside the EU, a physical listing needs a return policy to be active.
    country_iso: str = "FR"
    return_policy_ids: list[int] = field(default_factory=list)
    readiness_state_ids: list[int] = field(default_factory=list)


@dataclass
class EtsyState:
    """Users (by id), their refresh and access tokens, shops and listings by id."""

    shops: dict[int, EtsyShop] = field(default_factory=dict)
    refresh_tokens: dict[str, str] = field(default_factory=dict)
    revoked_refresh_tokens: set[str] = field(default_factory=set)
    access_tokens: dict[str, AccessToken] = field(default_factory=dict)
    listings: dict[int, EtsyListing] = field(default_factory=dict)
    #: The seller taxonomy ids the fake knows (a listing naming another is refused).
    taxonomy_ids: frozenset[int] = field(default_factory=frozenset)
    #: Refresh-token grants served: a race of refreshers shows here as more than one.
    refreshes: int = 0


# --- Vinted ---------------------------------------------------------------------------------------------


@dataclass
class VintedSession:
    """A browser session: the cookie value names a user; `csrf_token`, when set, must match the header."""

    user_id: int | None
    csrf_token: str | None = None


@dataclass
class VintedItem:
    """An item in a member's wardrobe."""

    item_id: int
    user_id: int
    fields: JsonDict
    created_at: float
    updated_at: float
    deleted: bool = False


@dataclass
class VintedState:
    """Sessions by cookie value, uploaded photos by id, and items by id."""

    sessions: dict[str, VintedSession] = field(default_factory=dict)
    photos: dict[int, JsonDict] = field(default_factory=dict)
    photo_owner: dict[int, int] = field(default_factory=dict)
    items: dict[int, VintedItem] = field(default_factory=dict)


@dataclass
class OrderBook:
    """What buyers bought: eBay orders, Etsy receipts and Vinted sales, oldest first."""

    ebay_orders: list[JsonDict] = field(default_factory=list)
    etsy_receipts: list[JsonDict] = field(default_factory=list)
    vinted_sales: list[JsonDict] = field(default_factory=list)


class IdSequence:
    """Hand out increasing ids that look like the platform's (large numbers, never reused after reset)."""

    def __init__(self, start: int) -> None:
        self._counter: Iterator[int] = itertools.count(start)

    def next(self) -> int:
        """Return the next id."""
        return next(self._counter)


class SandboxState:
    """All mutable sandbox state, guarded by one asyncio lock."""

    def __init__(self, *, strict: bool = True, allow_http_images: bool = False) -> None:
        self.lock = asyncio.Lock()
        #: Accept plain-http picture URLs from any host, not only loopback: for a sandbox that is not on the
        #: machine serving the images (compose). Real eBay never does; a reset keeps it.
        self.allow_http_images = allow_http_images
        self.clock = SandboxClock()
        #: Strict: a request that breaks its endpoint's contract is refused as the marketplace would.
        #: Lenient (only where a test asks for it): the violation is logged and the request served.
        self.default_strict = strict
        self.strict = strict
        # Ids keep growing across resets so a stale id from before a reset can never name a new object.
        self._ids = IdSequence(1)
        # Vinted members start at a random point: a member is a real person whose 40-request budget
        # Stoflow keeps in PostgreSQL, so two sandboxes run against one database (one after another in a
        # test session, or a restarted `stoflow up`) must not hand out the same member twice.
        self._members = IdSequence(90_000_000 + secrets.randbelow(9_000_000))
        self.reset()

    def reset(self) -> None:
        """Forget every account, listing, token, request record and clock offset."""
        self.ebay = EbayState()
        self.etsy = EtsyState(taxonomy_ids=etsy_taxonomy_ids())
        self.vinted = VintedState()
        self.orders = OrderBook()
        self.requests: list[RequestRecord] = []
        self.clock.offset_seconds = 0.0
        self.strict = self.default_strict

    def new_id(self, base: int) -> int:
        """Return a fresh id offset by `base` so each kind of object has a recognisable range."""
        return base + self._ids.next()

    def new_member_id(self) -> int:
        """Return a Vinted member id no other sandbox is likely to have handed out."""
        return self._members.next()

    @staticmethod
    def new_secret(prefix: str = "") -> str:
        """Return an unguessable token string."""
        return prefix + secrets.token_urlsafe(24)

    def record(self, record: RequestRecord) -> RequestRecord:
        """Append a request to the log and return it so its status can be filled in later."""
        self.requests.append(record)
        return record


def state_of(request: Request) -> SandboxState:
    """Return the sandbox state the app was built with."""
    state: SandboxState = request.app.state.sandbox
    return state
