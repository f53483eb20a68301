"""Rate limits in Redis, both sides in one module: the Lua scripts that take slots and the reads of a window.

A limited key (a Vinted member's budget, `vinted_member_key`; a marketplace application's request rate,
`application_key`) is one sorted set holding one member per slot taken, scored with the moment it was taken.
The workers take slots with `SlidingWindowLimiter.acquire`: a task reserves all the slots it needs or none, in
one script, so any number of worker processes share the budget without a lock and without overshooting it.
The gateway and the operator console read a window with `read_usage` (the rate-limit endpoint, the Vinted
budgets panel) and never take a slot; `seed_if_missing` rebuilds a lost log from PostgreSQL's record.

Why a sliding log rather than fixed windows or a token bucket: Vinted's limit is "at most N requests in any
2 hours". A fixed window lets 2N through around its boundary (N at 1:59, N at 2:01); a counter or bucket only
approximates the rule. The log is exact: it holds every slot still in the window, so it can say precisely
how many are used and *when* enough will have left (`available_at`), and the caller defers the job to that
moment instead of polling. At 40 slots per account the log stays tiny.

Why Redis's clock (TIME inside every script) rather than the caller's: every worker, on every host, is judged
by the same clock, so a host whose clock runs slow or fast can neither widen the window nor see slots expire
early, and the read side agrees with the writer to the microsecond: a slot taken at `t` counts while
`now < t + window`. Timestamps are integer microseconds, exact in Lua's doubles.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
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


# KEYS[1] the account's log. ARGV: limit, window in microseconds, slots wanted (1..limit).
# Returns {granted, used, now, available_at}, times in integer microseconds of Redis's clock:
#   granted = 1: `slots` members were added at `now`; `used` includes them; available_at = 0.
#   granted = 0: nothing was added; `used` is the count now in the window; available_at is the moment
#     enough slots will have left: the (used + slots - limit)-th oldest entry's timestamp + window.
# Members are "<seconds>.<microseconds>#<n>" where n follows the entries already scored at `now`; entries
# of one timestamp are pruned together, so members stay unique even for many slots in one microsecond.
# The key expires a window after the last grant, when every entry in it has left the window anyway.
ACQUIRE_SCRIPT = """
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local slots = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local used = redis.call('ZCARD', KEYS[1])
if used + slots > limit then
  local nth = used + slots - limit
  local entry = redis.call('ZRANGE', KEYS[1], nth - 1, nth - 1, 'WITHSCORES')
  return {0, used, now, tonumber(entry[2]) + window}
end
local stamp = t[1] .. '.' .. string.format('%06d', tonumber(t[2])) .. '#'
local same = redis.call('ZCOUNT', KEYS[1], now, now)
for i = 1, slots do
  redis.call('ZADD', KEYS[1], now, stamp .. (same + i))
end
redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000))
return {1, used + slots, now, 0}
"""

# A Vinted sale check's slots, decided in one step with the member's whole budget.
# KEYS[1] the member's log, KEYS[2] the log of its sale checks' slots (same hash tag). ARGV: limit, window
# in microseconds, slots wanted, share (most slots the checks may hold in a window), reserve (slots the
# member's waiting publish/update/delist jobs need). Granted only when the checks stay within their share
# AND, after them, the window still has `reserve` slots free: a check never takes a slot a waiting
# publication needs. Returns {granted, used, now, available_at} like ACQUIRE_SCRIPT; a refusal's
# available_at is when the share frees, or when enough of the member's slots will have left the window
# (a whole window from now when the reserve alone fills it).
SALE_CHECK_ACQUIRE_SCRIPT = """
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local slots = tonumber(ARGV[3])
local share = tonumber(ARGV[4])
local reserve = tonumber(ARGV[5])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
local used = redis.call('ZCARD', KEYS[1])
local checks = redis.call('ZCARD', KEYS[2])
if checks + slots > share then
  local nth = checks + slots - share
  local entry = redis.call('ZRANGE', KEYS[2], nth - 1, nth - 1, 'WITHSCORES')
  return {0, used, now, tonumber(entry[2]) + window}
end
if used + slots + reserve > limit then
  local nth = used + slots + reserve - limit
  if nth > used then nth = used end
  if nth < 1 then return {0, used, now, now + window} end
  local entry = redis.call('ZRANGE', KEYS[1], nth - 1, nth - 1, 'WITHSCORES')
  return {0, used, now, tonumber(entry[2]) + window}
