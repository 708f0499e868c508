"""Runs from events: manual requests, new versions, waiting for data, chaining through outputs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
import pytest

from service.alerts.rules import AlertRules
from service.events import decode_event, validate_data
from service.orchestrator import runs as runs_module
from tests.support import Orchestrate, completed, ready, requested

PIPELINES = ("daily", "locked", "downstream")


async def test_a_manual_run_takes_typed_params_once_per_request(
    orchestrate: Orchestrate, pg: asyncpg.Connection
) -> None:
    rig = await orchestrate(*PIPELINES)
    request = requested(
        "daily",
        "2026-11-21",
        params={"mode": "full"},
        requested_by="ops@example.com",
        reason="backfill",
    )
    assert (await rig.apply([request, request])).runs_created == 1
    await rig.apply([request])
    run = await pg.fetchrow("SELECT * FROM runs")
    assert orjson.loads(run["params"]) == {"mode": "full"}
    reason = await pg.fetchval(
        "SELECT reason FROM transitions WHERE to_state = 'queued' AND task_id IS NULL"
    )
    assert reason == "requested by ops@example.com: backfill"


@pytest.mark.parametrize(
    ("pipeline_id", "fields", "reason"),
    [
        ("daly", {}, "no pipeline 'daly' (did you mean 'daily'?)"),
        ("locked", {}, "locked does not allow manual runs"),
        ("daily", {"params": {"mode": "slow"}}, "'slow' is not one of ['fast', 'full']"),
    ],
)
async def test_bad_manual_requests_are_refused_with_the_reason(
    orchestrate: Orchestrate,
    pg: asyncpg.Connection,
    pipeline_id: str,
    fields: dict[str, Any],
    reason: str,
) -> None:
    rig = await orchestrate(*PIPELINES)
    outcome = await rig.apply([requested(pipeline_id, "2026-11-21", **fields)])
    assert (outcome.runs_created, outcome.ignored) == (0, 1)
    assert reason in await pg.fetchval("SELECT reason FROM ignored_events")


async def test_a_new_version_reruns_when_the_pipeline_says_so(
    orchestrate: Orchestrate, pg: asyncpg.Connection
) -> None:
    rig = await orchestrate(*PIPELINES)
    v1 = ready("raw", "2026-11-21", version="v1")
    v1_again = ready("raw", "2026-11-21", version="v1")
    v2 = ready("raw", "2026-11-21", version="v2")
    assert (await rig.apply([v1, v1_again])).runs_created == 1
    assert (await rig.apply([v2])).runs_created == 1
    assert await pg.fetchval("SELECT count(*) FROM runs WHERE pipeline_id = 'daily'") == 2


async def test_a_task_waits_for_its_data_without_a_slot_then_chains_through_its_output(
    orchestrate: Orchestrate, pg: asyncpg.Connection
) -> None:
    rig = await orchestrate(*PIPELINES)
    await rig.apply([ready("raw", "2026-11-21")])
    assert (await pg.fetchval("SELECT state FROM task_instances")) == "queued"
    assert await rig.claim() == []  # dim 2026-11-20 is not there yet
    await rig.apply([ready("dim", "2026-11-19")])
    assert await rig.claim() == []  # the wrong day
    outcome = await rig.apply([ready("dim", "2026-11-20")])
    assert outcome.datasets_recorded == 1
    [claim] = await rig.claim()
    chained = await rig.apply([completed(claim.run_id, "wait", 1)])
    assert chained.runs_created == 1  # out 2026-11-21 was produced: downstream starts
    produced = await pg.fetchrow("SELECT * FROM dataset_partitions WHERE dataset = 'out'")
    assert (produced["partition"], produced["version"]) == ("2026-11-21", f"{claim.run_id}/1")
    downstream = await pg.fetchrow("SELECT * FROM runs WHERE pipeline_id = 'downstream'")
    upstream = await pg.fetchrow("SELECT * FROM runs WHERE pipeline_id = 'daily'")
    assert downstream["trace_id"] == upstream["trace_id"]
    assert (
        await pg.fetchval(
            "SELECT count(*) FROM outbox WHERE convert_from(payload, 'UTF8')::jsonb->>'type'"
            " = 'dataset.produced'"
        )
        == 1
    )


async def test_a_partition_a_pipeline_cannot_map_starts_nothing(
    orchestrate: Orchestrate, pg: asyncpg.Connection
) -> None:
    rig = await orchestrate(*PIPELINES)
    outcome = await rig.apply([ready("raw", "yesterday")])
    assert (outcome.applied, outcome.runs_created) == (1, 0)
    assert await pg.fetchval("SELECT count(*) FROM dataset_partitions") == 1  # still recorded


async def test_a_run_past_its_sla_is_announced_once(
    orchestrate: Orchestrate, pg: asyncpg.Connection
) -> None:
    rig = await orchestrate("late")
    await rig.apply([requested("late", "2020-01-01"), requested("late", "2099-01-01")])
    deadline = await pg.fetchval("SELECT deadline_at FROM runs WHERE batch_date = '2020-01-01'")
    assert deadline.isoformat() == "2020-01-02T06:00:00+00:00"  # batch day 00:00 UTC + 30h
    assert await rig.timers.flag_missed_deadlines(10) == 1
    assert await rig.timers.flag_missed_deadlines(10) == 0  # once
    payload = await pg.fetchval(
        "SELECT payload FROM outbox WHERE convert_from(payload, 'UTF8')::jsonb->>'type'"
        " = 'run.deadline_missed'"
    )
    body = orjson.loads(payload)
    validate_data(body["type"], body["data"])
    [alert] = AlertRules().alerts_for(decode_event(payload).payload)
    assert alert.kind == "sla_missed"
    assert "not done by its deadline 2020-01-02T06:00:00.000Z" in alert.reason


@pytest.mark.parametrize("batch_date", ["0001-01-01", "9999-12-31", "1899-12-31"])
async def test_a_batch_date_out_of_range_is_refused_with_the_reason(
    orchestrate: Orchestrate, pg: asyncpg.Connection, batch_date: str
) -> None:
    rig = await orchestrate(*PIPELINES)
    outcome = await rig.apply([requested("daily", batch_date)])
    assert (outcome.runs_created, outcome.ignored) == (0, 1)
    reason = await pg.fetchval("SELECT reason FROM ignored_events")
    assert f"batch date {batch_date} is outside 1900-01-01..2999-12-31" in reason
    # Announced data that maps there starts nothing either (and is still recorded).
    announced = await rig.apply([ready("raw", "9999-12-31")])
    assert (announced.applied, announced.runs_created) == (1, 0)


async def test_a_batch_of_triggers_creates_every_run_with_its_tasks_and_waits(
    orchestrate: Orchestrate, pg: asyncpg.Connection
) -> None:
    rig = await orchestrate(*PIPELINES)
    days = [f"2026-10-{d:02d}" for d in range(1, 31)]
    again = ready("raw", days[0], version="v0")  # the same partition, another event: no run
    outcome = await rig.apply([ready("raw", day, version="v0") for day in days] + [again])
    assert outcome.runs_created == len(days)
    runs = await pg.fetch("SELECT run_id, batch_date::text AS day FROM runs ORDER BY batch_date")
    assert [r["day"] for r in runs] == days
    per_run = await pg.fetch(
        "SELECT r.batch_date::text AS day, count(DISTINCT t.task_id) AS tasks,"
        " count(DISTINCT w.partition) AS waits"
        " FROM runs r JOIN task_instances t USING (run_id) JOIN task_waits w USING (run_id)"
        " GROUP BY r.batch_date ORDER BY r.batch_date"
    )
    assert [(r["day"], r["tasks"], r["waits"]) for r in per_run] == [(d, 1, 1) for d in days]
    # Each run's task waits for its own day before (the run's own batch date rendered).
    waits = await pg.fetch(
        "SELECT r.batch_date - 1 AS wanted, w.partition"
        " FROM runs r JOIN task_waits w USING (run_id)"
    )
    assert all(str(w["wanted"]) == w["partition"] for w in waits)


async def test_run_ids_that_clash_in_a_batch_or_with_stored_runs_are_drawn_again(
    orchestrate: Orchestrate, pg: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC)  # one second: ids differ by suffix only
    suffixes = iter(["aaaa", "aaaa", "bbbb", "aaaa", "bbbb", "cccc"])
    monkeypatch.setattr(runs_module, "utc_now", lambda: now)
    draw = runs_module.secrets.token_hex  # trace ids draw from it too
    monkeypatch.setattr(
        runs_module.secrets,
        "token_hex",
        lambda n: next(suffixes) if n == runs_module.RUN_ID_SUFFIX_BYTES else draw(n),
    )
    rig = await orchestrate(*PIPELINES)
    first = await rig.apply([ready("raw", "2026-10-01"), ready("raw", "2026-10-02")])
    assert first.runs_created == 2  # the second drew aaaa again in the same statement
    second = await rig.apply([ready("raw", "2026-10-03")])
    assert second.runs_created == 1  # aaaa and bbbb were stored already
    ids = await pg.fetch("SELECT run_id, batch_date::text AS day FROM runs ORDER BY batch_date")
    assert [(r["run_id"][-4:], r["day"]) for r in ids] == [
        ("aaaa", "2026-10-01"),
        ("bbbb", "2026-10-02"),
        ("cccc", "2026-10-03"),
    ]
    assert await pg.fetchval("SELECT count(DISTINCT run_id) FROM task_instances") == 3
