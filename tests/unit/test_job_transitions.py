"""The job lifecycle's one transition function: every rule, table-driven."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from domain.jobs import (
    GONE_DELIST_NOT_CANCELLABLE,
    UNFINISHED,
    Effect,
    IllegalTransition,
    JobAction,
    JobErrorCode,
    JobEvent,
    JobState,
    JobStatus,
    ProductCondition,
    job_id_for_arq,
    retry_delay,
    transition,
)

S, E, A = JobStatus, JobEvent, JobAction
OK, GONE, NONE = ProductCondition.AVAILABLE, ProductCondition.GONE, ProductCondition.NONE


def job(status: JobStatus, action: JobAction = A.PUBLISH, **fields: object) -> JobState:
    return JobState(status=status, action=action).evolve(**fields)


@pytest.mark.parametrize(
    ("state", "event", "product", "status", "code", "effects"),
    [
        (job(S.PENDING), E.HANDED_OFF, OK, S.QUEUED, None, set()),
        (job(S.RATE_LIMITED), E.HANDED_OFF, OK, S.QUEUED, None, set()),
        (job(S.QUEUED), E.CLAIMED, OK, S.RUNNING, None, {Effect.OPEN_HISTORY}),
        (job(S.PENDING, A.IMPORT), E.CLAIMED, NONE, S.RUNNING, None, {Effect.OPEN_HISTORY}),
        # A product gone before anything reached the marketplace: the publish never runs.
        (
            job(S.QUEUED),
            E.CLAIMED,
            GONE,
            S.FAILED,
            JobErrorCode.PRODUCT_CHANGED,
            {Effect.RELEASE_LISTING, Effect.HISTORY_FAILED},
        ),
        (
            job(S.QUEUED, A.UPDATE),
            E.CLAIMED,
            GONE,
            S.FAILED,
            JobErrorCode.PRODUCT_CHANGED,
            {Effect.HISTORY_FAILED},
        ),
        # ...but a publish that may already be there runs on, to land and come down.
        (job(S.PENDING, reached_marketplace=True), E.CLAIMED, GONE, S.RUNNING, None, {Effect.OPEN_HISTORY}),
        (job(S.QUEUED, A.DELIST), E.CLAIMED, GONE, S.RUNNING, None, {Effect.OPEN_HISTORY}),
        (job(S.RUNNING), E.SUCCEEDED, OK, S.SUCCEEDED, None, {Effect.HISTORY_SUCCEEDED, Effect.LISTING_LIVE}),
        (
            job(S.RUNNING, delist_on_landing=True),
            E.SUCCEEDED,
            OK,
            S.SUCCEEDED,
            None,
            {Effect.HISTORY_SUCCEEDED, Effect.LISTING_LIVE, Effect.ENQUEUE_DELIST},
        ),
        (
            job(S.RUNNING),
            E.SUCCEEDED,
            GONE,
            S.SUCCEEDED,
            None,
            {Effect.HISTORY_SUCCEEDED, Effect.LISTING_LIVE, Effect.ENQUEUE_DELIST},
        ),
        (
            job(S.RUNNING, A.UPDATE),
            E.SUCCEEDED,
            OK,
            S.SUCCEEDED,
            None,
            {Effect.HISTORY_SUCCEEDED, Effect.LISTING_SYNCED},
        ),
        (
            job(S.RUNNING, A.DELIST),
            E.SUCCEEDED,
            GONE,
            S.SUCCEEDED,
            None,
            {Effect.HISTORY_SUCCEEDED, Effect.LISTING_ENDED},
        ),
        (job(S.RUNNING, A.IMPORT), E.SUCCEEDED, NONE, S.SUCCEEDED, None, {Effect.HISTORY_SUCCEEDED}),
        (job(S.RUNNING), E.PARKED, OK, S.WAITING_PLUGIN, None, set()),
        (job(S.RUNNING, attempts=1), E.TRANSIENT_FAILURE, OK, S.PENDING, None, {Effect.HISTORY_RETRYING}),
        (job(S.RUNNING, attempts=2), E.LEASE_EXPIRED, OK, S.PENDING, None, {Effect.HISTORY_RETRYING}),
        (
            job(S.RUNNING, attempts=5),
            E.TRANSIENT_FAILURE,
            OK,
            S.FAILED,
            JobErrorCode.ATTEMPTS_EXHAUSTED,
            {Effect.HISTORY_FAILED, Effect.RELEASE_LISTING},
        ),
        (
            job(S.RUNNING, A.GENERATE_DESCRIPTION, attempts=5),
            E.LEASE_EXPIRED,
            OK,
            S.FAILED,
            JobErrorCode.ATTEMPTS_EXHAUSTED,
            {Effect.HISTORY_FAILED, Effect.REFUND_CREDIT},
        ),
        (
            job(S.RUNNING),
            E.PERMANENT_FAILURE,
            OK,
            S.FAILED,
            None,
            {Effect.HISTORY_FAILED, Effect.RELEASE_LISTING},
        ),
        (job(S.RUNNING, A.DELIST), E.PERMANENT_FAILURE, OK, S.FAILED, None, {Effect.HISTORY_FAILED}),
        (job(S.RUNNING), E.RATE_LIMITED, OK, S.RATE_LIMITED, None, {Effect.HISTORY_RETRYING}),
        (job(S.WAITING_PLUGIN), E.PLUGIN_REPORTED, OK, S.PENDING, None, set()),
        (
            job(S.WAITING_PLUGIN),
            E.PLUGIN_EXPIRED,
            OK,
            S.FAILED,
            JobErrorCode.PLUGIN_UNAVAILABLE,
            {Effect.WITHDRAW_TASK, Effect.HISTORY_FAILED, Effect.RELEASE_LISTING},
        ),
        # A gone product's delist outlasts an absent plugin: its task stays queued, the wait is renewed.
        (
            job(S.WAITING_PLUGIN, A.DELIST),
            E.PLUGIN_EXPIRED,
            GONE,
            S.WAITING_PLUGIN,
            None,
            {Effect.WAIT_AGAIN},
        ),
        (
            job(S.WAITING_PLUGIN, A.DELIST),
            E.PLUGIN_EXPIRED,
            OK,
            S.FAILED,
            JobErrorCode.PLUGIN_UNAVAILABLE,
            {Effect.WITHDRAW_TASK, Effect.HISTORY_FAILED},
        ),
        (job(S.WAITING_PLUGIN, A.DELIST), E.PLUGIN_REPORTED, GONE, S.PENDING, None, set()),
        (
            job(S.WAITING_PLUGIN),
            E.CANCEL,
            OK,
            S.CANCELLED,
            None,
            {Effect.WITHDRAW_TASK, Effect.HISTORY_FAILED, Effect.RELEASE_LISTING},
        ),
        (job(S.PENDING), E.CANCEL, OK, S.CANCELLED, None, {Effect.HISTORY_FAILED, Effect.RELEASE_LISTING}),
        (job(S.QUEUED, A.DELIST), E.CANCEL, OK, S.CANCELLED, None, {Effect.HISTORY_FAILED}),
        (
            job(S.RATE_LIMITED, A.GENERATE_DESCRIPTION),
            E.CANCEL,
            NONE,
            S.CANCELLED,
            None,
            {Effect.HISTORY_FAILED, Effect.REFUND_CREDIT},
        ),
        (job(S.FAILED), E.RETRY, OK, S.PENDING, None, {Effect.RESET_PROGRESS, Effect.RELISTING}),
        (job(S.FAILED, A.DELIST), E.RETRY, OK, S.PENDING, None, {Effect.RESET_PROGRESS}),
        # A product goes away while its publish is unfinished.
        (
            job(S.PENDING),
            E.PRODUCT_GONE,
            GONE,
            S.CANCELLED,
            JobErrorCode.PRODUCT_CHANGED,
            {Effect.HISTORY_FAILED, Effect.RELEASE_LISTING},
        ),
        (
            job(S.WAITING_PLUGIN),
            E.PRODUCT_GONE,
            GONE,
            S.CANCELLED,
            JobErrorCode.PRODUCT_CHANGED,
            {Effect.WITHDRAW_TASK, Effect.HISTORY_FAILED, Effect.RELEASE_LISTING},
        ),
        (
            job(S.WAITING_PLUGIN, reached_marketplace=True),
            E.PRODUCT_GONE,
            GONE,
            S.WAITING_PLUGIN,
            None,
            {Effect.DELIST_ON_LANDING},
        ),
        (job(S.RUNNING), E.PRODUCT_GONE, GONE, S.RUNNING, None, {Effect.DELIST_ON_LANDING}),
        (
            job(S.QUEUED, reached_marketplace=True),
            E.PRODUCT_GONE,
            GONE,
            S.QUEUED,
            None,
            {Effect.DELIST_ON_LANDING},
        ),
        (
            job(S.RATE_LIMITED, A.UPDATE),
            E.PRODUCT_GONE,
            GONE,
            S.CANCELLED,
            JobErrorCode.PRODUCT_CHANGED,
            {Effect.HISTORY_FAILED},
        ),
        (job(S.RUNNING, A.UPDATE), E.PRODUCT_GONE, GONE, S.RUNNING, None, set()),
    ],
)
def test_each_event_moves_a_job_as_the_lifecycle_says(
    state: JobState,
    event: JobEvent,
    product: ProductCondition,
    status: JobStatus,
    code: str | None,
    effects: set[Effect],
) -> None:
    change = transition(state, event, product)

    assert (change.status, change.error_code, set(change.effects)) == (status, code, effects)


@pytest.mark.parametrize(
    ("state", "event"),
    [
        (job(S.RUNNING), E.CLAIMED),  # a second worker on a run already taken
        (job(S.SUCCEEDED), E.SUCCEEDED),  # a stale run finishing twice
        (job(S.RUNNING), E.CANCEL),  # the user cannot stop a running step
        (job(S.WAITING_PLUGIN, task_leased=True), E.CANCEL),  # a plugin holds the task
        (job(S.SUCCEEDED), E.CANCEL),
        (job(S.PENDING), E.RETRY),  # only a failed job is retried
        (job(S.CANCELLED), E.RETRY),
        (job(S.SUCCEEDED), E.PRODUCT_GONE),
        (job(S.PENDING, A.DELIST), E.PRODUCT_GONE),  # a delist is what the sale wants
        (job(S.PENDING), E.PLUGIN_REPORTED),
        (job(S.QUEUED), E.HANDED_OFF),
        (job(S.FAILED), E.LEASE_EXPIRED),
    ],
)
def test_an_event_that_cannot_apply_is_refused(state: JobState, event: JobEvent) -> None:
    with pytest.raises(IllegalTransition) as refused:
        transition(state, event, OK)

    assert refused.value.job == state and refused.value.event is event
    assert str(state.status) in str(refused.value)


@pytest.mark.parametrize("status", sorted(UNFINISHED))
def test_the_delist_of_a_gone_product_is_never_cancelled(status: JobStatus) -> None:
    """Cancelling it would leave a sold, archived or deleted product on sale: the user is told why."""
    state = job(status, A.DELIST)
    with pytest.raises(IllegalTransition) as refused:
        transition(state, E.CANCEL, GONE)

    assert refused.value.reason == GONE_DELIST_NOT_CANCELLABLE
    if status is not S.RUNNING:
        assert transition(state, E.CANCEL, OK).status is S.CANCELLED


def test_no_event_leaves_an_unfinished_job_without_a_way_on() -> None:
    """From every unfinished state some event moves the job; from every finished one only a retry does."""
    for status in JobStatus:
        moves = set()
        for event in JobEvent:
            try:
                moves.add(transition(job(status), event, OK).status)
            except IllegalTransition:
                continue
        if status in UNFINISHED:
            assert moves - {status}, status
        elif status is S.FAILED:
            assert moves == {S.PENDING}
        else:
            assert moves == set(), status


def test_backoff_grows_with_full_jitter_and_a_ceiling() -> None:
    rng = random.Random(7)
    first = retry_delay(1, rng=rng)
    tenth = retry_delay(10, rng=rng)

    assert timedelta(seconds=1) <= first <= timedelta(seconds=2)
    assert timedelta(minutes=5) <= tenth <= timedelta(minutes=10)
    assert job_id_for_arq("abc", 3) == "abc:3"
