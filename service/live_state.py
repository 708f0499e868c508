"""Live state in Redis: the current state of each run and task, with a TTL, and a channel.

Fed by the outbox relay with the status events it has published. Redis is a side system: when it is
down the service goes on, says so once, and writes again when Redis is back.

Keys (``<prefix>`` from settings):
- ``<prefix>:run:<run_id>``: hash of the run's latest status (state, pipeline, batch date …)
- ``<prefix>:run:<run_id>:tasks``: hash task id -> JSON of the task's latest status
- channel ``<prefix>:status``: every run.status and task.status event, as published
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import orjson
import redis.asyncio as redis
from redis.exceptions import RedisError

from service import metrics
from service.events import CloudEvent, RunStatus, TaskStatus
from service.observability import get_logger

log = get_logger(__name__)

RETRY_INTERVAL = 5.0  # seconds between writes tried while Redis is down
QUEUE_LIMIT = 1_000  # batches waiting for Redis; beyond it the oldest are dropped


class LiveState:
    def __init__(
        self, url: str, prefix: str, ttl_seconds: int, retry_interval: float = RETRY_INTERVAL
    ) -> None:
        self._client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self._prefix = prefix
        self._ttl = ttl_seconds
        self.available = True
        self._retry_interval = retry_interval
        self._retry_after = 0.0
        self._queue: asyncio.Queue[Sequence[CloudEvent]] = asyncio.Queue(QUEUE_LIMIT)
        self.dropped = 0  # batches dropped because Redis could not keep up

    def offer(self, events: Sequence[CloudEvent]) -> None:
        """Queue published events for Redis without ever blocking the caller."""
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(events)

    async def run(self) -> None:
        while True:
            await self.publish(await self._queue.get())

    async def close(self) -> None:
        await self._client.aclose()

    def run_key(self, run_id: str) -> str:
        return f"{self._prefix}:run:{run_id}"

    @property
    def channel(self) -> str:
        return f"{self._prefix}:status"

    async def publish(self, events: Sequence[CloudEvent]) -> None:
        if not self.available and time.monotonic() < self._retry_after:
            return
        pipe = self._client.pipeline(transaction=False)
        for event in events:
            # Only status events: others on the relay (task.requested) carry task environments.
            payload = event.payload
            if isinstance(payload, RunStatus):
                key = self.run_key(payload.run_id)
                data = payload.to_data()
                pipe.hset(key, mapping={k: str(v) for k, v in data.items() if v is not None})
                pipe.expire(key, self._ttl)
            elif isinstance(payload, TaskStatus):
                key = f"{self.run_key(payload.run_id)}:tasks"
                pipe.hset(key, payload.task_id, orjson.dumps(payload.to_data()))
                pipe.expire(key, self._ttl)
            else:
                continue
            pipe.publish(self.channel, event.to_bytes())
        try:
            await pipe.execute()
        except (RedisError, OSError) as exc:
            if self.available:
                log.warning(
                    "live_state.unavailable", error=repr(exc), retry_in=self._retry_interval
                )
            self.available = False
            metrics.LIVE_STATE_AVAILABLE.set(0)
            self._retry_after = time.monotonic() + self._retry_interval
            return
        if not self.available:
            log.info("live_state.available")
        self.available = True
        metrics.LIVE_STATE_AVAILABLE.set(1)

    async def read(self, run_id: str) -> dict[str, Any] | None:
        """The run's live state: {"state", "tasks": {task: state}}, or None when Redis has no
        key for it (expired, never written, or Redis is down)."""
        if not self.available and time.monotonic() < self._retry_after:
            return None
        key = self.run_key(run_id)
        try:
            pipe = self._client.pipeline(transaction=False)
            pipe.hgetall(key)
            pipe.hgetall(f"{key}:tasks")
            run, tasks = await pipe.execute()
        except (RedisError, OSError):
            return None
        if not run:
            return None
        return {
            "run_id": run_id,
            "state": run[b"state"].decode(),
            "tasks": {k.decode(): orjson.loads(v)["state"] for k, v in tasks.items()},
        }

    async def ping(self) -> bool:
        try:
            await self._client.ping()
        except (RedisError, OSError):
            return False
        return True

    async def publish_pending(self) -> None:
        """Write what is still queued (at shutdown), once."""
        while not self._queue.empty():
            await self.publish(self._queue.get_nowait())
