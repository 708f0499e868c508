"""A retry may follow the pipeline's current version instead of the run's own — when the new
version has the same tasks; otherwise it is refused with what differs."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from service.events import RunCommand, new_event
from service.store import Store
from tests.support import Orchestration, completed, pipelines_dir, requested


def retry(run_id: str) -> object:
    payload = RunCommand(run_id=run_id, command="retry", requested_by="ops", current_version=True)
    return new_event(payload, "urn:test")


async def test_a_retry_follows_the_current_version_only_with_the_same_tasks(
    store: Store, pg: asyncpg.Connection, tmp_path: Path
) -> None:
    directory = pipelines_dir(tmp_path, ["roomy"])
    rig = await Orchestration.open(store, directory)
    await rig.apply([requested("roomy", "2026-11-21")])
    [claim] = await rig.claim()
    await rig.apply([completed(claim.run_id, claim.task_id, claim.attempt, "failed")])
    first = rig.registry.current["roomy"].spec_hash

    spec = directory / "roomy.yaml"
    spec.write_text(
        spec.read_text().replace('[echo, "{batch_date}"]', '[echo, fixed, "{batch_date}"]')
    )
    await rig.registry.load(directory)
    fixed = rig.registry.current["roomy"].spec_hash
    assert fixed != first
    outcome = await rig.apply([retry(claim.run_id)])
    assert outcome.refused == {}
    assert await pg.fetchval("SELECT spec_hash FROM runs") == fixed
    [again] = await rig.claim()
    await rig.apply([completed(again.run_id, again.task_id, again.attempt, "failed")])

    spec.write_text(spec.read_text() + "  - {id: extra, command: [echo]}\n")
    await rig.registry.load(directory)
    outcome = await rig.apply([retry(claim.run_id)])
    [why] = outcome.refused.values()
    assert why.startswith("the current version has other tasks (added ['extra'], removed [])")
    assert await pg.fetchval("SELECT spec_hash FROM runs") == fixed
