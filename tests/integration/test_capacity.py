"""Claims respect the node's capacity and the pools, in queue order, without starvation."""

from __future__ import annotations

from service.store.records import ClaimBudget
from tests.support import Orchestrate, Orchestration, requested


async def sized(orchestrate: Orchestrate) -> Orchestration:
    rig = await orchestrate("sized")
    await rig.apply([requested("sized", "2026-11-21")])
    return rig


async def claimed(rig: Orchestration, budget: ClaimBudget) -> list[str]:
    return [c.task_id for c in await rig.claim("w", budget)]


async def test_a_big_task_at_the_head_is_not_overtaken(orchestrate: Orchestrate) -> None:
    rig = await sized(orchestrate)
    # 1.5 free cores: the big task (2 cores) does not fit, and the small ones behind it wait.
    assert await claimed(rig, ClaimBudget(10, 1.5, 10_000)) == []
    assert await claimed(rig, ClaimBudget(10, 3.0, 10_000)) == ["big", "small1"]


async def test_memory_and_slots_bound_the_claim(orchestrate: Orchestrate) -> None:
    rig = await sized(orchestrate)
    assert await claimed(rig, ClaimBudget(10, 100.0, 1_050)) == ["big"]
    assert await claimed(rig, ClaimBudget(1, 100.0, 10_000)) == ["small1"]


async def test_no_limit_means_no_limit(orchestrate: Orchestrate) -> None:
    rig = await sized(orchestrate)
    assert len(await claimed(rig, ClaimBudget(10))) == 6  # no cores or memory given


async def test_a_full_pool_holds_back_only_its_own_tasks(orchestrate: Orchestrate) -> None:
    rig = await sized(orchestrate)
    everything = ClaimBudget(10, 100.0, 100_000, pools={"db": 1})
    assert await claimed(rig, everything) == ["big", "small1", "small2", "db1", "free"]
    # db1 runs: db is full, so db2 waits, whatever the node still has free.
    assert await claimed(rig, everything) == []
    assert await claimed(rig, ClaimBudget(10, 100.0, 100_000, pools={"db": 2})) == ["db2"]
