"""Live state in Redis: the current state of each run and task, with a TTL, and a channel.

Fed by the outbox relay with the status events it has published. Redis is a side system: when it is
down the service goes on, says so once, keeps the latest state of what moved meanwhile, and
writes it when Redis is back.

Keys (``<prefix>`` from settings):
- ``<prefix>:run:<run_id>``: hash of the run's latest status (state, pipeline, batch date …)
- ``<prefix>:run:<run_id>:tasks``: hash task id -> JSON of the task's latest status
- channel ``<prefix>:status``: every run.status and task.status event, as published
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import orjson
import redis.asyncio as redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from service import metrics
from service.events import CloudEvent, RunStatus, TaskStatus
from service.observability import get_logger

log = get_logger(__name__)

RETRY_INTERVAL = 5.0  # seconds between writes tried while Redis is down
PENDING_LIMIT = 10_000  # keys waiting for Redis; beyond it the oldest are dropped
CHANNEL_LIMIT = 1_000  # channel messages waiting for the next write

Fields = dict[str, str | bytes]


class LiveState:
    """Writes are coalesced per key (newest wins) until Redis takes them, so an outage costs
    no state: when Redis is back, it gets the latest of every run and task that moved
    meanwhile. Channel messages are live only: those of a failed write are not replayed."""

    def __init__(
        self, url: str, prefix: str, ttl_seconds: int, retry_interval: float = RETRY_INTERVAL
    ) -> None:
        self._client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self._prefix = prefix
        self._ttl = ttl_seconds
        self.available = True
        self._retry_interval = retry_interval
        self._retry_after = 0.0
        self._pending: dict[str, Fields] = {}
        self._messages: deque[bytes] = deque(maxlen=CHANNEL_LIMIT)
        self._arrived = asyncio.Event()
        self.dropped = 0  # keys dropped because Redis stayed away too long

    def offer(self, events: Sequence[CloudEvent]) -> None:
        """Stage published events for Redis without ever blocking the caller."""
        self._stage(events)
        self._arrived.set()

    async def run(self) -> None:
        while True:
            await self._arrived.wait()
            self._arrived.clear()
            if not await self.flush():
                await asyncio.sleep(self._retry_interval)
                self._arrived.set()

    async def close(self) -> None:
        await self._client.aclose()

    def run_key(self, run_id: str) -> str:
        return f"{self._prefix}:run:{run_id}"

    @property
    def channel(self) -> str:
        return f"{self._prefix}:status"

    def subscriber(self) -> PubSub:
        """A pub/sub connection of its own, for readers of the channel (the dashboard)."""
        return self._client.pubsub(ignore_subscribe_messages=True)

    async def publish(self, events: Sequence[CloudEvent]) -> bool:
        """Stage the events and write what is staged, unless Redis failed a moment ago."""
        self._stage(events)
        if not self.available and time.monotonic() < self._retry_after:
            return False
        return await self.flush()

    async def publish_pending(self) -> None:
        """Write what is still staged (at shutdown), once."""
        await self.flush()

    def _stage(self, events: Sequence[CloudEvent]) -> None:
        for event in events:
            # Only status events: others on the relay (task.requested) carry task environments.
            payload = event.payload
            if isinstance(payload, RunStatus):
                data = payload.to_data()
                fields: Fields = {k: str(v) for k, v in data.items() if v is not None}
                self._merge(self.run_key(payload.run_id), fields)
            elif isinstance(payload, TaskStatus):
                key = f"{self.run_key(payload.run_id)}:tasks"
                self._merge(key, {payload.task_id: orjson.dumps(payload.to_data())})
            else:
                continue
            self._messages.append(event.to_bytes())

    def _merge(self, key: str, fields: Fields) -> None:
        staged = self._pending.get(key)
        if staged is not None:
            staged.update(fields)
            return
        if len(self._pending) >= PENDING_LIMIT:
            del self._pending[next(iter(self._pending))]
            if not self.dropped:
                log.warning("live_state.dropping", reason="Redis has been away too long")
            self.dropped += 1
        self._pending[key] = fields

    async def flush(self) -> bool:
        if not self._pending and not self._messages:
            return True
        writes, self._pending = self._pending, {}
        messages = list(self._messages)
        self._messages.clear()
        pipe = self._client.pipeline(transaction=False)
        for key, fields in writes.items():
            pipe.hset(key, mapping=fields)  # type: ignore[arg-type]
            pipe.expire(key, self._ttl)
        for message in messages:
            pipe.publish(self.channel, message)
        try:
            await pipe.execute()
        except (RedisError, OSError) as exc:
            for key, fields in self._pending.items():  # staged meanwhile: newer
                writes.setdefault(key, {}).update(fields)
            self._pending = writes
            self._became_unavailable(exc)
            return False
        if not self.available:
            log.info("live_state.available")
        self.available = True
        metrics.LIVE_STATE_AVAILABLE.set(1)
        return True

    def _became_unavailable(self, exc: BaseException) -> None:
        if self.available:
            log.warning("live_state.unavailable", error=repr(exc), retry_in=self._retry_interval)
        self.available = False
        metrics.LIVE_STATE_AVAILABLE.set(0)
        self._retry_after = time.monotonic() + self._retry_interval

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
