"""A validated pipeline version: its spec, graph and compiled templates, named by a hash."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from service.errors import Problem
from service.spec.graph import TaskGraph
from service.spec.models import PipelineSpec
from service.spec.tasks import TaskSpec
from service.spec.validate import TaskTemplates


@dataclass(frozen=True, slots=True)
class Pipeline:
    """A validated pipeline: its spec, graph, compiled templates and the hash of this version."""

    spec: PipelineSpec
    graph: TaskGraph
    spec_hash: str
    source: str
    tasks: Mapping[str, TaskSpec]
    templates: Mapping[str, TaskTemplates]
    warnings: tuple[Problem, ...] = ()

    @property
    def id(self) -> str:
        return self.spec.id


def spec_hash(spec: PipelineSpec) -> str:
    """sha256 of the spec's JSON: canonical, as fields keep model order and mappings are sorted."""
    return hashlib.sha256(spec.model_dump_json().encode()).hexdigest()
