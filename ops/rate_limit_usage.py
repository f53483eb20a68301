"""The read side of the rate limiter: account keys and how much of a window is spent.

The gateway answers `GET /api/integrations/vinted/accounts/{id}/rate-limit` from here without importing
`workers/`. The writer (`workers.rate_limit.SlidingWindowLimiter`) keeps one sorted set per account: one
member per slot taken, scored with Redis's own clock in integer microseconds. This module reads that set with
the same clock and the same rule, so both sides agree to the microsecond on what is still in the window: a
slot taken at `t` counts while `now < t + window`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from redis.asyncio import Redis

MICROSECONDS = 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# KEYS[1] the account's log; ARGV[1] window in microseconds.
# Returns {used, now, oldest}: slots still in the window, Redis's clock, and the oldest counted slot's
# timestamp (0 when none), all in integer microseconds. Reads only: entries that left the window are
# skipped here and pruned by the writer.
READ_USAGE_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local floor = now - tonumber(ARGV[1]) + 1
local used = redis.call('ZCOUNT', KEYS[1], floor, '+inf')
if used == 0 then return {0, now, 0} end
local oldest = redis.call('ZRANGEBYSCORE', KEYS[1], floor, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
return {used, now, tonumber(oldest[2])}
"""


def vinted_account_key(tenant_id: int, account_id: int) -> str:
    """Name the Redis key of one Vinted account's rate-limit log.

    The `{...}` hash tag holds the whole account identity, so every key of one account hashes to the same
    Redis Cluster slot (a Lua script may only touch keys of one slot) and two accounts never collide.
    """
    return f"stoflow:ratelimit:{{vinted:t{int(tenant_id)}:a{int(account_id)}}}"


def from_redis_micros(microseconds: int) -> datetime:
    """Turn integer microseconds since the epoch (Redis TIME) into an exact UTC datetime."""
    return _EPOCH + timedelta(microseconds=int(microseconds))


@dataclass(frozen=True)
class RateLimitUsage:
    """How much of one account's window is spent, as the rate-limit endpoint reports it."""

    limit: int
    window_seconds: int
    #: slots taken within the last window
    used: int
    #: slots that can still be taken now (never negative, even if the limit was lowered)
    remaining: int
    #: when the oldest counted slot leaves the window; None when `used` is 0
    resets_at: datetime | None


async def read_usage(redis: Redis, key: str, *, limit: int, window_seconds: int) -> RateLimitUsage:
    """Read how many slots of `key` are spent in the window ending now (Redis's clock)."""
    script = redis.register_script(READ_USAGE_SCRIPT)
    answer = await script(keys=[key], args=[window_seconds * MICROSECONDS])
    used, _now, oldest = (int(value) for value in answer)
    return RateLimitUsage(
        limit=limit,
        window_seconds=window_seconds,
        used=used,
        remaining=max(limit - used, 0),
        resets_at=from_redis_micros(oldest + window_seconds * MICROSECONDS) if used else None,
    )
