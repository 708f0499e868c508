"""Deploying pipeline files: a broken new version is refused and the last valid one runs on."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from service.loops.watcher import PipelineWatcher
from service.pipelines import PipelineRegistry, RunContexts
from service.store import Store
from tests.support import Orchestrate, requested

GOOD = "id: daily\ntasks:\n  - id: a\n    command: [echo, '{version}']\n"


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


async def test_the_watcher_reloads_when_a_file_changes_or_when_asked(
    tmp_path: Path, store: Store
) -> None:
    path = tmp_path / "daily.yaml"
    path.write_text(GOOD.replace("{version}", "v1"))
    registry = PipelineRegistry(store)
    await registry.load(tmp_path)
    watcher = PipelineWatcher(registry=registry, directory=tmp_path, interval=60)
    await watcher.run_burst()
    assert watcher.reloads == 0  # nothing changed
    path.write_text(GOOD.replace("{version}", "v2 with a longer name"))
    await watcher.run_burst()
    assert list(registry.current["daily"].tasks["a"].command) == ["echo", "v2 with a longer name"]
    watcher.request_reload()
    await watcher.run_burst()
    assert watcher.reloads == 2


async def test_a_run_keeps_its_version_and_params_for_those_who_read_its_events(
    orchestrate: Orchestrate, tmp_path: Path
) -> None:
    rig = await orchestrate("daily")
    await rig.apply([requested("daily", "2026-11-21", params={"mode": "full"})])
    first = rig.registry.current["daily"]
    changed = (tmp_path / "pipelines" / "daily.yaml").read_text().replace("fast", "quick")
    (tmp_path / "pipelines" / "daily.yaml").write_text(changed)
    await rig.registry.load(tmp_path / "pipelines")
    assert rig.registry.current["daily"].spec_hash != first.spec_hash
    [run] = await rig.store.list_runs(1)
    context = await RunContexts(rig.registry, rig.store).of(run.run_id, "daily", run.spec_hash)
    assert context is not None
    assert context.pipeline.spec_hash == first.spec_hash  # the run's version, not today's
    assert context.params == {"mode": "full"}  # the run's params, not the defaults
