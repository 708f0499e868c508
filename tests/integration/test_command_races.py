"""Commands racing what the service does at the same moment, on two replicas: a cancel against
the completion of the task it would stop, a retry against a retry. Each race ends in one
consistent state, and no completion is lost."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from service.events import RunCommand, new_event
from tests.support import Orchestrate, completed, requested


def command(run_id: str, name: str) -> object:
    return new_event(RunCommand(run_id=run_id, command=name, requested_by="ops"), "urn:test")


@pytest.mark.parametrize("round_", range(5))
async def test_a_cancel_racing_a_completion_ends_one_way_or_the_other(
    orchestrate: Orchestrate, pg: asyncpg.Connection, round_: int
) -> None:
    first, second = await orchestrate("roomy"), await orchestrate("roomy")
    await first.apply([requested("roomy", "2026-11-21")])
    [claim] = await first.claim()
    done = completed(claim.run_id, claim.task_id, claim.attempt)
    racers = [first.apply([done]), second.apply([command(claim.run_id, "cancel")])]
    if round_ % 2:
        racers.reverse()
    await asyncio.gather(*racers)
    run = await pg.fetchval("SELECT state FROM runs")
    task = await pg.fetchval("SELECT state FROM task_instances")
    # The completion won (the run succeeded, the cancel was refused), or the cancel did (the
    # attempt's completion arrived for a cancelled task and was set aside as stale).
    assert (run, task) in {("success", "success"), ("cancelled", "cancelled")}
    assert await pg.fetchval("SELECT count(*) FROM processed_events") == 3  # none lost
    ignored = await pg.fetchval("SELECT count(*) FROM ignored_events")
    assert ignored == 1  # exactly one of the two changed nothing, and says why
