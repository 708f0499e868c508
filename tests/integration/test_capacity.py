"""Claims respect the node's capacity and the pools, in queue order, without starvation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from service.bus.envelope import RUN_REQUESTED, new_event
from service.coordinator import Coordinator, StatusTopic
from service.pipelines import PipelineRegistry
from service.store import Capacity, connect

PIPELINE = """\
id: sized
tasks:
  - {id: big, command: ["true"], priority: 3, resources: {cpu_cores: 2, memory_mb: 1000}}
  - {id: small1, command: ["true"], priority: 2, resources: {cpu_cores: 1, memory_mb: 100}}
  - {id: small2, command: ["true"], priority: 1, resources: {cpu_cores: 1, memory_mb: 100}}
  - {id: db1, command: ["true"], priority: 0, resources: {cpu_cores: 0.1, pool: db}}
  - {id: db2, command: ["true"], priority: 0, resources: {cpu_cores: 0.1, pool: db}}
  - {id: free, command: ["true"], priority: -1, resources: {cpu_cores: 0.1}}
"""
LEASE = 30.0


@pytest.fixture
async def coordinator(database_url: str, tmp_path: Path) -> AsyncIterator[Coordinator]:
    (tmp_path / "sized.yaml").write_text(PIPELINE)
    store = await connect(database_url, 3)
    registry = PipelineRegistry(store)
    assert (await registry.load(tmp_path)).problems == []
    coordinator = Coordinator(store, registry, StatusTopic("status", "urn:test"), actor="test")
    await coordinator.apply(
        [new_event(RUN_REQUESTED, "urn:test", {"pipeline_id": "sized", "batch_date": "2026-11-21"})]
    )
    yield coordinator
    await store.close()


async def claimed(coordinator: Coordinator, capacity: Capacity) -> list[str]:
    return [c.task_id for c in await coordinator.claim("w", capacity, LEASE)]


async def test_a_big_task_at_the_head_is_not_overtaken(coordinator: Coordinator) -> None:
    # 1.5 free cores: the big task (2 cores) does not fit, and the small ones behind it wait.
    assert await claimed(coordinator, Capacity(10, 1.5, 10_000)) == []
    assert await claimed(coordinator, Capacity(10, 3.0, 10_000)) == ["big", "small1"]


async def test_memory_and_slots_bound_the_claim(coordinator: Coordinator) -> None:
    assert await claimed(coordinator, Capacity(10, 100.0, 1_050)) == ["big"]
    assert await claimed(coordinator, Capacity(1, 100.0, 10_000)) == ["small1"]


async def test_a_full_pool_holds_back_only_its_own_tasks(coordinator: Coordinator) -> None:
    everything = Capacity(10, 100.0, 100_000, pools={"db": 1})
    assert await claimed(coordinator, everything) == ["big", "small1", "small2", "db1", "free"]
    # db1 runs: db is full, so db2 waits, whatever the node still has free.
    assert await claimed(coordinator, everything) == []
    assert await claimed(coordinator, Capacity(10, 100.0, 100_000, pools={"db": 2})) == ["db2"]
