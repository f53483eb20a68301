"""Failed logins per email, a sliding window in Redis kept by atomic Lua scripts."""

from __future__ import annotations

import hashlib
import math

from redis.asyncio import Redis

# KEYS[1] the email's log; ARGV: window seconds, max failures. Returns seconds to wait, 0 when allowed.
_CHECK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local window = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then return '0' end
local oldest = redis.call('ZRANGE', KEYS[1], -tonumber(ARGV[2]), -tonumber(ARGV[2]), 'WITHSCORES')
return tostring(tonumber(oldest[2]) + window - now)
"""

# KEYS[1] the email's log; ARGV: window seconds. Records one failure at Redis's own clock.
_RECORD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]))
redis.call('ZADD', KEYS[1], now, t[1] .. '.' .. t[2] .. '.' .. redis.call('INCR', KEYS[1] .. ':seq'))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
redis.call('EXPIRE', KEYS[1] .. ':seq', tonumber(ARGV[1]))
return redis.call('ZCARD', KEYS[1])
"""


class LoginThrottle:
    def __init__(self, redis: Redis, max_failures: int, window_seconds: int) -> None:
        self._redis = redis
        self._max = max_failures
        self._window = window_seconds
        self._check = redis.register_script(_CHECK)
        self._record = redis.register_script(_RECORD)

    @staticmethod
    def _key(email: str) -> str:
        # Hash the address: no personal data in Redis keys, and a hash tag keeps both keys on one slot.
        digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()
        return f"login_failures:{{{digest}}}"

    async def retry_after(self, email: str) -> int:
        """Seconds the email must wait before trying again; 0 when it may try now."""
        wait = float(await self._check(keys=[self._key(email)], args=[self._window, self._max]))
        return math.ceil(wait) if wait > 0 else 0

    async def record_failure(self, email: str) -> None:
        await self._record(keys=[self._key(email)], args=[self._window])
