"""The local executor with real subprocesses and the real database: what each attempt becomes."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from service.bus.dead_letter import DeadLetters
from service.execution.keeper_client import KeeperClient
from service.loops.completions import CompletionBatcher
from service.loops.executor import LocalExecutor, key_of
from service.orchestrator.claims import launch_for
from service.store import Store
from service.store.records import ClaimBudget
from tests.support import Background, Orchestrate, Orchestration, eventually, ready, requested


@dataclass
class Rig:
    orchestration: Orchestration
    executor: LocalExecutor
    completions: CompletionBatcher
    marks: Path

    async def run(self, pipeline_id: str, batch_date: str) -> None:
        request = requested(pipeline_id, batch_date, params={"marks": str(self.marks)})
        await self.orchestration.apply([request])


async def run_to_end(rig: Rig, pg: asyncpg.Connection, pipeline_id: str) -> None:
    """Request a run of the pipeline for 2026-11-21 and wait until no run is unfinished."""
    await rig.run(pipeline_id, "2026-11-21")
    await eventually(
        lambda: pg.fetchval("SELECT count(*) FROM runs WHERE state NOT IN ('success', 'failed')"),
        lambda unfinished: unfinished == 0,
        30,
        "the run to end",
    )


def local_executor(
    orchestration: Orchestration,
    keeper: KeeperClient,
    completions: CompletionBatcher,
    tmp_path: Path,
    worker_id: str,
    slots: int,
    lease: float,
    poll_interval: float = 0.05,
) -> LocalExecutor:
    return LocalExecutor(
        claimer=orchestration.claimer,
        registry=orchestration.registry,
        store=orchestration.store,
        keeper=keeper,
        completions=completions,
        hub=orchestration.hub,
        worker_id=worker_id,
        event_source="urn:test",
        log_dir=tmp_path / "logs",
        node=ClaimBudget(slots),
        lease_seconds=lease,
        poll_interval=poll_interval,
    )


@pytest.fixture
async def rig(
    orchestrate: Orchestrate,
    store: Store,
    kafka_bootstrap: str,
    tmp_path: Path,
    background: Background,
    request: pytest.FixtureRequest,
) -> AsyncIterator[Rig]:
    """``request.param`` (indirect): the executor's poll interval, if not 0.05 s."""
    poll_interval = getattr(request, "param", 0.05)
    marks = tmp_path / "marks"
    marks.mkdir()
    orchestration = await orchestrate(
        "hard", "cached", "cached_chain", "shaped", "reported", "recorded", "hops"
    )
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    completions = CompletionBatcher(
        applier=orchestration.applier, dead_letters=DeadLetters(producer, "dead"), topic="c"
    )
    keeper = KeeperClient(tmp_path / "attempts", lease_seconds=30)
    executor = local_executor(
        orchestration, keeper, completions, tmp_path, "w1", 8, lease=30, poll_interval=poll_interval
    )
    timers = orchestration.timer_loop(0.05, lease_seconds=30)
    running = background(completions.run())
    background(executor.run())
    background(timers.run())
    yield Rig(orchestration, executor, completions, marks)
    await executor.drain(drain_timeout=5)
    completions.stop()
    await asyncio.wait_for(running, 10)
    await keeper.close()
    await producer.stop()


async def test_each_attempt_ends_as_its_spec_says(rig: Rig, pg: asyncpg.Connection) -> None:
    await run_to_end(rig, pg, "hard")
    tasks = {r["task_id"]: r for r in await pg.fetch("SELECT * FROM task_instances")}
    assert {t: r["state"] for t, r in tasks.items()} == {
        "stubborn": "timed_out",
        "tidy": "success",
        "bad_cleanup": "failed",
        "nothing_to_do": "skipped",
        "hopeless": "failed",
    }
    # Timed out twice (two attempts), rolled back after each, killed despite trapping SIGTERM.
    assert tasks["stubborn"]["attempt"] == 2
    assert (rig.marks / "rollback").read_text().splitlines() == ["rolled back 1", "rolled back 2"]
    assert "timed out" in tasks["stubborn"]["error_snippet"]
    assert (rig.marks / "cleanup").read_text() == "cleaned\n"
    assert not (rig.marks / "must-not-exist").exists()
    assert tasks["hopeless"]["attempt"] == 1  # a fatal code is never retried
    assert tasks["hopeless"]["exit_code"] == 2
    reasons = {
        r["task_id"]: r["reason"]
        for r in await pg.fetch(
            "SELECT task_id, reason FROM transitions WHERE to_state IN ('failed', 'timed_out')"
        )
    }
    assert "cleanup failed (exit code 1): the command did not run" in reasons["bad_cleanup"]
    assert "timed out after 0.5s; rollback done" in reasons["stubborn"]


