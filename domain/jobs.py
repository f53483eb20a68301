"""Jobs as values and the one transition function every job state change goes through (pure).

`transition(job, event, product)` says, for a job in some state, what an event does to it: the new
status, the error it ends with, and the effects the queue must apply in the same transaction (free the
pending listing, withdraw the plugin task, delist a listing that landed for a product already gone, ...).
`persistence/queue.py` is the only writer of job state and asks this function before every write, so
the rules (no double sale, no stuck job) are decided here and nowhere else.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
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
    CHECK_SALES = "check_sales"  #: read the Vinted member's sold orders through the plugin


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
    PRODUCT_CHANGED = "product_changed"  #: sold, archived or deleted before the marketplace call
    PLUGIN_UNAVAILABLE = "plugin_unavailable"  #: no plugin claimed or reported the task in time
    INTERNAL = "internal_error"  #: our own fault; the detail is in the log under the job id


DEFAULT_MAX_ATTEMPTS = 5
#: A live listing of a sold, archived or deleted product whose last delist failed gets a new delist from
#: the sync's safety net no sooner than this after that failure (one failed job an hour, not one a round).
GONE_LISTING_DELIST_BACKOFF = timedelta(hours=1)
BASE_BACKOFF = timedelta(seconds=2)
MAX_BACKOFF = timedelta(minutes=10)


def retry_delay(
    attempt: int, *, base: timedelta = BASE_BACKOFF, rng: random.Random | None = None
) -> timedelta:
    """Exponential backoff with full jitter after the given (1-based) attempt failed."""
    ceiling = min(MAX_BACKOFF.total_seconds(), base.total_seconds() * 2 ** max(attempt - 1, 0))
    chooser = rng or random.Random()  # noqa: S311 - jitter, not cryptography
    return timedelta(seconds=ceiling / 2 + chooser.uniform(0, ceiling / 2))


#: A stream of edits delays a listing's update at most this many coalescing windows after the first edit.
COALESCE_MAX_WINDOWS = 4


def coalesced_due(now: datetime, first_edit_at: datetime, window: timedelta) -> datetime:
    """When a coalesced update runs: `window` after the latest edit, but never later than
    `COALESCE_MAX_WINDOWS` windows after the first one (a seller editing non-stop still sees the change)."""
    return min(now + window, first_edit_at + window * COALESCE_MAX_WINDOWS)


def job_id_for_arq(job_id: str, run: int) -> str:
    """The ARQ job id of one run of a row: the same run handed off twice is one ARQ job."""
    return f"{job_id}:{run}"


#: What a retried job keeps of its progress: only what finds the listing an earlier attempt may have
#: created at the marketplace (so a retry never creates a second one); everything else starts afresh.
PROGRESS_KEPT_ON_RETRY: dict[str, frozenset[str]] = {
    Platform.EBAY: frozenset({"inventory_item", "offer_id"}),
    Platform.ETSY: frozenset({"listing_id"}),
}


#: What the user reads for each error code when the code's own message is not for their eyes.
USER_MESSAGES: dict[str, str] = {
    JobErrorCode.PRODUCT_CHANGED: (
        "The product was sold, archived or deleted before it reached the marketplace."
    ),
    JobErrorCode.PLUGIN_UNAVAILABLE: (
        "No browser plugin picked up this Vinted request in time: open Vinted with the Stoflow plugin "
        "connected, then retry."
    ),
    JobErrorCode.INTERNAL: "Something went wrong on our side while running this job; it was logged.",
    JobErrorCode.ATTEMPTS_EXHAUSTED: "The marketplace kept failing; we gave up after several attempts.",
    JobErrorCode.AUTH_EXPIRED: "The marketplace connection has expired: connect the account again.",
    JobErrorCode.NOT_CONNECTED: "The marketplace account was disconnected.",
}


#: Why the user cannot cancel a delist of a sold, archived or deleted product.
GONE_DELIST_NOT_CANCELLABLE = (
    "This delist takes down a listing of a product that was sold, archived or deleted; it cannot be "
    "cancelled, or the product would stay on sale there."
)


class JobEvent(StrEnum):
    HANDED_OFF = "handed_off"  #: the dispatcher gave the run to the platform's ARQ queue
    CLAIMED = "claimed"  #: a worker took the run under a lease
    SUCCEEDED = "succeeded"  #: the platform step is done
    PARKED = "parked"  #: a Vinted task was released to the plugin queue
    PLUGIN_REPORTED = "plugin_reported"  #: the plugin reported the task's result
    TRANSIENT_FAILURE = "transient_failure"  #: timeout, 429, 5xx: try again later
    PERMANENT_FAILURE = "permanent_failure"  #: refused for good
    RATE_LIMITED = "rate_limited"  #: no rate-limit slots: wait until they free
    LEASE_EXPIRED = "lease_expired"  #: the running worker vanished
    PLUGIN_EXPIRED = "plugin_expired"  #: the task waited past PLUGIN_TASK_MAX_AGE
    CANCEL = "cancel"  #: the user cancels
    RETRY = "retry"  #: the user retries a failed job
    PRODUCT_GONE = "product_gone"  #: the product was sold, archived or deleted


class ProductCondition(StrEnum):
    AVAILABLE = "available"  #: the product may be listed
    GONE = "gone"  #: sold, archived or deleted: it must not be listed anywhere
    NONE = "none"  #: the job is about no product (import)


class Effect(StrEnum):
    LISTING_LIVE = "listing_live"  #: a publish landed: the listing is live
    LISTING_SYNCED = "listing_synced"  #: an update landed
    LISTING_ENDED = "listing_ended"  #: a delist landed
    RELEASE_LISTING = "release_listing"  #: a publish ended without a listing: free its pending row
    RELISTING = "relisting"  #: a retried publish: its listing is pending again
    ENQUEUE_DELIST = "enqueue_delist"  #: a listing landed for a product already gone: take it down
    DELIST_ON_LANDING = "delist_on_landing"  #: remember to take the listing down when it lands
    WAIT_AGAIN = "wait_again"  #: keep the plugin task queued; look at the wait again one max age later
    WITHDRAW_TASK = "withdraw_task"  #: the job's plugin task leaves the plugin queue
    RESET_PROGRESS = "reset_progress"  #: start afresh at the marketplace (keep what finds the listing)
    REFUND_CREDIT = "refund_credit"  #: an AI description that was not written gives its credit back
    OPEN_HISTORY = "open_history"  #: an attempt starts (or carries on the one a plugin wait opened)
    HISTORY_SUCCEEDED = "history_succeeded"  #: the attempt's history row ends succeeded
    HISTORY_FAILED = "history_failed"  #: ... failed
    HISTORY_RETRYING = "history_retrying"  #: ... will be tried again


@dataclass(frozen=True)
class JobState:
    """What the transition rules need to know of a job."""

    status: JobStatus
    action: JobAction
    attempts: int = 0
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    #: a marketplace call may have happened (a step saved, or a plugin task released)
    reached_marketplace: bool = False
    #: waiting_plugin only: the task is under a live plugin lease (the plugin may be running it)
    task_leased: bool = False
    #: the product went away while this publish was in flight: delist the listing when it lands
    delist_on_landing: bool = False

    def evolve(self, **changes: object) -> JobState:
        return replace(self, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Transition:
    """The outcome of one event: the new status, its error code (failed only), the effects to apply."""

    status: JobStatus
    error_code: str | None = None
    effects: frozenset[Effect] = frozenset()


class IllegalTransition(ValueError):
    """The event cannot happen to a job in this state (a stale worker, or a user command too late)."""

    def __init__(self, job: JobState, event: JobEvent, reason: str | None = None) -> None:
        super().__init__(f"a {job.status} {job.action} job cannot take {event}")
        self.job = job
        self.event = event
        #: a sentence for the user when the rule that refused has one (else the caller words it)
        self.reason = reason


_S = JobStatus
_WAITING: frozenset[JobStatus] = frozenset({_S.PENDING, _S.QUEUED, _S.RATE_LIMITED})
#: Actions that put the product on a marketplace: they must not run for a product that is gone.
_LISTING_ACTIONS: frozenset[JobAction] = frozenset({JobAction.PUBLISH, JobAction.UPDATE})
_FREES_CREDIT: frozenset[JobAction] = frozenset({JobAction.GENERATE_DESCRIPTION})


def _ended_without_result(job: JobState, status: JobStatus, code: str | None, *extra: Effect) -> Transition:
    """A job that ends without doing its work: free what it held, close its attempt."""
    effects = {*extra, Effect.HISTORY_FAILED}
    if job.action is JobAction.PUBLISH:
        effects.add(Effect.RELEASE_LISTING)
    if job.action in _FREES_CREDIT:
        effects.add(Effect.REFUND_CREDIT)
    return Transition(status, code, frozenset(effects))


def _landed(job: JobState, product: ProductCondition) -> Transition:
    effects = {Effect.HISTORY_SUCCEEDED}
    if job.action is JobAction.PUBLISH:
        effects.add(Effect.LISTING_LIVE)
        if job.delist_on_landing or product is ProductCondition.GONE:
            effects.add(Effect.ENQUEUE_DELIST)
    elif job.action is JobAction.UPDATE:
        effects.add(Effect.LISTING_SYNCED)
    elif job.action is JobAction.DELIST:
        effects.add(Effect.LISTING_ENDED)
    return Transition(_S.SUCCEEDED, None, frozenset(effects))


def _failed_for_now(job: JobState) -> Transition:
    if job.attempts >= job.max_attempts:
        return _ended_without_result(job, _S.FAILED, JobErrorCode.ATTEMPTS_EXHAUSTED, Effect.HISTORY_FAILED)
    return Transition(_S.PENDING, None, frozenset({Effect.HISTORY_RETRYING}))


def transition(job: JobState, event: JobEvent, product: ProductCondition) -> Transition:
    """Decide what `event` does to `job` whose product is in `product`'s condition.

    Raises IllegalTransition when the event cannot apply (the caller answers 409, or drops a stale run).
    """
    status = job.status
    gone = product is ProductCondition.GONE and job.action in _LISTING_ACTIONS
    if event is JobEvent.HANDED_OFF and status in (_S.PENDING, _S.RATE_LIMITED):
        return Transition(_S.QUEUED)
    if event is JobEvent.CLAIMED and status in _WAITING:
        # A publish that may already be on the marketplace runs on so that it lands and comes down.
        if gone and (job.action is JobAction.UPDATE or not job.reached_marketplace):
            return _ended_without_result(job, _S.FAILED, JobErrorCode.PRODUCT_CHANGED)
        return Transition(_S.RUNNING, None, frozenset({Effect.OPEN_HISTORY}))
    if status is _S.RUNNING:
        if event is JobEvent.SUCCEEDED:
            return _landed(job, product)
        if event is JobEvent.PARKED:
            return Transition(_S.WAITING_PLUGIN)
        if event is JobEvent.TRANSIENT_FAILURE or event is JobEvent.LEASE_EXPIRED:
            return _failed_for_now(job)
        if event is JobEvent.PERMANENT_FAILURE:
            return _ended_without_result(job, _S.FAILED, None, Effect.HISTORY_FAILED)
        if event is JobEvent.RATE_LIMITED:
            return Transition(_S.RATE_LIMITED, None, frozenset({Effect.HISTORY_RETRYING}))
    # The one job that takes a gone product's listing down is never given up, by the user or for a plugin
    # that stays away: giving it up leaves the product on sale (a double sale). It can only end by running.
    taking_down = job.action is JobAction.DELIST and product is ProductCondition.GONE
    if event is JobEvent.CANCEL and taking_down and status in UNFINISHED:
        raise IllegalTransition(job, event, GONE_DELIST_NOT_CANCELLABLE)
    if status is _S.WAITING_PLUGIN:
        if event is JobEvent.PLUGIN_REPORTED:
            return Transition(_S.PENDING)
        if event is JobEvent.PLUGIN_EXPIRED and taking_down:
            return Transition(_S.WAITING_PLUGIN, None, frozenset({Effect.WAIT_AGAIN}))
        if event is JobEvent.PLUGIN_EXPIRED:
            return _ended_without_result(
                job, _S.FAILED, JobErrorCode.PLUGIN_UNAVAILABLE, Effect.WITHDRAW_TASK, Effect.HISTORY_FAILED
            )
        if event is JobEvent.CANCEL and not job.task_leased:
            return _ended_without_result(job, _S.CANCELLED, None, Effect.WITHDRAW_TASK, Effect.HISTORY_FAILED)
    if event is JobEvent.CANCEL and status in _WAITING:
        return _ended_without_result(job, _S.CANCELLED, None)
    if event is JobEvent.RETRY and status is _S.FAILED:
        effects = {Effect.RESET_PROGRESS}
        if job.action is JobAction.PUBLISH:
            effects.add(Effect.RELISTING)
        return Transition(_S.PENDING, None, frozenset(effects))
    if event is JobEvent.PRODUCT_GONE and job.action in _LISTING_ACTIONS and status in UNFINISHED:
        return _product_gone(job)
    raise IllegalTransition(job, event)


def _product_gone(job: JobState) -> Transition:
    """A sale, archive or deletion while this publish or update is unfinished: no listing may survive it."""
    if job.action is JobAction.UPDATE:
        # An update of a product that is coming down is pointless once it has not started.
        if job.status in _WAITING:
            return _ended_without_result(job, _S.CANCELLED, JobErrorCode.PRODUCT_CHANGED)
        return Transition(job.status)
    if job.status in _WAITING and not job.reached_marketplace:
        return _ended_without_result(job, _S.CANCELLED, JobErrorCode.PRODUCT_CHANGED)
    if job.status is _S.WAITING_PLUGIN and not job.reached_marketplace:
        # Its task was never handed to a plugin: withdraw it, nothing reached Vinted.
        return _ended_without_result(job, _S.CANCELLED, JobErrorCode.PRODUCT_CHANGED, Effect.WITHDRAW_TASK)
    # It may already be on the marketplace (or about to be): take it down as soon as it lands.
    return Transition(job.status, None, frozenset({Effect.DELIST_ON_LANDING}))
