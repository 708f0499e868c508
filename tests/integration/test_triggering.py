"""Runs from events: manual requests, new versions, waiting for data, chaining through outputs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from service.alerts.rules import AlertRules
from service.bus.envelope import (
    DATASET_READY,
    RUN_REQUESTED,
    TASK_COMPLETED,
    CloudEvent,
    new_event,
    validate_data,
)
from service.coordinator import Coordinator, StatusTopic
from service.pipelines import PipelineRegistry
from service.store import Store, connect

PIPELINES = {
    "daily.yaml": """\
id: daily
triggers:
  datasets: [{dataset: raw}]
  on_new_version: rerun
params:
  mode: {type: string, default: fast, choices: [fast, full]}
tasks:
  - id: wait
    command: [echo, "{params.mode}"]
    wait_for: [{dataset: dim, partition: "{batch_date - 1d}"}]
    outputs: [{uri: "pg://w/out", dataset: out}]
""",
    "locked.yaml": """\
id: locked
triggers: {datasets: [{dataset: other}], manual: false}
tasks: [{id: a, command: [echo]}]
""",
    "downstream.yaml": """\
id: downstream
triggers: {datasets: [{dataset: out}]}
tasks: [{id: b, command: [echo]}]
""",
}
LEASE = 30.0


@pytest.fixture
async def coordinator(database_url: str, tmp_path: Path) -> AsyncIterator[Coordinator]:
    for name, text in PIPELINES.items():
        (tmp_path / name).write_text(text)
    store: Store = await connect(database_url, 3)
    registry = PipelineRegistry(store)
    assert (await registry.load(tmp_path)).problems == []
    yield Coordinator(store, registry, StatusTopic("status", "urn:test"), actor="test")
    await store.close()


def event(kind: str, **data: Any) -> CloudEvent:
    return new_event(kind, "urn:test", data)


async def test_a_manual_run_takes_typed_params_once_per_request(
    coordinator: Coordinator, pg: asyncpg.Connection
) -> None:
    request = event(
        RUN_REQUESTED,
        pipeline_id="daily",
        batch_date="2026-11-21",
        params={"mode": "full"},
        requested_by="ops@example.com",
        reason="backfill",
    )
    assert (await coordinator.apply([request, request])).runs_created == 1
    await coordinator.apply([request])
    run = await pg.fetchrow("SELECT * FROM runs")
    assert orjson.loads(run["params"]) == {"mode": "full"}
    reason = await pg.fetchval(
        "SELECT reason FROM transitions WHERE to_state = 'queued' AND task_id IS NULL"
    )
    assert reason == "requested by ops@example.com: backfill"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (
            {"pipeline_id": "daly", "batch_date": "2026-11-21"},
            "no pipeline 'daly' (did you mean 'daily'?)",
        ),
        (
            {"pipeline_id": "locked", "batch_date": "2026-11-21"},
            "locked does not allow manual runs",
        ),
        (
            {"pipeline_id": "daily", "batch_date": "2026-11-21", "params": {"mode": "slow"}},
            "'slow' is not one of ['fast', 'full']",
        ),
    ],
)
async def test_bad_manual_requests_are_refused_with_the_reason(
    coordinator: Coordinator, pg: asyncpg.Connection, data: dict[str, Any], reason: str
) -> None:
    outcome = await coordinator.apply([event(RUN_REQUESTED, **data)])
    assert (outcome.runs_created, outcome.ignored) == (0, 1)
    assert reason in await pg.fetchval("SELECT reason FROM ignored_events")


async def test_a_new_version_reruns_when_the_pipeline_says_so(
    coordinator: Coordinator, pg: asyncpg.Connection
) -> None:
    v1 = event(DATASET_READY, dataset="raw", partition="2026-11-21", version="v1")
    v1_again = event(DATASET_READY, dataset="raw", partition="2026-11-21", version="v1")
    v2 = event(DATASET_READY, dataset="raw", partition="2026-11-21", version="v2")
    assert (await coordinator.apply([v1, v1_again])).runs_created == 1
    assert (await coordinator.apply([v2])).runs_created == 1
    assert await pg.fetchval("SELECT count(*) FROM runs WHERE pipeline_id = 'daily'") == 2


async def test_a_task_waits_for_its_data_without_a_slot_then_chains_through_its_output(
    coordinator: Coordinator, pg: asyncpg.Connection
) -> None:
    await coordinator.apply([event(DATASET_READY, dataset="raw", partition="2026-11-21")])
    assert (await pg.fetchval("SELECT state FROM task_instances")) == "queued"
    assert await coordinator.claim("w", 10, LEASE) == []  # dim 2026-11-20 is not there yet
    await coordinator.apply([event(DATASET_READY, dataset="dim", partition="2026-11-19")])
    assert await coordinator.claim("w", 10, LEASE) == []  # the wrong day
    outcome = await coordinator.apply([event(DATASET_READY, dataset="dim", partition="2026-11-20")])
    assert outcome.datasets_recorded == 1
    [claim] = await coordinator.claim("w", 10, LEASE)
    done = event(TASK_COMPLETED, run_id=claim.run_id, task_id="wait", attempt=1, outcome="success")
    chained = await coordinator.apply([done])
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


async def test_a_run_past_its_sla_is_announced_once(
    coordinator: Coordinator, pg: asyncpg.Connection, tmp_path: Path, database_url: str
) -> None:
    (tmp_path / "slow.yaml").write_text(
        "id: slow\nsla: {deadline: 30h}\ntasks: [{id: a, command: [echo]}]\n"
    )
    store = await connect(database_url, 2)
    registry = PipelineRegistry(store)
    await registry.load(tmp_path)
    late = Coordinator(store, registry, StatusTopic("status", "urn:test"), actor="test")
    try:
        await late.apply(
            [
                event(RUN_REQUESTED, pipeline_id="slow", batch_date="2020-01-01"),
                event(RUN_REQUESTED, pipeline_id="slow", batch_date="2099-01-01"),
            ]
        )
        deadline = await pg.fetchval("SELECT deadline_at FROM runs WHERE batch_date = '2020-01-01'")
        assert deadline.isoformat() == "2020-01-02T06:00:00+00:00"  # batch day 00:00 UTC + 30h
        assert await late.flag_missed_deadlines(10) == 1
        assert await late.flag_missed_deadlines(10) == 0  # once
        payload = await pg.fetchval(
            "SELECT payload FROM outbox WHERE convert_from(payload, 'UTF8')::jsonb->>'type'"
            " = 'run.deadline_missed'"
        )
        body = orjson.loads(payload)
        validate_data(body["type"], body["data"])
        [alert] = AlertRules().alerts_for(body)
        assert alert.kind == "sla_missed"
        assert "not done by its deadline" in alert.reason
    finally:
        await store.close()
