"""Reading pipeline files: every problem at once, each with file, line, path and reason."""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from service.errors import Problem, SpecError
from service.spec.graph import build_graph
from service.spec.models import KNOWN_KEYS, PipelineSpec
from service.spec.pipeline import Pipeline, spec_hash
from service.spec.validate import (
    NodeCapacity,
    check_conditions,
    check_datasets,
    check_tasks,
    compile_templates,
    graph_of_document,
    graph_order,
    suggest,
)

# What users of other orchestrators write, and what it is called here.
OTHER_TOOLS_KEYS = {
    "depends_on": "requires",
    "upstream": "requires",
    "dependencies": "requires",
    "retries": "retry",
    "execution_timeout": "timeout",
    "schedule_interval": "triggers.schedule",
    "bash_command": "command",
    "cmd": "command",
}

PIPELINE_SUFFIXES = (".yaml", ".yml", ".json")
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Bulk building of many long-lived objects: keep the cyclic GC from rescanning them all.

    Loading a 10,000-task pipeline allocates ~100k objects that all survive; the collector
    would otherwise run its full generations over and over, doubling the time.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def pipeline_from_data(
    data: Any, source: str, capacity: NodeCapacity | None = None, lines: LineIndex | None = None
) -> Pipeline:
    """Validate one pipeline document; raise :class:`SpecError` listing every problem."""
    with gc_paused():
        return _pipeline_from_data(data, source, capacity, lines or LineIndex(None))


def _pipeline_from_data(
    data: Any, source: str, capacity: NodeCapacity | None, lines: LineIndex
) -> Pipeline:
    def located(problem: Problem) -> Problem:
        return Problem(
            problem.message, problem.path, source, lines.line(problem.path, data), problem.severity
        )

    if not isinstance(data, dict):
        kind = "nothing" if data is None else type(data).__name__
        raise SpecError(
            [
                Problem(
                    f"a pipeline file holds a mapping (id, tasks, …), not {kind}",
                    file=source,
                    line=1,
                )
            ]
        )
    graph_problems, order = graph_order(graph_of_document(data))
    try:
        spec = PipelineSpec.model_validate(data)
    except ValidationError as exc:
        found = _from_pydantic(exc.errors(), data) + graph_problems
        raise SpecError([located(p) for p in found]) from None
    compiled, template_problems = compile_templates(spec)
    found = graph_problems + check_tasks(spec, capacity) + check_conditions(spec)
    found += template_problems
    errors = [located(p) for p in found if p.severity == "error"]
    if errors:
        raise SpecError(errors)
    return Pipeline(
        spec=spec,
        graph=build_graph(spec, order),
        spec_hash=spec_hash(spec),
        source=source,
        tasks={task.id: task for task in spec.tasks},
        templates=compiled,
        warnings=tuple(located(p) for p in found if p.severity == "warning"),
    )


