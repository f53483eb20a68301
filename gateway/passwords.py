"""bcrypt hashing off the event loop, with a dummy hash so unknown emails cost the same as wrong passwords."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import bcrypt

_T = TypeVar("_T")

# bcrypt reads at most 72 bytes (and bcrypt 5 raises on more).
MAX_PASSWORD_BYTES = 72


class PasswordHasher:
    """bcrypt on a small pool of its own: logins never queue behind image decoding or other blocking work."""

    def __init__(self, rounds: int, *, threads: int = 2) -> None:
        self._rounds = rounds
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="bcrypt")
        # Verified against when the email is unknown, so both failures take one bcrypt check.
        self._dummy_hash = bcrypt.hashpw(b"stoflow-dummy-password", bcrypt.gensalt(rounds))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _run(self, function: Callable[..., _T], *args: bytes) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, function, *args)

    async def hash(self, password: str) -> str:
        hashed = await self._run(bcrypt.hashpw, password.encode(), bcrypt.gensalt(self._rounds))
        return hashed.decode()

    async def verify(self, password: str, password_hash: str | None) -> bool:
        """Check a password; with no hash (unknown user) spend the same time and answer False."""
        candidate = password.encode()
        if len(candidate) > MAX_PASSWORD_BYTES:
            # bcrypt refuses longer input, and registration never accepts it: spend the time, answer False.
            await self._run(bcrypt.checkpw, candidate[:MAX_PASSWORD_BYTES], self._dummy_hash)
            return False
        if password_hash is None:
            await self._run(bcrypt.checkpw, candidate, self._dummy_hash)
            return False
        return await self._run(bcrypt.checkpw, candidate, password_hash.encode())
