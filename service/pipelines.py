"""The deployed pipelines: loaded from the pipelines directory (reloaded by the watcher loop,
``loops/watcher.py``, when it changes or on SIGHUP).

Every replica loads the same directory. A file whose new content is invalid is refused with
its problems logged, and the pipeline's last valid version keeps running; a deleted file
retires its pipeline (runs in flight finish). A run names the exact spec version it was
created with (a content hash); versions this process did not load itself are read back from
PostgreSQL, so a run started before a redeploy finishes with the spec it started with.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from service.errors import Problem, SpecError
from service.observability import get_logger
from service.spec.loader import (
    DirectoryLoad,
    FileCache,
    load_pipeline_dir,
    pipeline_from_data,
)
from service.spec.params import ParamValue, resolve_params
from service.spec.pipeline import Pipeline
from service.spec.validate import NodeCapacity
from service.store import Store

log = get_logger(__name__)


class PipelineRegistry:
    def __init__(self, store: Store, capacity: NodeCapacity | None = None) -> None:
        self._store = store
        self._capacity = capacity
        self._current: dict[str, Pipeline] = {}
        self._by_trigger: dict[str, list[Pipeline]] = {}
        self._versions: dict[tuple[str, str], Pipeline] = {}
        self._file_cache: FileCache = {}  # unchanged files are not parsed again on reload

    async def load(self, directory: Path) -> DirectoryLoad:
        """Load the directory; keep the last valid version of every refused file."""
        # Parsing and validating can take a while for big pipelines: not on the event loop.
        result = await asyncio.to_thread(
            load_pipeline_dir, directory, self._capacity, self._file_cache
        )
        for problem in result.problems:
            log.error("pipeline.invalid", **_fields(problem))
        for problem in result.warnings:
            log.warning("pipeline.warning", **_fields(problem))
        current = {
            pipeline_id: pipeline
            for pipeline_id, pipeline in self._current.items()
            if pipeline.source in result.refused_files
        }
        for pipeline_id, pipeline in current.items():
            log.warning(
                "pipeline.kept_previous_version",
                pipeline_id=pipeline_id,
                spec_hash=pipeline.spec_hash[:12],
                source=pipeline.source,
            )
        for pipeline in result.pipelines:
            previous = self._current.get(pipeline.id)
            if (pipeline.id, pipeline.spec_hash) not in self._versions:
                await self._store.save_pipeline_version(
                    pipeline.id, pipeline.spec_hash, pipeline.spec.model_dump(mode="json")
                )
                self._versions[(pipeline.id, pipeline.spec_hash)] = pipeline
            if previous is None or previous.spec_hash != pipeline.spec_hash:
                log.info(
                    "pipeline.loaded",
                    pipeline_id=pipeline.id,
                    spec_hash=pipeline.spec_hash[:12],
                    tasks=len(pipeline.spec.tasks),
                    source=pipeline.source,
                )
            current[pipeline.id] = pipeline
        for retired in sorted(set(self._current) - set(current)):
            log.warning("pipeline.retired", pipeline_id=retired, reason="its file is gone")
        self._current = current
        by_trigger: dict[str, list[Pipeline]] = defaultdict(list)
        for pipeline in current.values():
            for trigger in pipeline.spec.triggers.datasets:
                by_trigger[trigger.dataset].append(pipeline)
        self._by_trigger = dict(by_trigger)
        return result

    @property
    def current(self) -> dict[str, Pipeline]:
        return dict(self._current)

    def queues(self) -> set[str]:
        """The worker queues the deployed pipelines' tasks name."""
        return {
            task.queue
            for pipeline in self._current.values()
            for task in pipeline.spec.tasks
            if task.queue is not None
        }

    def triggered_by(self, dataset: str) -> list[Pipeline]:
        return self._by_trigger.get(dataset, [])

    async def version(self, pipeline_id: str, spec_hash: str) -> Pipeline:
        """The exact spec a run was created with."""
        known = self._versions.get((pipeline_id, spec_hash))
        if known is not None:
            return known
        data = await self._store.pipeline_version_spec(pipeline_id, spec_hash)
        if data is None:
            raise SpecError([f"pipeline {pipeline_id!r} version {spec_hash[:12]} is not stored"])
        # Capacity is not re-checked: the version was valid when it was deployed.
        pipeline = pipeline_from_data(data, f"database:{pipeline_id}@{spec_hash[:12]}")
        self._versions[(pipeline_id, spec_hash)] = pipeline
        return pipeline


@dataclass(frozen=True, slots=True)
class RunContext:
    """The pipeline version a run follows, and its parameters resolved."""

    pipeline: Pipeline
    params: Mapping[str, ParamValue]


class RunContexts:
    """Run contexts for those who read status events (lineage), each run read once."""

    CACHED_RUNS = 1_024

    def __init__(self, registry: PipelineRegistry, store: Store) -> None:
        self._registry = registry
        self._store = store
        self._cache: OrderedDict[str, RunContext] = OrderedDict()

    async def of(self, run_id: str, pipeline_id: str, spec_hash: str | None) -> RunContext | None:
        """None when the run or its version is not stored (nothing to say about its data)."""
        if run_id in self._cache:
            self._cache.move_to_end(run_id)
            return self._cache[run_id]
        run = await self._store.get_run(run_id)
        if run is None:
            return None
        pipeline = await self._registry.version(pipeline_id, spec_hash or run.spec_hash)
        context = RunContext(pipeline, resolve_params(pipeline.spec.params, run.params))
        self._cache[run_id] = context
        if len(self._cache) > self.CACHED_RUNS:
            self._cache.popitem(last=False)
        return context


def _fields(problem: Problem) -> dict[str, object]:
    return {
        "file": problem.file,
        "line": problem.line,
        "path": problem.path,
        "problem": problem.message,
    }
