"""Worker heartbeats in Redis: each worker process says every few seconds that it is alive.

One key per process (`stoflow:workers:{pool}:{host}:{pid}`, JSON, expiring after `TTL_SECONDS`) and one
sorted set indexing them by last beat, so readers never SCAN the keyspace: a process is alive while its key
exists; one whose key expired is shown as gone until it is `FORGET_SECONDS` old.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
from dataclasses import asdict, dataclass

import structlog
from redis.asyncio import Redis

log = structlog.get_logger(__name__)

INDEX = "stoflow:workers"
BEAT_SECONDS = 5.0
TTL_SECONDS = 15
FORGET_SECONDS = 600


@dataclass(frozen=True)
class WorkerBeat:
    """What one worker process last said about itself."""

    pool: str
    host: str
    pid: int
    concurrency: int
    started_at: float
    last_beat: float
    alive: bool = True

    @property
    def member(self) -> str:
        return f"{self.pool}:{self.host}:{self.pid}"


def _key(member: str) -> str:
    return f"{INDEX}:{member}"


def this_process(pool: str, concurrency: int) -> WorkerBeat:
    now = time.time()
    return WorkerBeat(pool, socket.gethostname(), os.getpid(), concurrency, now, now)


async def beat(redis: Redis, worker: WorkerBeat, now: float) -> None:
    """Write one heartbeat."""
    body = json.dumps({**asdict(worker), "last_beat": now, "alive": True})
    async with redis.pipeline(transaction=False) as pipe:
        pipe.set(_key(worker.member), body, ex=TTL_SECONDS)
        pipe.zadd(INDEX, {worker.member: now})
        await pipe.execute()


async def forget(redis: Redis, worker: WorkerBeat) -> None:
    """A process stopping cleanly leaves at once rather than after its TTL."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.delete(_key(worker.member))
        pipe.zrem(INDEX, worker.member)
        await pipe.execute()


async def keep_beating(redis: Redis, worker: WorkerBeat, every: float = BEAT_SECONDS) -> None:
    """Beat until cancelled; a Redis outage is logged and outlived."""
    try:
        while True:
            try:
                await beat(redis, worker, time.time())
            except Exception:
                log.warning("heartbeat_failed", platform=worker.pool, exc_info=True)
            await asyncio.sleep(every)
    finally:
        with contextlib.suppress(Exception):
            await forget(redis, worker)


async def read_beats(redis: Redis, now: float) -> list[WorkerBeat]:
    """Every process seen in the last FORGET_SECONDS, alive or gone, by pool then host and pid."""
    await redis.zremrangebyscore(INDEX, "-inf", now - FORGET_SECONDS)
    raw_members = await redis.zrange(INDEX, 0, -1, withscores=True)
    members = [(member.decode(), float(score)) for member, score in raw_members]
    if not members:
        return []
    bodies = await redis.mget([_key(member) for member, _score in members])
    beats: list[WorkerBeat] = []
    for (member, score), body in zip(members, bodies, strict=True):
        if body is not None:
            data = json.loads(body)
            beats.append(WorkerBeat(**{**data, "alive": True}))
        else:
            pool, host, pid = member.rsplit(":", 2)
            beats.append(WorkerBeat(pool, host, int(pid), 0, 0.0, score, alive=False))
    return sorted(beats, key=lambda item: (item.pool, item.host, item.pid))
