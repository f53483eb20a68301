"""Login and registration throttles: sliding windows in Redis, each taken by one atomic Lua script.

- Per email (`LoginThrottle`): an attempt is *reserved* before the password is checked, so N guesses sent
  at once can never evaluate more than `LOGIN_MAX_FAILURES` passwords; a right password gives its
  reservation back, a wrong one leaves it as the recorded failure.
- Per client address (`ClientLimiter`): every login and registration attempt of one address counts
  (`LOGIN_IP_LIMIT`, `REGISTER_IP_LIMIT` per their windows). The address is the peer's, or, when the peer
  is one of `TRUSTED_PROXIES`, the right-most untrusted address of `X-Forwarded-For`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
from dataclasses import dataclass

from redis.asyncio import Redis

# KEYS[1] the window's log; ARGV: window seconds, limit. Reserves one slot at Redis's own clock and returns
# "0 <member>", or "<seconds to wait>" when the window is full.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], -limit, -limit, 'WITHSCORES')
  return tostring(math.max(tonumber(oldest[2]) + window - now, 0.001))
end
local member = t[1] .. '.' .. t[2] .. '.' .. redis.call('INCR', KEYS[1] .. ':seq')
redis.call('ZADD', KEYS[1], now, member)
redis.call('EXPIRE', KEYS[1], window)
redis.call('EXPIRE', KEYS[1] .. ':seq', window)
return '0 ' .. member
"""


@dataclass(frozen=True)
class Reservation:
    """The outcome of a reservation: `wait` seconds (refused) or the slot's `member` (granted)."""

    wait: int
    key: str = ""
    member: str = ""

    @property
    def granted(self) -> bool:
        return self.wait == 0


class SlidingWindow:
    """At most `limit` reservations per `window_seconds` for each key."""

    def __init__(self, redis: Redis, prefix: str, limit: int, window_seconds: int) -> None:
        self._redis = redis
        self._prefix = prefix
        self.limit = limit
        self.window_seconds = window_seconds
        self._reserve = redis.register_script(_RESERVE)

    def _key(self, subject: str) -> str:
        # Hashed: no personal data (emails, addresses) in Redis keys; the hash tag keeps both keys on a slot.
        digest = hashlib.sha256(subject.encode()).hexdigest()
        return f"{self._prefix}:{{{digest}}}"

    async def reserve(self, subject: str) -> Reservation:
        key = self._key(subject)
        raw = await self._reserve(keys=[key], args=[self.window_seconds, self.limit])
        answer = raw.decode() if isinstance(raw, bytes) else str(raw)
        if answer.startswith("0 "):
            return Reservation(wait=0, key=key, member=answer[2:])
        return Reservation(wait=max(1, math.ceil(float(answer))))

    async def release(self, reservation: Reservation) -> None:
        if reservation.granted:
            await self._redis.zrem(reservation.key, reservation.member)


class LoginThrottle:
    """Failed logins per email: a password is checked only under a reserved attempt."""

    def __init__(self, redis: Redis, max_failures: int, window_seconds: int) -> None:
        self._window = SlidingWindow(redis, "login_failures", max_failures, window_seconds)

    async def reserve(self, email: str) -> Reservation:
        """Reserve one attempt for the email, or say how long it must wait."""
        return await self._window.reserve(email.strip().lower())

    async def succeeded(self, reservation: Reservation) -> None:
        """A right password: the attempt was not a failure, give it back."""
        await self._window.release(reservation)


def client_address(peer: str | None, forwarded_for: str | None, trusted: list[str]) -> str:
    """The client's address: the peer, or behind trusted proxies the right-most untrusted hop."""
    networks = [ipaddress.ip_network(entry, strict=False) for entry in trusted]

    def is_trusted(address: str) -> bool:
        try:
            parsed = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(parsed in network for network in networks)

    address = peer or "unknown"
    if not is_trusted(address) or not forwarded_for:
        return address
    for hop in reversed([part.strip() for part in forwarded_for.split(",") if part.strip()]):
        address = hop
        if not is_trusted(hop):
            break
    return address


class ClientLimiter:
    """Attempts per client address on login and registration (off unless configured on)."""

    def __init__(
        self,
        redis: Redis,
        *,
        enabled: bool,
        trusted_proxies: list[str],
        login: tuple[int, int],
        register: tuple[int, int],
    ) -> None:
        self.enabled = enabled
        self._trusted = trusted_proxies
        self._windows = {
            "login": SlidingWindow(redis, "client_login", *login),
            "register": SlidingWindow(redis, "client_register", *register),
        }

    async def wait_for(self, action: str, peer: str | None, forwarded_for: str | None) -> int:
        """Seconds the client must wait before this action; 0 (and one attempt counted) when it may go."""
        if not self.enabled:
            return 0
        address = client_address(peer, forwarded_for, self._trusted)
        return (await self._windows[action].reserve(address)).wait
