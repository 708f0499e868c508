"""Time limits: the default_task_timeout reaches every task without its own, and a lease is
never renewed past the attempt's deadline (an attempt that overstays it is timed out)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import asyncpg

from service.engine.triggers import HOLD_MARGIN
from service.orchestrator.claims import launch_for
from service.store import Store
from tests.support import Orchestration, eventually, pipelines_dir, requested


async def test_a_task_without_a_timeout_gets_the_default_and_its_lease_stops_at_the_deadline(
    store: Store, pg: asyncpg.Connection, tmp_path: Path
) -> None:
    rig = await Orchestration.open(
        store, pipelines_dir(tmp_path, ["roomy"]), default_timeout=timedelta(seconds=2)
    )
    await rig.apply([requested("roomy", "2026-11-21")])
    [claim] = await rig.claim(lease=3600)
    pipeline = await rig.registry.version(claim.pipeline_id, claim.spec_hash)
    assert pipeline.tasks["work"].timeout is None
    assert launch_for(pipeline, claim).time_limit == 2.0
    hold = 2 + 30 + HOLD_MARGIN.total_seconds()  # the limit, the default grace, the margin
    row = await pg.fetchrow(
        "SELECT extract(epoch FROM attempt_deadline - started_at) AS hold, "
        "lease_expires_at = attempt_deadline AS capped FROM task_instances"
    )
    assert (row["hold"], row["capped"]) == (hold, True)  # a lease of 3600 s, capped
    await store.renew_leases("w", 3600)
    assert await pg.fetchval("SELECT lease_expires_at = attempt_deadline FROM task_instances")

    # The holder never ends it: once its deadline (and the grace) passed, it is timed out.
    await pg.execute(
        "UPDATE task_instances SET attempt_deadline = now() - interval '1 minute', "
        "lease_expires_at = now() - interval '1 minute'"
    )
    assert await rig.timers.reap_expired_leases(10, grace_seconds=1) == 1
    state = await eventually(
        lambda: pg.fetchval("SELECT state FROM task_instances"),
        lambda s: s != "running",
        10,
        "the overstaying attempt to end",
    )
    assert state == "timed_out"
    reason = await pg.fetchval(
        "SELECT reason FROM transitions WHERE to_state = 'timed_out' AND task_id = 'work'"
    )
    assert "overstayed its deadline" in reason
