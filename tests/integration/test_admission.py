"""Run concurrency: max_active_runs per pipeline, one running run per batch date, oldest
batch date first — across replicas too."""

from __future__ import annotations

import asyncio

import asyncpg

from tests.support import Orchestrate, completed, ready, requested


async def running_dates(pg: asyncpg.Connection, pipeline_id: str) -> list[str]:
    rows = await pg.fetch(
        "SELECT batch_date FROM runs WHERE pipeline_id = $1 AND state = 'running' "
        "ORDER BY batch_date",
        pipeline_id,
    )
    return [str(row["batch_date"]) for row in rows]


async def test_runs_beyond_max_active_runs_wait_and_start_oldest_date_first(
    orchestrate: Orchestrate, pg: asyncpg.Connection
) -> None:
    rig = await orchestrate("one_at_a_time")
    dates = ["2026-11-23", "2026-11-21", "2026-11-22"]
    await rig.apply([ready("slow_raw", day) for day in dates])
    started = []
    for _ in dates:
        assert len(await running_dates(pg, "one_at_a_time")) == 1
        [claim] = await rig.claim()
        assert await rig.claim() == []  # the waiting runs' tasks are not claimable
        started.append(str(claim.batch_date))
        await rig.apply([completed(claim.run_id, claim.task_id, claim.attempt)])
    assert started == sorted(dates)
    states = await pg.fetch("SELECT state FROM runs")
    assert [row["state"] for row in states] == ["success"] * 3


async def test_a_rerun_of_a_date_waits_for_the_run_in_flight(
    orchestrate: Orchestrate, pg: asyncpg.Connection
) -> None:
    rig = await orchestrate("roomy")
    await rig.apply([requested("roomy", "2026-11-21")])
    await rig.apply([requested("roomy", "2026-11-21"), requested("roomy", "2026-11-22")])
    assert await running_dates(pg, "roomy") == ["2026-11-21", "2026-11-22"]
    claims = await rig.claim()
    assert sorted(str(c.batch_date) for c in claims) == ["2026-11-21", "2026-11-22"]
    first = next(c for c in claims if str(c.batch_date) == "2026-11-21")
    await rig.apply([completed(first.run_id, first.task_id, first.attempt)])
    [rerun] = await rig.claim()
    assert (str(rerun.batch_date), rerun.run_id != first.run_id) == ("2026-11-21", True)


async def test_replicas_admitting_together_never_pass_the_limit(
    orchestrate: Orchestrate, pg: asyncpg.Connection
) -> None:
    replicas = [await orchestrate("one_at_a_time") for _ in range(3)]
    await replicas[0].apply([ready("slow_raw", f"2026-11-{day}") for day in range(10, 20)])
    await pg.execute("UPDATE runs SET state = 'queued'")  # as if none had been admitted yet
    await pg.execute("UPDATE task_instances SET state = 'pending'")
    await asyncio.gather(*(r.applier.admission.sweep() for r in replicas for _ in range(3)))
    assert await running_dates(pg, "one_at_a_time") == ["2026-11-10"]
