"""What a platform adapter receives and returns."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from domain.catalogue import PlatformMappings, ProductSnapshot
from domain.mapping.reverse import ForeignListing
from domain.sales import OrderLine
from persistence.queue import Lease


class LockedCredentials(Protocol):
    """The stored tokens of a (tenant, platform), read while holding its refresh lock."""

    #: The tokens as stored now (another worker may have refreshed them since the job read them).
    tokens: dict[str, Any] | None

    async def save(self, tokens: dict[str, Any]) -> None:
        """Store new tokens before the lock is released."""


#: Hold the (tenant, platform) refresh lock: one worker at a time refreshes a shop's tokens.
CredentialsLock = Callable[[], AbstractAsyncContextManager[LockedCredentials]]


@dataclass(frozen=True)
class JobInput:
    """Everything one run of a job may read; `save_progress` records a finished step durably.

    An adapter saves a step before any call that can put a listing live (eBay: the offer before publishOffer;
    Etsy: the draft before it is activated; Vinted: the task handed to the plugin). A run whose answer is
    lost then counts as having reached the marketplace, so a sale meanwhile lets it land and takes the
    listing down, instead of cancelling a publish whose listing may exist (the lifecycle state machine's
    fake eBay follows this contract).
    """

    tenant_id: int
    job_id: uuid.UUID
    action: str
    attempt: int
    payload: dict[str, Any]
    progress: dict[str, Any]
    product: ProductSnapshot | None
    listing: dict[str, Any] | None
    credentials: dict[str, Any] | None
    credential_settings: dict[str, Any]
    mappings: PlatformMappings
    save_progress: Callable[[dict[str, Any]], Awaitable[None]]
    save_credentials: Callable[[dict[str, Any]], Awaitable[None]]
    #: this run's hold on the job: a step that changes the job's state in its own transaction names it
    lease: Lease | None = None
    #: the product was sold, archived or deleted meanwhile: start nothing new at the marketplace
    product_gone: bool = False
    #: None: refresh without a lock (a lone job, a test); the runner passes the shared lock.
    credentials_lock: CredentialsLock | None = None


@dataclass(frozen=True)
class ListingOutcome:
    """The listing after a successful step."""

    external_id: str | None
    url: str | None
    data: dict[str, Any] = field(default_factory=dict)
    #: Vinted: the step was handed to the plugin; the job waits for its result.
    waiting_plugin: bool = False
    #: What the job reports as its `result` (e.g. generated text); None: the listing's ids.
    result: dict[str, Any] | None = None
    #: An import: the live listings found on the marketplace, written when the job finishes.
    imported: tuple[ForeignListing, ...] | None = None
    #: An import read every live listing of the account in one consistent pass: a live listing of ours
    #: that is not among them ended outside Stoflow.
    imported_whole: bool = False
    #: A sale check: the order lines it read, recorded as sales when the job finishes (same transaction).
    sales: tuple[OrderLine, ...] | None = None


class PlatformAdapter(Protocol):
    async def publish(self, job: JobInput) -> ListingOutcome: ...

    async def update(self, job: JobInput) -> ListingOutcome: ...

    async def delist(self, job: JobInput) -> ListingOutcome: ...


class ListingImporter(Protocol):
    """An adapter that reads the account's existing listings (`import` jobs)."""

    async def import_listings(self, job: JobInput) -> ListingOutcome: ...


class SaleCheckRunner(Protocol):
    """The Vinted adapter: `check_sales` jobs (the member's sold orders, read through the plugin)."""

    async def check_sales(self, job: JobInput) -> ListingOutcome: ...


class DescriptionGenerator(Protocol):
    """The `ai` pool's adapter: `generate_description` jobs."""

    async def generate_description(self, job: JobInput) -> ListingOutcome: ...


@dataclass(frozen=True)
class AccountAccess:
    """What a sale check may use of one connected account: its tokens, and the day's shared budget."""

    tenant_id: int
    credentials: dict[str, Any] | None
    credential_settings: dict[str, Any]
    save_credentials: Callable[[dict[str, Any]], Awaitable[None]]
    #: Spend one call of the application's daily budget; False: spent, stop here.
    take_call: Callable[[], Awaitable[bool]]
    credentials_lock: CredentialsLock | None = None


class BudgetSpent(Exception):
    """The application's daily budget for sale checks refused the next call."""


class OrderReader(Protocol):
    """A marketplace adapter that can list an account's orders modified in a time range."""

    async def read_orders(
        self, access: AccountAccess, since: datetime, until: datetime
    ) -> list[OrderLine]: ...
