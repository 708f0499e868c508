"""Deploying pipeline files: a broken new version is refused and the last valid one runs on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from service.pipelines import PipelineRegistry, PipelineWatcher
from service.store import Store, connect
from tests.support import eventually

GOOD = "id: daily\ntasks:\n  - id: a\n    command: [echo, '{version}']\n"


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    store = await connect(database_url, 3)
    yield store
    await store.close()


async def test_an_invalid_new_version_keeps_the_last_valid_one(
    tmp_path: Path, store: Store, pg: asyncpg.Connection
) -> None:
    path = tmp_path / "daily.yaml"
    path.write_text(GOOD.replace("{version}", "v1"))
    registry = PipelineRegistry(store)
    await registry.load(tmp_path)
    first = registry.current["daily"]

    path.write_text("id: daily\ntasks:\n  - id: a\n    command: [echo]\n    requires: [ghost]\n")
    result = await registry.load(tmp_path)
    assert [p.path for p in result.problems] == ["tasks[0].requires[0]"]
    assert registry.current["daily"].spec_hash == first.spec_hash

    path.write_text(GOOD.replace("{version}", "v2"))
    await registry.load(tmp_path)
    second = registry.current["daily"]
    assert second.spec_hash != first.spec_hash
    # Both versions are stored: runs created with v1 still find it.
    stored = await pg.fetch("SELECT spec_hash FROM pipeline_versions WHERE pipeline_id = 'daily'")
    assert {r["spec_hash"] for r in stored} == {first.spec_hash, second.spec_hash}
    fresh = PipelineRegistry(store)
    assert (await fresh.version("daily", first.spec_hash)).spec_hash == first.spec_hash

    path.unlink()
    await registry.load(tmp_path)
    assert "daily" not in registry.current


async def test_the_watcher_reloads_when_a_file_changes(tmp_path: Path, store: Store) -> None:
    path = tmp_path / "daily.yaml"
    path.write_text(GOOD.replace("{version}", "v1"))
    registry = PipelineRegistry(store)
    await registry.load(tmp_path)
    watcher = PipelineWatcher(registry, tmp_path, interval=0.05)
    task = asyncio.create_task(watcher.run())
    try:
        path.write_text(GOOD.replace("{version}", "v2 with a longer name"))

        async def command() -> list[str]:
            return list(registry.current["daily"].tasks["a"].command)

        await eventually(
            command, lambda c: c == ["echo", "v2 with a longer name"], 10, "the new version"
        )
        reloads = watcher.reloads
        watcher.request_reload()
        await eventually(
            lambda: asyncio.sleep(0, watcher.reloads),
            lambda n: n > reloads,
            10,
            "a requested reload",
        )
    finally:
        task.cancel()