# No poll meanwhile: a claim the executor's own loop has under way makes a batch leave the
# claim to that loop (it claims right after, in a transaction of its own).
@pytest.mark.parametrize("rig", [3600.0], indirect=True)
async def test_a_task_ends_and_its_successor_starts_in_one_transaction(
    rig: Rig, pg: asyncpg.Connection
) -> None:
    await run_to_end(rig, pg, "hops")
    # now() is the transaction's start: one value for every move a transaction makes.
    moves = {
        (r["task_id"], r["to_state"]): r["at"]
        for r in await pg.fetch("SELECT task_id, to_state, at FROM transitions")
    }
    chain = ["first", "second", "third", "fourth"]
    assert all(moves[(task, "success")] for task in chain)
    for before, after in itertools.pairwise(chain):
        assert moves[(before, "success")] == moves[(after, "queued")] == moves[(after, "running")]


async def test_a_task_reports_its_result_and_a_bad_one_fails_it_with_the_reason(
    rig: Rig, pg: asyncpg.Connection
) -> None:
    await run_to_end(rig, pg, "reported")
    tasks = {r["task_id"]: r for r in await pg.fetch("SELECT * FROM task_instances")}
    assert tasks["counted"]["state"] == "success"
    assert orjson.loads(tasks["counted"]["result"]) == {"rows": 1204, "error_rate": 0.002}
    # Retried: the failed first attempt's counts are not kept; the task holds the last one's.
    attempts = await pg.fetch(
        "SELECT attempt, state, result FROM task_attempts WHERE task_id = 'retried' "
        "ORDER BY attempt"
    )
    assert [(a["attempt"], a["state"], a["result"]) for a in attempts] == [
        (1, "up_for_retry", None),  # archived as it was moved
        (2, "success", '{"rows": 2}'),
    ]
    assert orjson.loads(tasks["retried"]["result"]) == {"rows": 2}
    reasons = {
        r["task_id"]: r["reason"]
        for r in await pg.fetch("SELECT task_id, reason FROM transitions WHERE to_state = 'failed'")
    }
    for task_id in ("garbled", "listed", "huge"):
        assert tasks[task_id]["state"] == "failed"
        assert tasks[task_id]["attempt"] == 1  # the task's own bug: not retried
        assert tasks[task_id]["result"] is None
    assert "result_malformed: TRIBUTARY_RESULT_FILE is not JSON" in reasons["garbled"]
    assert (
        "result_malformed: a result is a JSON object (name: value), got list" in reasons["listed"]
    )
    assert (
        "result_too_large: TRIBUTARY_RESULT_FILE holds 70,012 bytes, at most 65,536"
        in (reasons["huge"])
    )
    events = [orjson.loads(r["payload"]) for r in await pg.fetch("SELECT payload FROM outbox")]
    [event] = [
        e
        for e in events
        if e["type"] == "task.status"
        and e["data"]["task_id"] == "counted"
        and e["data"]["state"] == "success"
    ]
    assert event["data"]["result"] == {"rows": 1204, "error_rate": 0.002}


async def test_each_output_says_what_produced_it_and_a_run_has_its_own_directory(
    rig: Rig, pg: asyncpg.Connection, tmp_path: Path
) -> None:
    out = tmp_path / "warehouse"
    await rig.orchestration.apply([requested("recorded", "2026-11-21", params={"out": str(out)})])
    await eventually(
        lambda: pg.fetchval("SELECT state FROM runs"), "success".__eq__, 30, "the run to end"
    )
    run_id = await pg.fetchval("SELECT run_id FROM runs")
    assert (tmp_path / "runs" / "recorded" / run_id / "scratch").read_text() == "42\n"
    assert (out / "facts" / "part-0").read_text() == "42\n"
    records = {
        r["dataset"]: r
        for r in await rig.orchestration.store.run_outputs(run_id)  # what the API serves
    }
    facts = records["order_facts"]
    assert (facts["task_id"], facts["attempt"], facts["version"]) == ("build", 1, f"{run_id}/1")
    assert facts["input_versions"] == [
        {"dataset": "raw_orders", "partition": "2026-11-21", "version": f"{run_id}/1"}
    ]
    assert facts["params"] == {"out": str(out)}
    assert (facts["exit_code"], facts["result"]) == (0, {"rows": 42})
    assert facts["duration_seconds"] >= 0
    beside = orjson.loads((out / "facts" / "_tributary.json").read_bytes())["order_facts"]
    assert {k: beside[k] for k in ("run_id", "task_id", "attempt", "partition", "result")} == {
        "run_id": run_id,
        "task_id": "build",
        "attempt": 1,
        "partition": "2026-11-21",
        "result": {"rows": 42},
    }
    assert beside["inputs"] == [{"dataset": "raw_orders", "partition": "2026-11-21"}]
    assert beside["params"] == {"out": str(out)}


