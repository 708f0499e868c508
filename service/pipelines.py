"""The deployed pipelines: loaded from the pipelines directory, reloaded when it changes.

Every replica loads the same directory. A file whose new content is invalid is refused with
its problems logged, and the pipeline's last valid version keeps running; a deleted file
retires its pipeline (runs in flight finish). A run names the exact spec version it was
created with (a content hash); versions this process did not load itself are read back from
PostgreSQL, so a run started before a redeploy finishes with the spec it started with.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from pathlib import Path

from service.errors import Problem, SpecError
from service.observability import get_logger
from service.spec.loader import (
    DirectoryLoad,
    FileCache,
    Pipeline,
    directory_signature,
    load_pipeline_dir,
    pipeline_from_data,
)
from service.spec.validate import Capacity
from service.store import Store

log = get_logger(__name__)


class PipelineRegistry:
    def __init__(self, store: Store, capacity: Capacity | None = None) -> None:
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


class PipelineWatcher:
    """Reloads the registry when the directory's files change, or when asked (SIGHUP)."""

    def __init__(self, registry: PipelineRegistry, directory: Path, interval: float) -> None:
        self._registry = registry
        self._directory = directory
        self._interval = interval
        self._requested = asyncio.Event()
        self._signature = directory_signature(directory)
        self.reloads = 0  # since start

    def request_reload(self) -> None:
        self._requested.set()

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._requested.wait(), self._interval or None)
            requested = self._requested.is_set()
            self._requested.clear()
            signature = await asyncio.to_thread(directory_signature, self._directory)
            if requested or signature != self._signature:
                self._signature = signature
                log.info("pipelines.reloading", requested=requested)
                await self._registry.load(self._directory)
                self.reloads += 1


def _fields(problem: Problem) -> dict[str, object]:
    return {
        "file": problem.file,
        "line": problem.line,
        "path": problem.path,
        "problem": problem.message,
    }
