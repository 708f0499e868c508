"""Waits a task declares are kept: polled checks (a command, a path, …) hold it until ready,
a wait that times out fails it (reason wait_timeout, an alert naming what and since when),
a check that keeps erring fails it, and an input that names a partition is waited for."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import orjson

from service.alerts.rules import AlertRules
from service.events import TaskStatus, decode_event, validate_data
from service.loops.checks import CheckPoker
from tests.support import Background, Orchestrate, Orchestration, completed, eventually, requested
from tests.support import ready as announced


def poker(rig: Orchestration) -> CheckPoker:
    return CheckPoker(
        store=rig.store,
        hub=rig.hub,
        concurrency=4,
        probe_timeout=5.0,
        databases={},
        poll_interval=0.02,
    )


async def task_state(pg: asyncpg.Connection, task_id: str) -> str:
    state: str = await pg.fetchval("SELECT state FROM task_instances WHERE task_id = $1", task_id)
    return state


async def test_a_check_holds_its_task_until_ready_and_a_wait_that_times_out_fails_it(
    orchestrate: Orchestrate, pg: asyncpg.Connection, tmp_path: Path, background: Background
) -> None:
    rig = await orchestrate("checked")
    await rig.apply([requested("checked", "2026-11-21", params={"marks": str(tmp_path)})])
    assert await rig.claim() == []  # queued, but its check has not said ready
    checks = poker(rig)
    background(checks.run())
    [load] = await eventually(rig.claim, lambda c: c != [], 10, "the check to say ready")
    assert load.task_id == "load"
    assert (tmp_path / "pokes").read_text().count("poke") == 3  # ready on the third, then no more
    await rig.apply([completed(load.run_id, "load", load.attempt)])

    # publish waits for a path that never appears: after its timeout (0.5 s) it fails.
    await eventually(
        lambda: rig.timers.fail_waits(10), lambda n: n == 1, 10, "publish's wait to time out"
    )
    assert await task_state(pg, "publish") == "failed"
    assert await task_state(pg, "notify") == "queued"  # all_done: runs after a failure
    reason = await pg.fetchval(
        "SELECT reason FROM transitions WHERE task_id = 'publish' AND to_state = 'failed'"
    )
    assert reason.startswith("wait_timeout: waited since 20")
    assert f"for path {tmp_path}/never with _SUCCESS" in reason
    payloads = await pg.fetch("SELECT payload FROM outbox ORDER BY id")
    for row in payloads:  # what is published keeps to the contract
        body = orjson.loads(row["payload"])
        validate_data(body["type"], body["data"])
    statuses = [decode_event(row["payload"]).payload for row in payloads]
    [failure] = [
        s
        for s in statuses
        if isinstance(s, TaskStatus) and s.task_id == "publish" and s.state == "failed"
    ]
    [alert] = AlertRules().alerts_for(failure)
    assert (alert.kind, alert.task_id, alert.reason) == ("task_failed", "publish", reason)


async def test_a_check_that_keeps_erring_fails_its_task_with_the_error(
    orchestrate: Orchestrate, pg: asyncpg.Connection, background: Background
) -> None:
    rig = await orchestrate("erring")
    await rig.apply([requested("erring", "2026-11-21")])
    checks = poker(rig)
    background(checks.run())
    await eventually(
        lambda: rig.timers.fail_waits(10), lambda n: n == 1, 10, "the check to err 3 times"
    )
    assert checks.pokes >= 3
    assert await task_state(pg, "load") == "failed"
    reason = await pg.fetchval(
        "SELECT reason FROM transitions WHERE task_id = 'load' AND to_state = 'failed'"
    )
    assert reason.startswith("check_error: error: exit 2: broken (check sh -c")
    assert await pg.fetchval("SELECT state FROM runs") == "failed"


async def test_an_input_naming_a_partition_is_waited_for_unless_told_not_to(
    orchestrate: Orchestrate, pg: asyncpg.Connection
) -> None:
    rig = await orchestrate("input_wait")
    await rig.apply([requested("input_wait", "2026-11-21")])
    assert await rig.claim() == []  # dim_input 2026-11-20 has not been announced
    run_id = await pg.fetchval("SELECT run_id FROM runs")
    details = await rig.store.run_details(run_id)
    assert details is not None
    waiting = {t["task_id"]: t.get("waiting_for") for t in details.view()["tasks"]}
    assert [w["waits_for"] for w in waiting["join"]] == ["dim_input 2026-11-20"]
    assert waiting["join"][0]["since"] is not None
    assert [w["waits_for"] for w in waiting["loose"]] == ["late_dim 2026-11-21"]
    assert "times_out_at" in waiting["loose"][0]
    await rig.apply([announced("dim_input", "2026-11-21")])  # not the partition it reads
    assert await rig.claim() == []
    await rig.apply([announced("dim_input", "2026-11-20")])
    [join] = await rig.claim()
    assert join.task_id == "join"  # lookup (wait: false) was never announced
    await eventually(
        lambda: rig.timers.fail_waits(10), lambda n: n == 1, 10, "loose's wait to time out"
    )
    assert await task_state(pg, "loose") == "failed"
    details = await rig.store.run_details(join.run_id)
    assert details is not None
    assert "waiting_for" not in str(details.view())  # nothing waits any more
