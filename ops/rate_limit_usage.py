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


def vinted_member_key(vinted_user_id: str) -> str:
    """Name the Redis key of one Vinted member's rate-limit log.

    The budget belongs to the member, whichever tenant or account row names it: disconnecting and
    reconnecting, or two tenants naming the same member, share this one key.
    """
    return f"stoflow:ratelimit:{{vinted:m{vinted_user_id}}}"


def vinted_sale_check_key(vinted_user_id: str) -> str:
    """Name the Redis key logging the slots the member's sale checks took (its share of the budget)."""
    return f"stoflow:ratelimit:{{vinted:m{vinted_user_id}}}:sale-checks"


# KEYS[1] a member's log; ARGV: window in microseconds, then (score, member) pairs. When the key is missing
# (Redis flushed, restarted without persistence, or never used), it is rebuilt from those entries: the
# requests PostgreSQL knows were released in the last window. An existing key is left alone.
SEED_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local added = 0
for i = 2, #ARGV, 2 do
  redis.call('ZADD', KEYS[1], tonumber(ARGV[i]), ARGV[i + 1])
  added = added + 1
end
if added > 0 then redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[1]) / 1000)) end
return added
"""


async def seed_if_missing(
    redis: Redis, key: str, releases: list[tuple[str, datetime, int]], *, window_seconds: int
) -> int:
    """Rebuild a lost log from (task id, released at, slots) rows; return the slots added (0: key present)."""
    if not releases or await redis.exists(key):
        return 0
    args: list[str | int] = [window_seconds * MICROSECONDS]
    for task_id, released_at, slots in releases:
        score = int((released_at - _EPOCH) / timedelta(microseconds=1))
        for index in range(slots):
            args += [score, f"pg:{task_id}#{index}"]
    added = await redis.register_script(SEED_SCRIPT)(keys=[key], args=args)
    return int(added)


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
