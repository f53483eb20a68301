"""An application's request budget (Etsy: N per second) shared by several processes' pacers."""

from __future__ import annotations

import asyncio
import uuid

from redis.asyncio import Redis

from ops.adapters.rate_limit import SharedRequestPacer, SlidingWindowLimiter


async def test_pacers_sharing_a_key_never_exceed_the_rate(redis_url: str) -> None:
    key = f"stoflow:ratelimit:{{test-app-{uuid.uuid4().hex[:8]}}}"
    clients = [Redis.from_url(redis_url) for _ in range(3)]
    try:
        # Three "processes", each with its own connection, pacing 4 requests each at 5 per second.
        pacers = [SharedRequestPacer(SlidingWindowLimiter(client, 5, 1), key) for client in clients]
        granted: list[float] = []

        async def send(pacer: SharedRequestPacer) -> None:
            for _ in range(4):
                await pacer.acquire()
                seconds, micros = await clients[0].time()
                granted.append(seconds + micros / 1_000_000)

        await asyncio.gather(*(send(pacer) for pacer in pacers))
        granted.sort()
        assert len(granted) == 12
        # Any 6 consecutive grants span more than one second: never 6 inside one window.
        spans = [granted[index + 5] - granted[index] for index in range(len(granted) - 5)]
        assert min(spans) > 0.95, spans
    finally:
        await clients[0].delete(key)
        for client in clients:
            await client.aclose()
