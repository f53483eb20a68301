"""Image decoding off the event loop, bounded: its own small thread pool, and a few uploads per tenant.

The default thread pool is shared with everything that calls `asyncio.to_thread`; twelve decodes there
once kept a login waiting eight seconds. Here decodes take `IMAGE_DECODE_THREADS` threads at most (bcrypt
has its own pool), and one tenant's uploads take `IMAGE_UPLOADS_PER_TENANT` of them at once; the others
wait their turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import partial

from gateway.image_processing import NormalisedImage, normalise_image

#: Scheduling niceness of the decoding threads (Linux schedules threads one by one): when the cores are
#: busy, bcrypt and the event loop go first, and a decode takes what is left.
DECODE_NICENESS = 10


def _lower_priority() -> None:
    with contextlib.suppress(AttributeError, OSError):  # not Linux, or not allowed: keep the default
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), DECODE_NICENESS)


class ImageDecoder:
    def __init__(self, *, threads: int, per_tenant: int, max_decoded_bytes: int) -> None:
        self._pool = ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="image-decode", initializer=_lower_priority
        )
        self._per_tenant = per_tenant
        self._max_decoded_bytes = max_decoded_bytes
        self._gates: dict[int, tuple[asyncio.Semaphore, int]] = {}

    @asynccontextmanager
    async def _tenant_turn(self, tenant_id: int) -> AsyncIterator[None]:
        gate, users = self._gates.get(tenant_id, (asyncio.Semaphore(self._per_tenant), 0))
        self._gates[tenant_id] = (gate, users + 1)
        try:
            async with gate:
                yield
        finally:
            gate, users = self._gates[tenant_id]
            if users == 1:
                del self._gates[tenant_id]
            else:
                self._gates[tenant_id] = (gate, users - 1)

    async def normalise(self, tenant_id: int, data: bytes) -> NormalisedImage:
        """Check and normalise an upload (see `normalise_image`) in the tenant's turn, on the pool."""
        async with self._tenant_turn(tenant_id):
            loop = asyncio.get_running_loop()
            work = partial(normalise_image, data, self._max_decoded_bytes)
            return await loop.run_in_executor(self._pool, work)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