def load_pipeline_file(path: Path, capacity: NodeCapacity | None = None) -> Pipeline:
    """A YAML file (.yaml, .yml) or, for generated pipelines, a JSON file (.json)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError([Problem(f"cannot read: {exc.strerror}", file=str(path))]) from None
    except UnicodeDecodeError as exc:
        raise SpecError([Problem(f"not UTF-8 text: {exc.reason}", file=str(path))]) from None
    if path.suffix == ".json":
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise SpecError(
                [Problem(f"not valid JSON: {exc.msg}", file=str(path), line=exc.lineno)]
            ) from None
        return pipeline_from_data(data, str(path), capacity, LineIndex.lazy(text))
    with gc_paused():
        node, data = _parse_yaml(text, str(path))
    return pipeline_from_data(data, str(path), capacity, LineIndex(node))


def _parse_yaml(text: str, source: str) -> tuple[yaml.Node | None, Any]:
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            return node, loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        reason = getattr(exc, "problem", None) or str(exc)
        line = mark.line + 1 if mark else None
        raise SpecError([Problem(f"not valid YAML: {reason}", file=source, line=line)]) from None


@dataclass
class DirectoryLoad:
    """What a pipelines directory holds: the valid pipelines and every problem of the rest."""

    pipelines: list[Pipeline] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)  # errors: those files were refused
    warnings: list[Problem] = field(default_factory=list)
    # Files that exist but were refused, so a previous valid version of each can stay.
    refused_files: set[str] = field(default_factory=set)


def pipeline_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix in PIPELINE_SUFFIXES and p.is_file())


FileCache = dict[str, tuple[tuple[int, int], Pipeline]]


def load_pipeline_dir(
    directory: Path, capacity: NodeCapacity | None = None, cache: FileCache | None = None
) -> DirectoryLoad:
    """Every pipeline file in ``directory``, validated one by one and then across files.

    With ``cache`` (kept by the caller between loads), a file whose size and modification
    time are unchanged is not parsed again.
    """
    result = DirectoryLoad()
    if not directory.is_dir():
        result.problems.append(Problem("pipelines directory does not exist", file=str(directory)))
        return result
    owners: dict[str, str] = {}
    for path in pipeline_files(directory):
        try:
            pipeline = _load_cached(path, capacity, cache)
        except SpecError as exc:
            result.problems.extend(exc.problems)
            result.refused_files.add(str(path))
            continue
        if pipeline.id in owners:
            result.problems.append(
                Problem(
                    f"pipeline id {pipeline.id!r} is already defined in {owners[pipeline.id]}",
                    "id",
                    str(path),
                )
            )
            result.refused_files.add(str(path))
            continue
        owners[pipeline.id] = str(path)
        result.pipelines.append(pipeline)
        result.warnings.extend(pipeline.warnings)
    by_id = {p.id: p for p in result.pipelines}
    for pipeline_id, problem in check_datasets(p.spec for p in result.pipelines):
        pipeline = by_id[pipeline_id]
        result.warnings.append(
            Problem(problem.message, problem.path, pipeline.source, None, problem.severity)
        )
    return result


def _load_cached(path: Path, capacity: NodeCapacity | None, cache: FileCache | None) -> Pipeline:
    if cache is None:
        return load_pipeline_file(path, capacity)
    try:
        stat = path.stat()
    except OSError:
        return load_pipeline_file(path, capacity)  # reports the problem
    key = (stat.st_size, stat.st_mtime_ns)
    cached = cache.get(str(path))
    if cached is not None and cached[0] == key:
        return cached[1]
    pipeline = load_pipeline_file(path, capacity)
    cache[str(path)] = (key, pipeline)
    return pipeline


def directory_signature(directory: Path) -> tuple[tuple[str, int, int], ...]:
    """Names, sizes and modification times of the pipeline files: changes when any file does."""
    try:
        files = pipeline_files(directory)
    except OSError:
        return ()
    signature = []
    for path in files:
        try:
            stat = os.stat(path)
        except OSError:
            continue
        signature.append((path.name, stat.st_size, stat.st_mtime_ns))
    return tuple(signature)


# --- error translation -----------------------------------------------------------------------


def _from_pydantic(errors: list[ErrorDetails], data: Any) -> list[Problem]:
    """Pydantic's errors as plain reasons, located by their path in the document."""
    by_path: dict[str, list[str]] = {}
    for error in errors:
        path = _data_path(error["loc"], data)
        message = _reason(error, path)
        messages = by_path.setdefault(path, [])
        if message not in messages:
            messages.append(message)
    return [
        Problem(" or ".join(messages) if len(messages) < 3 else messages[0], path)
        for path, messages in by_path.items()
    ]


def _data_path(loc: tuple[int | str, ...], data: Any) -> str:
    """The error's location as it exists in the data (union branch names dropped)."""
    path = ""
    node = data
    for part in loc:
        if isinstance(node, dict) and isinstance(part, str) and part in node:
            node = node[part]
            path += f".{part}" if path else part
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
            path += f"[{part}]"
        elif isinstance(node, dict) and isinstance(part, str) and part in KNOWN_KEYS:
            path += f".{part}" if path else part  # a missing key: name it
            break
    return path


def _reason(error: ErrorDetails, path: str) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        key = path.rsplit(".", 1)[-1]
        if key in OTHER_TOOLS_KEYS:
            return f"unknown key {key!r} (did you mean {OTHER_TOOLS_KEYS[key]!r}?)"
        return f"unknown key {key!r}{suggest(key, KNOWN_KEYS)}"
    if kind == "missing":
        return "required key is missing"
    message = error["msg"].removeprefix("Value error, ")
    if kind not in ("value_error", "assertion_error") and "input" in error:
        value = error["input"]
        if not isinstance(value, dict | list):
            message += f", got {value!r}"
    return message


class LineIndex:
    """Line numbers of the YAML nodes, looked up only when there is something to report."""

    def __init__(self, root: yaml.Node | None, text: str | None = None) -> None:
        self._root = root
        self._text = text  # composed on first use (JSON files: only when there are errors)

    @classmethod
    def lazy(cls, text: str) -> LineIndex:
        return cls(None, text)

    def line(self, path: str, data: Any = None) -> int | None:
        if self._root is None and self._text is not None:
            with contextlib.suppress(yaml.YAMLError):  # JSON is YAML: compose it for positions
                self._root = yaml.compose(self._text, Loader=_Loader)
            self._text = None
        node = self._root
        if node is None:
            return None
        line = node.start_mark.line + 1
        for part in _split_path(path):
            if isinstance(node, yaml.MappingNode) and isinstance(part, str):
                match = next(((k, v) for k, v in node.value if k.value == part), None)
                if match is None:
                    break
                line = match[0].start_mark.line + 1
                node = match[1]
                if not isinstance(node, yaml.ScalarNode):
                    line = match[0].start_mark.line + 1
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
                if part >= len(node.value):
                    break
                node = node.value[part]
                line = node.start_mark.line + 1
            else:
                break
        return line


def _split_path(path: str) -> list[str | int]:
    parts: list[str | int] = []
    for chunk in path.replace("[", ".[").split("."):
        if not chunk:
            continue
        parts.append(int(chunk[1:-1]) if chunk.startswith("[") else chunk)
    return parts