async def test_shutdown_interrupts_what_runs_and_reports_it_retryable(
    rig: Rig, pg: asyncpg.Connection
) -> None:
    await rig.run("hard", "2026-11-22")
    await eventually(
        lambda: pg.fetchval(
            "SELECT count(*) FROM task_instances WHERE task_id = 'stubborn' AND state = 'running'"
        ),
        lambda n: n == 1,
        10,
        "stubborn to run",
    )
    await rig.executor.drain(drain_timeout=0.1)
    await eventually(
        lambda: pg.fetchval("SELECT state FROM task_instances WHERE task_id = 'stubborn'"),
        lambda s: s != "running",
        10,
        "the interrupted attempt to be reported",
    )
    reason = await pg.fetchval(
        "SELECT reason FROM transitions WHERE task_id = 'stubborn' AND to_state = 'up_for_retry'"
    )
    # Interrupted after the 0.1 s drain, well before its 0.5 s timeout: not the task's fault,
    # so it is retried at once without using its retries.
    assert "interrupted: the service stopped" in reason
    assert "without using its retries" in reason
    row = await pg.fetchrow(
        "SELECT state, lost_attempts FROM task_instances WHERE task_id = 'stubborn'"
    )
    assert row["state"] in ("up_for_retry", "queued")  # nobody claims it: the executor stopped
    assert row["lost_attempts"] == 1


async def test_a_cached_task_runs_again_only_when_its_inputs_change(
    rig: Rig, pg: asyncpg.Connection
) -> None:
    ran = rig.marks / "expensive"

    async def run_once() -> str:
        await run_to_end(rig, pg, "cached")
        state: str = await pg.fetchval(
            "SELECT t.state FROM task_instances t JOIN runs r USING (run_id) "
            "ORDER BY r.created_at DESC LIMIT 1"
        )
        return state

    await rig.orchestration.apply([ready("src", "2026-11-21", version="v1")])
    assert await run_once() == "success"
    assert await run_once() == "skipped"  # same spec, command and input version
    reason = await pg.fetchval("SELECT reason FROM transitions WHERE to_state = 'skipped'")
    assert "cache_hit" in reason
    await rig.orchestration.apply([ready("src", "2026-11-21", version="v2")])
    assert await run_once() == "success"  # a new version of the input
    assert ran.read_text().splitlines() == ["ran", "ran"]


async def test_commands_run_where_and_how_the_spec_says(rig: Rig, pg: asyncpg.Connection) -> None:
    await run_to_end(rig, pg, "shaped")
    tasks = {r["task_id"]: r for r in await pg.fetch("SELECT * FROM task_instances")}
    assert (rig.marks / "here").read_text().strip() == str(rig.marks)  # cwd
    assert (rig.marks / "shelled").read_text() == "day 2026-11-21\n"  # shell: true
    assert tasks["slow_cleanup"]["state"] == "failed"  # its cleanup overstayed 0.3s
    reason = await pg.fetchval(
        "SELECT reason FROM transitions WHERE task_id = 'slow_cleanup' AND to_state = 'failed'"
    )
    assert "cleanup failed (timed out): the command did not run" in reason
    assert not (rig.marks / "must-not-exist").exists()
    assert (rig.marks / "rolled").read_text() == "rolled 1\n"  # a shell rollback