end
local stamp = t[1] .. '.' .. string.format('%06d', tonumber(t[2])) .. '#'
for k = 1, 2 do
  local same = redis.call('ZCOUNT', KEYS[k], now, now)
  for i = 1, slots do
    redis.call('ZADD', KEYS[k], now, stamp .. (same + i))
  end
  redis.call('PEXPIRE', KEYS[k], math.ceil(window / 1000))
end
return {1, used + slots, now, 0}
"""


@dataclass(frozen=True)
class Reservation:
    """The answer to one `acquire`: all the slots asked for, or none and when to come back."""

    granted: bool
    #: slots counted in the window after this decision (including the ones just granted)
    used: int
    #: slots still free after this decision
    remaining: int
    #: when refused, the exact moment enough slots will be free; None when granted
    available_at: datetime | None
    #: Redis's clock at the decision, the timestamp the granted slots carry (set by the limiter; None only
    #: in hand-built values)
    decided_at: datetime | None = field(default=None, compare=False)


class SlidingWindowLimiter:
    """At most `limit` slots per key in any `window_seconds`, shared by every process using the same Redis."""

    def __init__(self, redis: Redis, limit: int, window_seconds: int) -> None:
        if limit < 1 or window_seconds < 1:
            raise ValueError("limit and window_seconds must be at least 1")
        self._redis = redis
        self.limit = limit
        self.window_seconds = window_seconds
        self._acquire = redis.register_script(ACQUIRE_SCRIPT)
        self._acquire_check = redis.register_script(SALE_CHECK_ACQUIRE_SCRIPT)

    async def acquire(self, key: str, slots: int) -> Reservation:
        """Take `slots` slots of `key` now, all or none.

        Raises ValueError when `slots` is below 1 or above the limit: such a request could never be granted
        and waiting for it would wait forever.
        """
        if not 1 <= slots <= self.limit:
            raise ValueError(f"slots must be between 1 and the limit ({self.limit}), got {slots}")
        granted, used, now, available_at = (
            int(value)
            for value in await self._acquire(
                keys=[key], args=[self.limit, self.window_seconds * MICROSECONDS, slots]
            )
        )
        return Reservation(
            granted=bool(granted),
            used=used,
            remaining=max(self.limit - used, 0),
            available_at=None if granted else from_redis_micros(available_at),
            decided_at=from_redis_micros(now),
        )

    async def acquire_within_share(
        self, key: str, share_key: str, slots: int, *, share: int, reserve: int
    ) -> Reservation:
        """Take `slots` slots of `key` for a sale check, all or none (see SALE_CHECK_ACQUIRE_SCRIPT).

        `share_key` logs the checks' own slots: at most `share` in any window. `reserve` slots must stay
        free after this grant for the member's waiting publications.
        """
        if not 1 <= slots <= min(share, self.limit):
            raise ValueError(f"slots must be between 1 and the share ({share}), got {slots}")
        granted, used, now, available_at = (
            int(value)
            for value in await self._acquire_check(
                keys=[key, share_key],
                args=[self.limit, self.window_seconds * MICROSECONDS, slots, share, max(reserve, 0)],
            )
        )
        return Reservation(
            granted=bool(granted),
            used=used,
            remaining=max(self.limit - used, 0),
            available_at=None if granted else from_redis_micros(available_at),
            decided_at=from_redis_micros(now),
        )

    async def usage(self, key: str) -> RateLimitUsage:
        """Report how much of `key`'s window is spent now."""
        return await read_usage(self._redis, key, limit=self.limit, window_seconds=self.window_seconds)


class SharedRequestPacer:
    """Space one application's requests across every worker process (e.g. Etsy's 10 per second per app).

    Unlike the Vinted budget, a short wait is cheaper than deferring the job: the caller sleeps until
    the window frees a slot, checking again at most every `max_sleep` seconds.
    """

    def __init__(self, limiter: SlidingWindowLimiter, key: str, *, max_sleep: float = 1.0) -> None:
        self._limiter = limiter
        self._key = key
        self._max_sleep = max_sleep

    async def acquire(self) -> None:
        while True:
            reservation = await self._limiter.acquire(self._key, 1)
            if reservation.granted:
                return
            assert reservation.available_at is not None
            now = reservation.decided_at or datetime.now(UTC)
            wait = (reservation.available_at - now).total_seconds()
            await asyncio.sleep(min(max(wait, 0.005), self._max_sleep))


def application_key(platform: str) -> str:
    """The Redis key of a marketplace application's shared request budget (hash-tagged for Cluster)."""
    return f"stoflow:ratelimit:{{{platform}:app}}"
