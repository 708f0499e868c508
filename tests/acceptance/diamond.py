"""Runs of the diamond test pipeline (``tests/pipelines/diamond.yaml``), and the checks that a
batch of them ended exactly right."""

from __future__ import annotations

from datetime import date, timedelta

import asyncpg
import orjson

from service.events import CloudEvent
from tests.support import TopicReader, ready

TASKS = 4  # extract, left, right, load


def triggers(runs: int) -> list[CloudEvent]:
    """One dataset.ready per run, for consecutive days."""
    return [
        ready("crash_ready", (date(2025, 1, 1) + timedelta(days=i)).isoformat())
        for i in range(runs)
    ]


async def unfinished(conn: asyncpg.Connection, runs: int) -> int:
    """Runs not created yet or not ended yet."""
    open_runs: int = await conn.fetchval(
        "SELECT count(*) FROM runs WHERE state NOT IN ('success', 'failed')"
    )
    created: int = await conn.fetchval("SELECT count(*) FROM runs")
    return open_runs + (runs - created)


async def check_database(conn: asyncpg.Connection, runs: int, context: str = "") -> None:
    """Every run succeeded, each task succeeded exactly once, nothing is left running."""
    states = await conn.fetch("SELECT state, count(*) AS n FROM runs GROUP BY state")
    assert {r["state"]: r["n"] for r in states} == {"success": runs}, context
    assert await conn.fetchval("SELECT count(*) FROM task_instances WHERE state = 'running'") == 0
    assert (
        await conn.fetchval("SELECT count(*) FROM task_instances WHERE state = 'success'")
        == runs * TASKS
    )
    doubled = await conn.fetchval(
        "SELECT count(*) FROM (SELECT run_id, task_id FROM task_attempts WHERE state = 'success'"
        " GROUP BY run_id, task_id HAVING count(*) > 1) AS d"
    )
    assert doubled == 0, context
    assert (
        await conn.fetchval("SELECT count(*) FROM task_attempts WHERE state = 'success'")
        == runs * TASKS
    )
    assert await conn.fetchval("SELECT count(DISTINCT trigger_key) FROM runs") == runs


async def check_status_topic(conn: asyncpg.Connection, bootstrap: str, topic: str) -> None:
    """Every outbox event is on the topic; the topic holds nothing the outbox never had."""
    order = {r["event_id"]: r["id"] for r in await conn.fetch("SELECT id, event_id FROM outbox")}
    expected = set(order)
    async with TopicReader(bootstrap, topic) as reader:
        records = await reader.read_until(
            lambda rs: expected <= {orjson.loads(r.value)["id"] for r in rs}, timeout=60
        )
    seen = [orjson.loads(r.value)["id"] for r in records]
    assert expected <= set(seen)
    assert set(seen) <= expected, "the topic holds an event the outbox never had"
    # At least once: a crash between publishing and marking sent repeats an id, never invents one.
    assert len(seen) >= len(expected)
    # Per run (the key), events first appear in the order they were decided.
    first: dict[bytes, list[int]] = {}
    met: set[str] = set()
    for record, event_id in zip(records, seen, strict=True):
        if event_id not in met:
            met.add(event_id)
            first.setdefault(record.key, []).append(order[event_id])
    for key, ids in first.items():
        assert ids == sorted(ids), f"run {key!r}: status events out of order"
