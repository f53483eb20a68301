"""Jobs as values: platforms, actions, statuses, and the retry policy (pure)."""

from __future__ import annotations

import random
from datetime import timedelta
from enum import StrEnum


class Platform(StrEnum):
    VINTED = "vinted"  #: through the user's browser plugin
    EBAY = "ebay"  #: eBay Sell Inventory REST API
    ETSY = "etsy"  #: Etsy Open API v3
    AI = "ai"  #: description generation (no marketplace)


MARKETPLACES: tuple[Platform, ...] = (Platform.VINTED, Platform.EBAY, Platform.ETSY)


class JobAction(StrEnum):
    PUBLISH = "publish"  #: create the listing
    UPDATE = "update"  #: push the current product to a live listing
    DELIST = "delist"  #: end a live listing
    GENERATE_DESCRIPTION = "generate_description"  #: write a description with AI
    IMPORT = "import"  #: turn existing listings into linked products


class JobStatus(StrEnum):
    PENDING = "pending"  #: row committed, not yet handed to a worker
    QUEUED = "queued"  #: handed to the platform's ARQ queue
    RUNNING = "running"  #: claimed by a worker under a lease
    WAITING_PLUGIN = "waiting_plugin"  #: a Vinted request sits in the plugin queue
    RATE_LIMITED = "rate_limited"  #: deferred until next_attempt_at
    SUCCEEDED = "succeeded"  #: done
    FAILED = "failed"  #: gave up; `error` says why
    CANCELLED = "cancelled"  #: stopped by the user before it ran


UNFINISHED: frozenset[JobStatus] = frozenset(
    {JobStatus.PENDING, JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.WAITING_PLUGIN, JobStatus.RATE_LIMITED}
)
CANCELLABLE: frozenset[JobStatus] = frozenset(
    {JobStatus.PENDING, JobStatus.QUEUED, JobStatus.RATE_LIMITED, JobStatus.WAITING_PLUGIN}
)


class JobErrorCode(StrEnum):
    MAPPING_MISSING = "mapping_missing"  #: an attribute has no id on the platform
    NOT_ELIGIBLE = "not_eligible"  #: the product may not be sold there (e.g. Etsy non-vintage)
    POLICY_VIOLATION = "policy_violation"  #: a platform rule is broken
    PLATFORM_REJECTED = "platform_rejected"  #: the marketplace refused the request
    AUTH_EXPIRED = "auth_expired"  #: the marketplace credentials no longer work
    ATTEMPTS_EXHAUSTED = "attempts_exhausted"  #: transient failures until max_attempts
    NOT_CONNECTED = "platform_not_connected"  #: the account was disconnected meanwhile


DEFAULT_MAX_ATTEMPTS = 5
BASE_BACKOFF = timedelta(seconds=2)
MAX_BACKOFF = timedelta(minutes=10)


def retry_delay(
    attempt: int, *, base: timedelta = BASE_BACKOFF, rng: random.Random | None = None
) -> timedelta:
    """Exponential backoff with full jitter after the given (1-based) attempt failed."""
    ceiling = min(MAX_BACKOFF.total_seconds(), base.total_seconds() * 2 ** max(attempt - 1, 0))
    chooser = rng or random.Random()  # noqa: S311 - jitter, not cryptography
    return timedelta(seconds=ceiling / 2 + chooser.uniform(0, ceiling / 2))


def job_id_for_arq(job_id: str, run: int) -> str:
    """The ARQ job id of one run of a row: the same run handed off twice is one ARQ job."""
    return f"{job_id}:{run}"


#: What a retried job keeps of its progress: only what finds the listing an earlier attempt may have
#: created at the marketplace (so a retry never creates a second one); everything else starts afresh.
PROGRESS_KEPT_ON_RETRY: dict[str, frozenset[str]] = {
    Platform.EBAY: frozenset({"inventory_item", "offer_id"}),
    Platform.ETSY: frozenset({"listing_id"}),
}
