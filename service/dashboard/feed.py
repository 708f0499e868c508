"""The live feed behind every open page: state changes, as they happen, fanned out to each
page's server-sent event stream.

One source for all pages: the Redis channel the relay publishes every status event to (a
change reaches the page within milliseconds of its commit). When Redis is away — or not
configured — the feed reads the ``transitions`` table instead, every ``poll_interval``, and
says so (``mode``), trying Redis again every ``retry_interval``. The feed runs only while a page
listens; a page too slow to take its changes loses the oldest, never blocks the others.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import orjson
from redis.exceptions import RedisError

from service.errors import TributaryError
from service.live_state import LiveState
from service.observability import get_logger
from service.store import Store

log = get_logger(__name__)

POLL_INTERVAL = 1.0  # seconds between reads of PostgreSQL when Redis is away
RETRY_INTERVAL = 5.0  # seconds between tries of Redis meanwhile
QUEUE_LIMIT = 1000  # changes a page may fall behind by before it loses the oldest
POLL_LIMIT = 1000  # transitions read at once
OVERLAP = 200  # transitions read again on falling back, for those the switch may have missed

REDIS = "redis"
POSTGRES = "postgres"


@dataclass(frozen=True, slots=True)
class Change:
    """A run's or a task's new state."""

    run_id: str
    pipeline_id: str
    state: str
    task_id: str | None = None
    attempt: int | None = None

    def to_json(self) -> bytes:
        return orjson.dumps(self)


Queue = asyncio.Queue[Change | str | None]


def change_of_message(message: bytes) -> Change | None:
    """The change a status event on the channel announces; None for anything else."""
    try:
        event = orjson.loads(message)
        data = event["data"]
        return Change(
            run_id=str(data["run_id"]),
            pipeline_id=str(data["pipeline_id"]),
            state=str(data["state"]),
            task_id=data.get("task_id"),
            attempt=data.get("attempt"),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None


class LiveFeed:
    def __init__(
        self,
        store: Store,
        live: LiveState | None,
        poll_interval: float = POLL_INTERVAL,
        retry_interval: float = RETRY_INTERVAL,
    ) -> None:
        self._store = store
        self._live = live
        self._poll_interval = poll_interval
        self._retry_interval = retry_interval
        self._pages: set[Queue] = set()
        self._task: asyncio.Task[None] | None = None
        self._retry_at = 0.0
        self.mode = REDIS if live is not None else POSTGRES

    @contextlib.asynccontextmanager
    async def listen(self) -> AsyncIterator[Queue]:
        """A queue of changes, of the new mode's name when it changes, and None at the end
        (the service stops)."""
        queue: Queue = asyncio.Queue(QUEUE_LIMIT)
        self._pages.add(queue)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="dashboard-feed")
        try:
            yield queue
        finally:
            self._pages.discard(queue)

    async def close(self) -> None:
        """End every page's stream, then the feed."""
        for queue in self._pages:
            self._put(queue, None)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        last: int | None = None
        while self._pages:
            if self._live is not None:
                await self._from_redis(self._live, last)
            if self._pages:
                last = await self._from_postgres(
                    until=lambda: self._live is not None and self._retry_due()
                )

    def _retry_due(self) -> bool:
        loop = asyncio.get_running_loop()
        return loop.time() >= self._retry_at

    async def _from_redis(self, live: LiveState, catch_up_from: int | None) -> None:
        """Changes from the channel; first, after subscribing, those PostgreSQL recorded
        since its last poll (between the two, a change would be lost)."""
        subscriber = live.subscriber()
        try:
            await subscriber.subscribe(live.channel)
            if catch_up_from is not None:
                with contextlib.suppress(TributaryError):
                    await self._poll(catch_up_from)
            self._set_mode(REDIS)
            while self._pages:
                message = await subscriber.get_message(timeout=1.0)
                if message is not None and message["type"] == "message":
                    change = change_of_message(message["data"])
                    if change is not None:
                        self._offer(change)
        except (RedisError, OSError) as exc:
            log.warning("dashboard.feed_falls_back", source=POSTGRES, error=str(exc))
        finally:
            with contextlib.suppress(RedisError, OSError):
                await subscriber.aclose()  # type: ignore[no-untyped-call]

    async def _from_postgres(self, until: Callable[[], bool]) -> int | None:
        """Changes from the transitions table until ``until()``; returns the last one seen."""
        self._set_mode(POSTGRES)
        self._retry_at = asyncio.get_running_loop().time() + self._retry_interval
        last: int | None = None
        while self._pages and not until():
            try:
                if last is None:
                    last = max(0, await self._store.last_transition() - OVERLAP)
                last = await self._poll(last)
            except TributaryError as exc:
                log.warning("dashboard.feed_unavailable", error=str(exc))
            await asyncio.sleep(self._poll_interval)
        return last

    async def _poll(self, last: int) -> int:
        """Offer the changes after transition ``last``; returns the newest offered."""
        for row in await self._store.transitions_after(last, POLL_LIMIT):
            last = row["id"]
            change = Change(
                row["run_id"], row["pipeline_id"], row["state"], row["task_id"], row["attempt"]
            )
            self._offer(change)
        return last

    def _set_mode(self, mode: str) -> None:
        if mode != self.mode:
            self.mode = mode
            for queue in self._pages:
                self._put(queue, mode)

    def _offer(self, change: Change) -> None:
        for queue in self._pages:
            self._put(queue, change)

    @staticmethod
    def _put(queue: Queue, item: Change | str | None) -> None:
        if queue.full():
            queue.get_nowait()  # the oldest goes: a slow page must not hold up the rest
        queue.put_nowait(item)
