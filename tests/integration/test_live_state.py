"""Live state in a real Redis: what is written, what is announced, and Redis going away."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import date
from pathlib import Path

import orjson
import pytest
import redis.asyncio as aioredis

from service import devenv, live_state
from service.clock import utc_now
from service.engine.states import RunState, TaskState
from service.events import RunStatus, TaskRequested, TaskStatus, new_event
from service.live_state import LiveState

DAY = date(2026, 11, 21)
RUN = new_event(
    RunStatus("r1", "p", DAY, RunState.RUNNING, RunState.QUEUED, "started", "t", utc_now()),
    "urn:test",
)
TASK = new_event(
    TaskStatus("r1", "p", "a", 1, DAY, TaskState.RUNNING, TaskState.QUEUED, "", "t", utc_now()),
    "urn:test",
)
REQUEST = new_event(
    TaskRequested("r1", "a", 1, "p", DAY, "t", 30.0, {"env": {"TOKEN": "secret"}}), "urn:test"
)


async def test_status_is_stored_with_a_ttl_and_announced(tmp_path: Path) -> None:
    port = devenv.free_port()
    server = devenv.start_redis(port, tmp_path / "redis.log")
    assert server is not None, "redis-server is not installed"
    url = f"redis://127.0.0.1:{port}/0"
    live = LiveState(url, "t", ttl_seconds=60)
    reader = aioredis.Redis.from_url(url, decode_responses=True)
    pubsub = reader.pubsub()
    try:
        await pubsub.subscribe(live.channel)
        await pubsub.get_message(timeout=1)  # the subscription confirmation
        await live.publish([RUN, TASK, REQUEST])
        assert await reader.hget("t:run:r1", "state") == "running"
        assert 0 < await reader.ttl("t:run:r1") <= 60
        task = orjson.loads(await reader.hget("t:run:r1:tasks", "a"))
        assert task["state"] == "running"
        assert await live.read("r1") == {
            "run_id": "r1",
            "state": "running",
            "tasks": {"a": "running"},
        }
        assert await live.read("no-such-run") is None
        heard = [await pubsub.get_message(timeout=1) for _ in range(3)]
        types = [orjson.loads(m["data"])["type"] for m in heard if m]
        assert types == ["run.status", "task.status"]  # never a task.requested: it has env
    finally:
        await pubsub.aclose()
        await reader.aclose()
        await live.close()
        server.terminate()
        server.wait(timeout=10)


async def test_redis_down_is_survived_and_what_moved_meanwhile_is_written_after(
    tmp_path: Path,
) -> None:
    port = devenv.free_port()
    server = devenv.start_redis(port, tmp_path / "redis.log")
    assert server is not None
    url = f"redis://127.0.0.1:{port}/0"
    live = LiveState(url, "t", ttl_seconds=60, retry_interval=0.2)
    reader = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        assert await live.publish([RUN])
        server.terminate()
        server.wait(timeout=10)
        assert not await live.publish([TASK])  # no exception: runs go on without live state
        assert not live.available
        server = devenv.start_redis(port, tmp_path / "redis.log")
        assert server is not None
        await asyncio.sleep(0.3)  # past the retry interval
        assert await live.publish([])  # nothing new: what was staged in the outage is written
        assert live.available
        assert await reader.hexists("t:run:r1:tasks", "a")
    finally:
        await reader.aclose()
        await live.close()
        server.terminate()
        server.wait(timeout=10)


async def test_writes_are_coalesced_per_key_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live_state, "PENDING_LIMIT", 3)
    live = LiveState("redis://127.0.0.1:1/0", "t", ttl_seconds=60)  # never reached
    try:
        for state in (TaskState.QUEUED, TaskState.RUNNING, TaskState.SUCCESS):
            payload = replace(TASK.payload, state=state)
            live.offer([new_event(payload, "urn:test")])
        assert list(live._pending) == ["t:run:r1:tasks"]
        staged = orjson.loads(live._pending["t:run:r1:tasks"]["a"])
        assert staged["state"] == "success"
        for run in ("r2", "r3", "r4"):
            live.offer([new_event(replace(RUN.payload, run_id=run), "urn:test")])
        assert list(live._pending) == ["t:run:r2", "t:run:r3", "t:run:r4"]
        assert live.dropped == 1
    finally:
        await live.close()
