"""The Vinted rate limiter against real Redis: budget, all-or-nothing, exact deferral, usage, keys."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis
from redis.crc import key_slot

from ops.adapters.rate_limit import (
    RateLimitUsage,
    Reservation,
    SlidingWindowLimiter,
    from_redis_micros,
    read_usage,
    vinted_member_key,
)

LIMIT = 40
WINDOW = 7200


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def new_key(redis: Redis) -> AsyncIterator[Callable[[str], str]]:
    """Hand out keys under a prefix of this test's own, and delete them afterwards."""
    prefix = f"test:{uuid.uuid4().hex}"
    made: list[str] = []

    def make(account: str = "a1") -> str:
        key = f"{prefix}:ratelimit:{{vinted:{prefix}:{account}}}"
        made.append(key)
        return key

    yield make
    if made:
        await redis.delete(*made)


async def scores(redis: Redis, key: str) -> list[int]:
    return [int(score) for _member, score in await redis.zrange(key, 0, -1, withscores=True)]


def to_micros(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


async def redis_now(redis: Redis) -> datetime:
    seconds, microseconds = await redis.time()
    return from_redis_micros(seconds * 1_000_000 + microseconds)


async def sleep_until(redis: Redis, moment: datetime) -> None:
    """Sleep until Redis's clock has reached `moment` (2 ms late: the loop's timer may fire early)."""
    delay = (moment - await redis_now(redis)).total_seconds()
    await asyncio.sleep(max(delay, 0) + 0.002)
    assert await redis_now(redis) >= moment


async def test_grants_up_to_the_limit_then_refuses(redis: Redis, new_key: Callable[[str], str]) -> None:
    limiter = SlidingWindowLimiter(redis, LIMIT, WINDOW)
    key = new_key("a1")

    for taken in range(1, LIMIT + 1):
        reservation = await limiter.acquire(key, 1)
        assert reservation.granted
        assert (reservation.used, reservation.remaining, reservation.available_at) == (
            taken,
            LIMIT - taken,
            None,
        )

    refused = await limiter.acquire(key, 1)

    oldest = min(await scores(redis, key))
    assert refused == Reservation(
        granted=False,
        used=LIMIT,
        remaining=0,
        available_at=from_redis_micros(oldest) + timedelta(seconds=WINDOW),
    )
    assert refused.decided_at is not None
    assert await redis.zcard(key) == LIMIT


async def test_multi_slot_requests_are_all_or_nothing(redis: Redis, new_key: Callable[[str], str]) -> None:
    limiter = SlidingWindowLimiter(redis, LIMIT, WINDOW)
    key = new_key("a1")
    assert (await limiter.acquire(key, 38)).used == 38

    refused = await limiter.acquire(key, 3)

    assert not refused.granted and (refused.used, refused.remaining) == (38, 2)
    assert await redis.zcard(key) == 38  # nothing taken

    granted = await limiter.acquire(key, 2)

    assert granted.granted and (granted.used, granted.remaining) == (40, 0)
    assert await redis.zcard(key) == 40


async def test_slots_of_one_request_are_distinct_members_of_one_instant(
    redis: Redis, new_key: Callable[[str], str]
) -> None:
    limiter = SlidingWindowLimiter(redis, LIMIT, WINDOW)
    key = new_key("a1")

    first = await limiter.acquire(key, 5)
    second = await limiter.acquire(key, 3)

    members = await redis.zrange(key, 0, -1, withscores=True)
    assert len(members) == 8 and len({member for member, _score in members}) == 8
    assert first.decided_at is not None and second.decided_at is not None
    stamps = sorted({from_redis_micros(int(score)) for _member, score in members})
    assert stamps == sorted({first.decided_at, second.decided_at})  # scored with Redis's clock


async def test_available_at_is_the_oldest_needed_entry_plus_the_window(
    redis: Redis, new_key: Callable[[str], str]
) -> None:
    window = 2
    limiter = SlidingWindowLimiter(redis, 3, window)
    key = new_key("a1")
    for _ in range(3):
        assert (await limiter.acquire(key, 1)).granted
        await asyncio.sleep(0.05)

    refused = await limiter.acquire(key, 2)  # needs the two oldest entries gone

    second_oldest = sorted(await scores(redis, key))[1]
    expected = from_redis_micros(second_oldest) + timedelta(seconds=window)
    assert not refused.granted and refused.available_at == expected

    await sleep_until(redis, expected - timedelta(milliseconds=30))
    early = await limiter.acquire(key, 2)
    assert not early.granted and early.available_at == expected
    assert early.decided_at is not None and early.decided_at < expected

    await sleep_until(redis, expected)
    on_time = await limiter.acquire(key, 2)
    assert on_time.granted and (on_time.used, on_time.remaining) == (3, 0)


async def test_a_request_larger_than_the_limit_is_an_error(
    redis: Redis, new_key: Callable[[str], str]
) -> None:
    limiter = SlidingWindowLimiter(redis, LIMIT, WINDOW)
    key = new_key("a1")

    with pytest.raises(ValueError, match="between 1 and the limit"):
        await limiter.acquire(key, LIMIT + 1)
    with pytest.raises(ValueError, match="between 1 and the limit"):
        await limiter.acquire(key, 0)
    assert not await redis.exists(key)


async def test_usage_reports_used_remaining_and_reset(redis: Redis, new_key: Callable[[str], str]) -> None:
    window = 1
    limiter = SlidingWindowLimiter(redis, LIMIT, window)
    key = new_key("a1")

    assert await limiter.usage(key) == RateLimitUsage(
        limit=LIMIT, window_seconds=window, used=0, remaining=LIMIT, resets_at=None
    )

    await limiter.acquire(key, 3)
    await asyncio.sleep(0.1)
    await limiter.acquire(key, 2)

    oldest = min(await scores(redis, key))
    expected = RateLimitUsage(
        limit=LIMIT,
        window_seconds=window,
        used=5,
        remaining=LIMIT - 5,
        resets_at=from_redis_micros(oldest) + timedelta(seconds=window),
    )
    assert await limiter.usage(key) == expected
    assert await read_usage(redis, key, limit=LIMIT, window_seconds=window) == expected
    assert expected.resets_at is not None and expected.resets_at.tzinfo is UTC

    # A lowered limit never reports a negative remainder.
    lowered = await read_usage(redis, key, limit=4, window_seconds=window)
    assert (lowered.used, lowered.remaining) == (5, 0)

    # The oldest three leave first; read-only, so the entries are still stored but no longer counted.
    await sleep_until(redis, expected.resets_at)
    partly = await limiter.usage(key)
    assert (partly.used, partly.remaining) == (2, LIMIT - 2)
    assert partly.resets_at is not None and partly.resets_at > expected.resets_at
    assert await redis.zcard(key) == 5

    await sleep_until(redis, partly.resets_at)
    assert await limiter.usage(key) == RateLimitUsage(
        limit=LIMIT, window_seconds=window, used=0, remaining=LIMIT, resets_at=None
    )


async def test_the_key_expires_a_window_after_the_last_grant(
    redis: Redis, new_key: Callable[[str], str]
) -> None:
    limiter = SlidingWindowLimiter(redis, LIMIT, WINDOW)
    key = new_key("a1")

    await limiter.acquire(key, 1)

    assert WINDOW * 1000 - 5_000 < await redis.pttl(key) <= WINDOW * 1000


async def test_member_keys_carry_one_hash_tag_per_vinted_member() -> None:
    key = vinted_member_key("9001")

    assert key == "stoflow:ratelimit:{vinted:m9001}"
    tags = re.findall(r"\{([^{}]+)\}", key)
    assert tags == ["vinted:m9001"]
    # Redis Cluster hashes only the tag: any key of this member lands on the same slot.
    assert key_slot(key.encode()) == key_slot(b"{vinted:m9001}") == key_slot(f"{key}:audit".encode())
    others = {vinted_member_key("9002"), vinted_member_key("90011"), vinted_member_key("1")}
    assert key not in others and len(others) == 3


async def test_two_accounts_do_not_share_a_budget(redis: Redis, new_key: Callable[[str], str]) -> None:
    limiter = SlidingWindowLimiter(redis, LIMIT, WINDOW)
    first, second = new_key("a1"), new_key("a2")

    assert (await limiter.acquire(first, LIMIT)).granted
    assert not (await limiter.acquire(first, 1)).granted

    other = await limiter.acquire(second, 1)

    assert other.granted and (other.used, other.remaining) == (1, LIMIT - 1)
    assert (await limiter.usage(first)).used == LIMIT
    assert (await limiter.usage(second)).used == 1


async def test_entries_older_than_the_window_are_pruned_on_acquire(
    redis: Redis, new_key: Callable[[str], str]
) -> None:
    limiter = SlidingWindowLimiter(redis, 2, 1)
    key = new_key("a1")
    first = await limiter.acquire(key, 2)
    assert first.decided_at is not None

    await sleep_until(redis, first.decided_at + timedelta(seconds=1))
    again = await limiter.acquire(key, 2)

    assert again.granted and again.used == 2
    assert again.decided_at is not None
    assert set(await scores(redis, key)) == {to_micros(again.decided_at)}
