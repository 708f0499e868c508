"""The deployed pipelines: loaded from the pipelines directory, each version recorded.

Every replica loads the same directory. A run names the exact spec version it was created
with (a content hash); versions this process did not load itself are read back from
PostgreSQL, so a run started before a redeploy finishes with the spec it started with.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from service.errors import SpecError
from service.observability import get_logger
from service.spec.loader import Pipeline, load_pipeline_dir, pipeline_from_data
from service.store import Store

log = get_logger(__name__)


class PipelineRegistry:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._current: dict[str, Pipeline] = {}
        self._by_trigger: dict[str, list[Pipeline]] = {}
        self._versions: dict[tuple[str, str], Pipeline] = {}

    async def load(self, directory: Path) -> list[str]:
        """Load every valid pipeline; return the problems of the invalid ones (also logged).

        A pipeline whose new file is invalid keeps its previous valid version.
        """
        pipelines, problems = load_pipeline_dir(directory)
        for problem in problems:
            log.error("pipeline.invalid", problem=problem)
        for pipeline in pipelines:
            await self._store.save_pipeline_version(
                pipeline.id, pipeline.spec_hash, pipeline.spec.model_dump(mode="json")
            )
            self._versions[(pipeline.id, pipeline.spec_hash)] = pipeline
            self._current[pipeline.id] = pipeline
            log.info(
                "pipeline.loaded",
                pipeline_id=pipeline.id,
                spec_hash=pipeline.spec_hash[:12],
                tasks=len(pipeline.spec.tasks),
                source=pipeline.source,
            )
        by_trigger: dict[str, list[Pipeline]] = defaultdict(list)
        for pipeline in self._current.values():
            for trigger in pipeline.spec.triggers:
                by_trigger[trigger.dataset].append(pipeline)
        self._by_trigger = dict(by_trigger)
        return problems

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
        pipeline = pipeline_from_data(data, f"database:{pipeline_id}@{spec_hash[:12]}")
        self._versions[(pipeline_id, spec_hash)] = pipeline
        return pipeline
