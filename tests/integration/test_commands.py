"""Operators' commands through the REST API, against the real database, real subprocesses and
the attempt keeper: cancel (no process left, rolled back), retry under the same run id,
resume, mark, backfill (idempotent), pause; tokens and roles; races between commands."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaProducer

from service.alerts.rules import AlertRules
from service.api.auth import Tokens
from service.api.http import make_app
from service.bus.dead_letter import DeadLetters
from service.events import CommandRecorded, RunStatus, decode_event, validate_data
from service.execution.keeper_client import KeeperClient
from service.loops.completions import CompletionBatcher
from service.loops.heartbeat import LeaseKeeper
from service.store import Store
from tests.integration.test_executor import local_executor
from tests.support import Background, Orchestrate, Orchestration, eventually, group_gone

OPERATOR = "operator-token-0123456789"
VIEWER = "viewer-token-0123456789"
TOKENS = Tokens({OPERATOR: ("alice", "operator"), VIEWER: ("grafana", "viewer")})


@dataclass
class Api:
    client: TestClient  # type: ignore[type-arg]
    rig: Orchestration
    marks: Path

    async def call(
        self, method: str, path: str, token: str | None = OPERATOR, **body: Any
    ) -> tuple[int, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        key = body.pop("key", None)
        if key:
            headers["Idempotency-Key"] = key
        response = await self.client.request(method, path, json=body or None, headers=headers)
        return response.status, await response.json(content_type=None)

    async def trigger(self, pipeline_id: str, day: str = "2026-11-21") -> str:
        params = {"marks": str(self.marks)} if pipeline_id == "commanded" else {}
        status, body = await self.call(
            "POST", "/api/runs", pipeline_id=pipeline_id, batch_date=day, params=params
        )
        assert status == 201, body
        run_id: str = body["run_id"]
        return run_id


async def states(pg: asyncpg.Connection, run_id: str) -> dict[str, str]:
    rows = await pg.fetch("SELECT task_id, state FROM task_instances WHERE run_id = $1", run_id)
    return {r["task_id"]: r["state"] for r in rows}


async def run_state(pg: asyncpg.Connection, run_id: str) -> str:
    state: str = await pg.fetchval("SELECT state FROM runs WHERE run_id = $1", run_id)
    return state


async def ready() -> dict[str, Any]:
    return {}


@pytest.fixture
async def api(
    orchestrate: Orchestrate,
    store: Store,
    kafka_bootstrap: str,
    tmp_path: Path,
    background: Background,
) -> AsyncIterator[Api]:
    marks = tmp_path / "marks"
    marks.mkdir()
    rig = await orchestrate("commanded", "backfilled", "chatty")
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    completions = CompletionBatcher(
        applier=rig.applier, dead_letters=DeadLetters(producer, "dead"), topic="c"
    )
    keeper = KeeperClient(tmp_path / "attempts", lease_seconds=30)
    executor = local_executor(rig, keeper, completions, tmp_path, "w1", 4, lease=30)
    heartbeat = LeaseKeeper(
        store=store, executor=executor, keeper=keeper, worker_id="w1", lease_seconds=30, hub=rig.hub
    )
    for loop in (completions, executor, heartbeat, rig.timer_loop(0.05)):
        background(loop.run())

    app = make_app(store, ready, None, rig.registry, rig.applier, TOKENS, tmp_path / "logs")
    async with TestClient(TestServer(app)) as client:
        yield Api(client, rig, marks)
    await executor.drain(drain_timeout=5)
    await keeper.close()
    await producer.stop()


async def test_cancel_stops_the_running_task_rolls_it_back_and_leaves_no_process(
    api: Api, pg: asyncpg.Connection
) -> None:
    run_id = await api.trigger("commanded")
    pid_file = api.marks / "slow.pid"
    await eventually(lambda: asyncio.sleep(0, pid_file.exists()), bool, 20, "slow to start")
    pid = int(pid_file.read_text())
    status, body = await api.call("POST", f"/api/runs/{run_id}/cancel", reason="wrong input")
    assert status == 200, body
    assert body["run"]["state"] == "cancelled"
    [command] = body["commands"]  # the run's history says who did what, and why
    assert (command["actor"], command["command"], command["reason"]) == (
        "alice",
        "cancel",
        "wrong input",
    )

    await eventually(lambda: group_gone(pid), bool, 20, "the cancelled task's processes to end")
    await eventually(
        lambda: asyncio.sleep(0, (api.marks / "rolled").exists()), bool, 20, "the rollback"
    )
    ended = await states(pg, run_id)
    assert ended["slow"] == "cancelled"
    assert set(ended.values()) <= {"cancelled", "failed", "upstream_failed"}  # all ended
    reason = await pg.fetchval(
        "SELECT reason FROM transitions WHERE run_id = $1 AND task_id IS NULL "
        "AND to_state = 'cancelled'",
        run_id,
    )
    assert reason == "cancel by alice: wrong input"  # who and why, in the run's history
    payloads = [
        decode_event(r["payload"]).payload for r in await pg.fetch("SELECT payload FROM outbox")
    ]
    cancelled = [p for p in payloads if isinstance(p, RunStatus) and p.state == "cancelled"]
    [alert] = [a for p in cancelled for a in AlertRules().alerts_for(p)]  # one, if routed
    assert (alert.kind, alert.reason) == ("run_cancelled", "cancel by alice: wrong input")
    audit = await pg.fetchrow("SELECT actor, command, outcome FROM audit_log")
    assert dict(audit) == {"actor": "alice", "command": "cancel", "outcome": "applied"}
    status, body = await api.call("POST", f"/api/runs/{run_id}/cancel")
    assert (status, body["detail"]) == (
        409,
        f"run {run_id} is cancelled: only a queued or running run can be cancelled",
    )
    # The audit trail is on the status topic too, applied and refused alike.
    rows = await pg.fetch("SELECT payload FROM outbox ORDER BY id")
    for row in rows:
        body = orjson.loads(row["payload"])
        validate_data(body["type"], body["data"])
    recorded = [
        p
        for p in (decode_event(r["payload"]).payload for r in rows)
        if isinstance(p, CommandRecorded)
    ]
    assert [(r.actor, r.command, r.outcome) for r in recorded] == [
        ("alice", "cancel", "applied"),
        ("alice", "cancel", "refused"),
    ]


async def test_retry_resume_and_mark_act_on_the_same_run(api: Api, pg: asyncpg.Connection) -> None:
    run_id = await api.trigger("commanded")
    await eventually(lambda: states(pg, run_id), lambda s: s.get("flip") == "failed", 20, "flip")
    await api.call("POST", f"/api/runs/{run_id}/cancel")  # slow would run a minute
    status, body = await api.call("POST", f"/api/runs/{run_id}/tasks/slow/mark", state="skipped")
    assert status == 200, body
    status, body = await api.call("POST", f"/api/runs/{run_id}/retry", reason="fixed the input")
    assert status == 200, body
    await eventually(lambda: run_state(pg, run_id), lambda s: s == "success", 20, "the retry")
    flip = await pg.fetchrow(
        "SELECT attempt, state FROM task_instances WHERE run_id = $1 AND task_id = 'flip'", run_id
    )
    assert (flip["attempt"], flip["state"]) == (2, "success")  # attempt numbers go on
    status, body = await api.call("POST", f"/api/runs/{run_id}/resume", **{"from": "after"})
    assert status == 200, body
    await eventually(lambda: run_state(pg, run_id), lambda s: s == "success", 20, "the resume")
    assert (api.marks / "after").read_text().splitlines() == ["after", "after"]
    assert await pg.fetchval("SELECT count(*) FROM runs") == 1


async def test_backfill_creates_one_run_per_date_once_oldest_first(
    api: Api, pg: asyncpg.Connection
) -> None:
    path = "/api/pipelines/backfilled/backfill"
    first_three = {"from": "2026-01-01", "to": "2026-01-03"}
    status, body = await api.call("POST", path, **first_three, dry_run=True)
    assert (status, body["would_create"]) == (200, ["2026-01-01", "2026-01-02", "2026-01-03"])
    assert await pg.fetchval("SELECT count(*) FROM runs") == 0
    status, body = await api.call("POST", path, **first_three)
    assert (status, len(body["created"])) == (200, 3)
    status, body = await api.call("POST", path, **{"from": "2026-01-02", "to": "2026-01-04"})
    assert (body["created"], body["existed"]) == (["2026-01-04"], ["2026-01-02", "2026-01-03"])
    await eventually(
        lambda: pg.fetch("SELECT batch_date, started_at FROM runs WHERE state = 'success'"),
        lambda rows: len(rows) == 4,
        30,
        "the backfill to finish",
    )
    rows = await pg.fetch("SELECT batch_date FROM runs ORDER BY started_at")
    assert [str(r["batch_date"]) for r in rows] == [f"2026-01-0{d}" for d in (1, 2, 3, 4)]


async def test_a_paused_pipeline_records_runs_and_starts_them_on_unpause(
    api: Api, pg: asyncpg.Connection
) -> None:
    status, body = await api.call("POST", "/api/pipelines/backfilled/pause", reason="db upgrade")
    assert (status, body["paused"]) == (200, True)
    status, body = await api.call("GET", "/api/pipelines")
    paused = {p["pipeline_id"]: p["paused"] for p in body["pipelines"]}
    assert paused == {"backfilled": True, "commanded": False, "chatty": False}
    run_id = await api.trigger("backfilled")
    await api.rig.applier.admission.sweep()
    assert await run_state(pg, run_id) == "queued"
    status, body = await api.call("POST", "/api/pipelines/backfilled/unpause")
    assert (status, body["was_paused"]) == (200, True)
    await eventually(lambda: run_state(pg, run_id), lambda s: s == "success", 20, "the run")


async def test_tokens_and_roles_guard_the_api(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    run_id = await api.trigger("backfilled")
    status, body = await api.call("GET", f"/api/runs/{run_id}", token=None)
    assert (status, body["title"]) == (401, "Unauthorized")
    status, _ = await api.call("GET", f"/api/runs/{run_id}", token="not-a-token-at-all")
    assert status == 401
    status, _ = await api.call("GET", f"/api/runs/{run_id}", token=VIEWER)
    assert status == 200
    status, body = await api.call("POST", f"/api/runs/{run_id}/cancel", token=VIEWER)
    assert (status, body["detail"]) == (403, "commands need an operator token")
    output = capsys.readouterr()
    assert OPERATOR not in output.out + output.err
    assert VIEWER not in output.out + output.err


async def test_commands_racing_each_other_end_in_one_consistent_state(
    api: Api, pg: asyncpg.Connection, orchestrate: Orchestrate
) -> None:
    run_id = await api.trigger("commanded")
    await eventually(lambda: states(pg, run_id), lambda s: s.get("flip") == "failed", 20, "flip")
    await api.call("POST", f"/api/runs/{run_id}/cancel")
    replica = await orchestrate("commanded", "backfilled", "chatty")  # a second replica
    other = make_app(
        api.rig.store, api.rig.store.ping, None, replica.registry, replica.applier, TOKENS
    )  # type: ignore[arg-type]
    async with TestClient(TestServer(other)) as second:
        headers = {"Authorization": f"Bearer {OPERATOR}"}
        answers = await asyncio.gather(
            api.client.post(f"/api/runs/{run_id}/retry", headers=headers),
            second.post(f"/api/runs/{run_id}/retry", headers=headers),
        )
        codes = sorted(r.status for r in answers)
    assert codes == [200, 409]  # one retry applied; the other found the run active again
    # The same command sent twice with one key applies once.
    first = await api.call("POST", f"/api/runs/{run_id}/cancel", key="k1")
    again = await api.call("POST", f"/api/runs/{run_id}/cancel", key="k1")
    assert (first[0], again[0]) == (200, 200)
    assert await pg.fetchval("SELECT count(*) FROM audit_log WHERE event_id = 'k1'") == 1


async def test_a_log_is_read_whole_by_range_by_tail_and_followed_live(
    api: Api, pg: asyncpg.Connection
) -> None:
    run_id = await api.trigger("chatty")
    await eventually(lambda: states(pg, run_id), lambda s: s.get("talk") == "running", 20, "talk")
    log = f"/api/runs/{run_id}/tasks/talk/log"
    headers = {"Authorization": f"Bearer {VIEWER}"}
    async with api.client.get(f"{log}?follow=1", headers=headers) as response:
        assert response.content_type == "text/event-stream"
        events = (await response.text()).split("\n\n")  # until the attempt ended
    lines = [e.removeprefix("data: ") for e in events if e.startswith("data: ")]
    assert [line for line in lines if line.startswith("line")] == ["line 1", "line 2", "line 3"]
    assert "event: end" in events[-2]
    tail = await api.client.get(f"{log}?tail=2", headers=headers)
    assert (await tail.text()).endswith("line 3\ndone\n")
    first = await api.client.get(f"{log}?offset=0&limit=7", headers=headers)
    assert (await first.text(), first.headers["X-Log-Next-Offset"]) == ("line 1\n", "7")
    missing = await api.client.get(f"{log}?attempt=5", headers=headers)
    assert missing.status == 404
    assert "has no attempt 5" in (await missing.json(content_type=None))["detail"]
