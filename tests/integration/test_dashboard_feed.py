"""The dashboard's live feed: changes from the Redis channel within moments; when Redis
stops, from PostgreSQL's transitions (and the mode says so); when Redis is back, from Redis
again. Over HTTP, ``/api/live`` streams them as server-sent events."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer

from service import devenv
from service.dashboard.feed import POSTGRES, REDIS, Change, LiveFeed, Queue
from service.dashboard.web import make_web_app
from service.engine.states import RunState
from service.events import RunStatus, new_event
from service.live_state import LiveState
from service.store import Store
from tests.support import Orchestrate, eventually, requested


async def nothing() -> dict[str, Any]:
    return {}


def run_status(run_id: str, state: RunState) -> Any:
    status = RunStatus(
        run_id, "p", date(2026, 11, 21), state, None, "test", "trace", datetime.now(UTC)
    )
    return new_event(status, "urn:test")


async def next_change(queue: Queue, wanted: type | str, timeout: float = 10.0) -> Any:
    """The next item of the wanted kind (a Change, or a mode's name), skipping others."""
    async with asyncio.timeout(timeout):
        while True:
            item = await queue.get()
            if (isinstance(wanted, str) and item == wanted) or (
                isinstance(wanted, type) and isinstance(item, wanted)
            ):
                return item


async def published_and_heard(live: LiveState, changes: Queue, run_id: str) -> Change:
    """Publish a run's status until the feed hears it (the first write after a restart of
    Redis may meet a broken connection; the live state keeps it for the next)."""
    for _ in range(50):
        await live.publish([run_status(run_id, RunState.SUCCESS)])
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.2):
                while (heard := await next_change(changes, Change)).run_id != run_id:
                    pass  # what PostgreSQL recorded meanwhile comes first
                return heard
    raise AssertionError(f"the feed never heard {run_id}")


async def test_changes_come_from_redis_then_postgres_while_it_is_away_then_redis_again(
    orchestrate: Orchestrate, store: Store, tmp_path: Path
) -> None:
    rig = await orchestrate("roomy")
    port = devenv.free_port()
    server = devenv.start_redis(port, tmp_path / "redis.log")
    assert server is not None, "redis-server is not installed"
    url = f"redis://127.0.0.1:{port}/0"
    live = LiveState(url, "t", ttl_seconds=60, retry_interval=0.1)
    feed = LiveFeed(store, live, poll_interval=0.05, retry_interval=0.2)
    probe = aioredis.Redis.from_url(url)
    try:
        async with feed.listen() as changes:

            async def subscribed() -> int:
                [(_, count)] = await probe.pubsub_numsub(live.channel)
                return int(count)

            await eventually(subscribed, lambda n: n == 1, 10, "the feed's subscription")
            await live.publish([run_status("r-redis", RunState.RUNNING)])
            heard = await next_change(changes, Change)
            assert (heard.run_id, heard.state, feed.mode) == ("r-redis", "running", REDIS)

            await probe.aclose()
            server.terminate()
            server.wait(timeout=10)
            await next_change(changes, POSTGRES)
            await rig.apply([requested("roomy", "2026-11-21")])
            [run] = await store.list_runs(1, "roomy", None, (None, None), 0)
            heard = await next_change(changes, Change)
            assert (heard.run_id, heard.pipeline_id, heard.task_id) == (run.run_id, "roomy", None)

            server = devenv.start_redis(port, tmp_path / "redis-again.log")
            assert server is not None
            await next_change(changes, REDIS)
            heard = await published_and_heard(live, changes, "r-back")
            assert heard.state == "success"
    finally:
        await feed.close()
        await live.close()
        if server.poll() is None:
            server.terminate()
            server.wait(timeout=10)


async def test_the_live_endpoint_streams_one_runs_changes_without_redis(
    orchestrate: Orchestrate, store: Store, tmp_path: Path
) -> None:
    rig = await orchestrate("roomy")
    live = LiveState("redis://127.0.0.1:1/0", "t", ttl_seconds=60)  # never reached
    app = make_web_app(store, nothing, live, rig.registry, rig.applier, log_dir=tmp_path)
    await rig.apply([requested("roomy", "2026-11-20")])
    [other] = await store.list_runs(1, "roomy", None, (None, None), 0)
    async with TestClient(TestServer(app)) as client:
        await rig.apply([requested("roomy", "2026-11-21")])
        runs = await store.list_runs(2, "roomy", None, (None, None), 0)
        [run] = [r for r in runs if r.run_id != other.run_id]
        response = await client.get(f"/api/live?run_id={run.run_id}")
        assert response.headers["Content-Type"] == "text/event-stream"
        lines: list[str] = []
        async with asyncio.timeout(15):
            while not any(line.startswith("data: {") for line in lines):
                lines.append((await response.content.readline()).decode().strip())
        assert "event: mode" in lines
        assert f"data: {POSTGRES}" in lines
        data = [line for line in lines if line.startswith("data: {")]
        assert all(run.run_id in line and other.run_id not in line for line in data)
        response.close()
    await live.close()