async def test_a_cache_hit_needs_skipped_upstream_tasks_and_current_outputs(
    rig: Rig, pg: asyncpg.Connection
) -> None:
    async def run_once() -> None:
        await run_to_end(rig, pg, "cached_chain")

    def ran(task: str) -> int:
        return (rig.marks / task).read_text().count("ran")

    await run_once()
    await run_once()
    # build has the same key, but prepare (upstream) ran again: what build reads may differ.
    assert (ran("prepare"), ran("build")) == (2, 2)
    # publish has no upstream and its output is still the one it made: a hit.
    assert ran("publish") == 1
    # Someone else writes its output partition: the cached success is no longer current.
    await rig.orchestration.apply([ready("made", "2026-11-21", version="elsewhere")])
    await run_once()
    assert ran("publish") == 2
    await run_once()  # its own output is current again
    assert ran("publish") == 2
    assert ran("build") == 4


@asynccontextmanager
async def lone_executor(
    orchestration: Orchestration,
    kafka_bootstrap: str,
    tmp_path: Path,
    background: Background,
    worker_id: str,
    lease: float,
) -> AsyncIterator[LocalExecutor]:
    """An executor with no heartbeat loop and no free slot: it runs only what it takes over
    or finds it holds. Running, with its completions applied, until the block ends."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    completions = CompletionBatcher(
        applier=orchestration.applier, dead_letters=DeadLetters(producer, "dead"), topic="c"
    )
    keeper = KeeperClient(tmp_path / "attempts", lease_seconds=lease)
    executor = local_executor(orchestration, keeper, completions, tmp_path, worker_id, 0, lease)
    applying = background(completions.run())
    background(executor.run())
    try:
        yield executor
    finally:
        await executor.drain(drain_timeout=5)
        completions.stop()
        await asyncio.wait_for(applying, 10)
        await keeper.close()
        await producer.stop()


FIRST = "SELECT state, attempt, lost_attempts FROM task_instances WHERE task_id = 'first'"


async def first_task_ended(pg: asyncpg.Connection) -> tuple[str, int, int]:
    row = await eventually(
        lambda: pg.fetchrow(FIRST), lambda r: r["state"] != "running", 20, "the first task"
    )
    return row["state"], row["attempt"], row["lost_attempts"]


async def test_a_successor_confirms_what_it_takes_over_at_once(
    orchestrate: Orchestrate,
    kafka_bootstrap: str,
    tmp_path: Path,
    background: Background,
    pg: asyncpg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Restarts back to back: the keeper's deadline for an attempt was set by the
    predecessor's last word, and the successor's first heartbeat may come after it. Adopting
    an attempt confirms its lease at once, so it runs to its end."""
    lease = 2.0
    monkeypatch.setenv("MARKS", str(tmp_path))
    monkeypatch.setenv("MARK_SECONDS", "3")  # past the predecessor's deadline
    orchestration = await orchestrate("marked")
    await orchestration.apply([ready("marked_ready", "2025-01-01")])
    [claim] = await orchestration.claim("predecessor", budget=1, lease=lease)
    pipeline = await orchestration.registry.version(claim.pipeline_id, claim.spec_hash)
    predecessor = KeeperClient(tmp_path / "attempts", lease_seconds=lease)
    await predecessor.open()
    await predecessor.start(key_of(claim), launch_for(pipeline, claim), tmp_path / "a.log")
    await predecessor.confirm([key_of(claim)], lease)
    await predecessor.close()  # gone; the keeper and the attempt go on
    await asyncio.sleep(lease * 0.75)  # the successor starts late in the lease, as after restarts
    async with lone_executor(
        orchestration, kafka_bootstrap, tmp_path, background, "successor", lease
    ) as successor:
        assert await first_task_ended(pg) == ("success", 1, 0)
        assert successor.adopted == 1


async def test_a_claim_whose_answer_was_lost_is_found_and_run(
    orchestrate: Orchestrate,
    kafka_bootstrap: str,
    tmp_path: Path,
    background: Background,
    pg: asyncpg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The connection broke after the claim committed and before its answer came: the
    executor's round failed, and the database says it holds an attempt it never saw. It
    finds it and runs it (else its heartbeat renews the lease of nothing, and the run hangs)."""
    monkeypatch.setenv("MARKS", str(tmp_path))
    monkeypatch.setenv("MARK_SECONDS", "0")
    orchestration = await orchestrate("marked")
    await orchestration.apply([ready("marked_ready", "2025-01-01")])
    await orchestration.claim("lone", budget=1)  # committed; the answer never reached it
    async with lone_executor(
        orchestration, kafka_bootstrap, tmp_path, background, "lone", 30
    ) as executor:
        await executor.recover()  # what its supervisor does after the failed round
        assert await first_task_ended(pg) == ("success", 1, 0)
