"""Cron schedules fire: one run per fire time however many replicas look and restart, the
batch date from the schedule, and the catch-up policy after downtime."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from service.store import Store
from tests.support import Orchestration, pipelines_dir


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


async def scheduled(pg: asyncpg.Connection) -> list[tuple[str, str, str]]:
    rows = await pg.fetch(
        "SELECT r.batch_date::text, r.trigger_key, f.fire_at FROM runs AS r "
        "JOIN schedule_fires AS f ON f.run_id = r.run_id ORDER BY r.batch_date"
    )
    return [(r["batch_date"], r["trigger_key"], r["fire_at"].isoformat()) for r in rows]


async def test_two_replicas_firing_one_schedule_start_one_run_per_fire(
    store: Store, pg: asyncpg.Connection, tmp_path: Path
) -> None:
    directory = pipelines_dir(tmp_path, ["nightly"])
    replicas = [await Orchestration.open(store, directory) for _ in range(2)]
    first_seen = at("2026-11-20T12:00:00")
    await asyncio.gather(*(r.scheduler.fire_due(first_seen) for r in replicas))
    assert await pg.fetchval("SELECT count(*) FROM runs") == 0  # no fires from before it existed

    fire = at("2026-11-21T03:00:04")
    for _ in range(3):  # both replicas, again and again
        await asyncio.gather(*(r.scheduler.fire_due(fire) for r in replicas))
    restarted = await Orchestration.open(store, directory)
    await restarted.scheduler.fire_due(fire)
    assert await scheduled(pg) == [
        ("2026-11-20", "schedule:2026-11-21T03:00:00+00:00", "2026-11-21T03:00:00+00:00")
    ]
    assert await pg.fetchval("SELECT state FROM runs") == "running"  # admitted, started


async def test_after_downtime_the_newest_missed_fire_runs_then_the_on_time_one(
    store: Store, pg: asyncpg.Connection, tmp_path: Path
) -> None:
    rig = await Orchestration.open(store, pipelines_dir(tmp_path, ["nightly"]))
    await rig.scheduler.fire_due(at("2026-11-20T12:00:00"))
    # Down from the 20th at noon until the 25th, 03:00:30: fires of the 21st-24th missed.
    assert await rig.scheduler.fire_due(at("2026-11-25T03:00:30")) == 2
    assert [row[0] for row in await scheduled(pg)] == ["2026-11-23", "2026-11-24"]
    assert await rig.scheduler.fire_due(at("2026-11-25T03:05:00")) == 0


async def test_a_schedule_fires_on_its_own_wall_clock(
    store: Store, pg: asyncpg.Connection, tmp_path: Path
) -> None:
    rig = await Orchestration.open(store, pipelines_dir(tmp_path, ["berlin"]))
    await rig.scheduler.fire_due(at("2026-11-20T12:00:00"))
    assert await rig.scheduler.fire_due(at("2026-11-20T23:59:00")) == 0  # 00:59 in Berlin
    assert await rig.scheduler.fire_due(at("2026-11-21T00:00:10")) == 1  # 01:00 in Berlin
    assert await scheduled(pg) == [
        ("2026-11-21", "schedule:2026-11-21T00:00:00+00:00", "2026-11-21T00:00:00+00:00")
    ]
