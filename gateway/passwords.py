"""bcrypt hashing off the event loop, with a dummy hash so unknown emails cost the same as wrong passwords."""

from __future__ import annotations

import asyncio

import bcrypt

# bcrypt reads at most 72 bytes (and bcrypt 5 raises on more).
MAX_PASSWORD_BYTES = 72


class PasswordHasher:
    def __init__(self, rounds: int) -> None:
        self._rounds = rounds
        # Verified against when the email is unknown, so both failures take one bcrypt check.
        self._dummy_hash = bcrypt.hashpw(b"stoflow-dummy-password", bcrypt.gensalt(rounds))

    async def hash(self, password: str) -> str:
        hashed = await asyncio.to_thread(bcrypt.hashpw, password.encode(), bcrypt.gensalt(self._rounds))
        return hashed.decode()

    async def verify(self, password: str, password_hash: str | None) -> bool:
        """Check a password; with no hash (unknown user) spend the same time and answer False."""
        candidate = password.encode()
        if len(candidate) > MAX_PASSWORD_BYTES:
            # bcrypt refuses longer input, and registration never accepts it: spend the time, answer False.
            await asyncio.to_thread(bcrypt.checkpw, candidate[:MAX_PASSWORD_BYTES], self._dummy_hash)
            return False
        if password_hash is None:
            await asyncio.to_thread(bcrypt.checkpw, candidate, self._dummy_hash)
            return False
        return await asyncio.to_thread(bcrypt.checkpw, candidate, password_hash.encode())
