"""Reading pipeline files: every problem reported at once, with file and path."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml
from pydantic import ValidationError

from service.errors import SpecError
from service.spec.graph import TaskGraph, build_graph, graph_problems
from service.spec.models import PipelineSpec, TaskSpec
from service.spec.templates import unknown_placeholders

PIPELINE_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True, slots=True)
class Pipeline:
    """A validated pipeline: its spec, its graph and the hash that names this exact version."""

    spec: PipelineSpec
    graph: TaskGraph
    spec_hash: str
    source: str
    tasks: Mapping[str, TaskSpec]

    @property
    def id(self) -> str:
        return self.spec.id


def spec_hash(spec: PipelineSpec) -> str:
    canonical = orjson.dumps(spec.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def pipeline_from_data(data: Any, source: str) -> Pipeline:
    """Validate one pipeline document; raise :class:`SpecError` listing every problem."""
    if not isinstance(data, dict):
        raise SpecError(
            [f"{source}: a pipeline file must hold a mapping, got {type(data).__name__}"]
        )
    try:
        spec = PipelineSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(
            [f"{source}: {_location(e['loc'])}: {e['msg']}" for e in exc.errors()]
        ) from None
    problems = graph_problems(spec)
    for index, task in enumerate(spec.tasks):
        for arg_index, arg in enumerate(task.command):
            for name in unknown_placeholders(arg):
                problems.append(
                    f"tasks[{index}].command[{arg_index}]: unknown placeholder {{{name}}}"
                )
    if problems:
        raise SpecError([f"{source}: {problem}" for problem in problems])
    return Pipeline(
        spec=spec,
        graph=build_graph(spec),
        spec_hash=spec_hash(spec),
        source=source,
        tasks={task.id: task for task in spec.tasks},
    )


def load_pipeline_file(path: Path) -> Pipeline:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SpecError([f"{path}: not valid YAML: {exc}"]) from None
    except OSError as exc:
        raise SpecError([f"{path}: cannot read: {exc.strerror}"]) from None
    return pipeline_from_data(data, str(path))


def load_pipeline_dir(directory: Path) -> tuple[list[Pipeline], list[str]]:
    """Every valid pipeline in ``directory`` and every problem found in the others."""
    if not directory.is_dir():
        return [], [f"{directory}: pipelines directory does not exist"]
    pipelines: list[Pipeline] = []
    problems: list[str] = []
    owners: dict[str, str] = {}
    for path in sorted(p for p in directory.iterdir() if p.suffix in PIPELINE_SUFFIXES):
        try:
            pipeline = load_pipeline_file(path)
        except SpecError as exc:
            problems.extend(exc.problems)
            continue
        if pipeline.id in owners:
            problems.append(
                f"{path}: pipeline id {pipeline.id!r} is already defined in {owners[pipeline.id]}"
            )
            continue
        owners[pipeline.id] = str(path)
        pipelines.append(pipeline)
    return pipelines, problems


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"
