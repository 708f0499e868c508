"""Checks that span several keys: the graph, templates, parameters, node capacity, datasets.

Each check returns :class:`Problem` values located by path (``tasks[2].requires[0]``); the
loader adds the file and line. Templates are compiled here, once, for the executor and planner.
"""

from __future__ import annotations

import difflib
import graphlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from service.errors import Problem
from service.spec.models import PipelineSpec, TaskSpec, TriggerRule
from service.spec.templates import RUN_NAMES, Kind, Template, TemplateError, compile_template


@dataclass(frozen=True, slots=True)
class Capacity:
    """What one node offers; a task asking for more could never run."""

    cpu_cores: float
    memory_mb: int


@dataclass(frozen=True, slots=True)
class TaskTemplates:
    """Every templated string of a task, compiled."""

    command: tuple[Template, ...]
    env: Mapping[str, Template]
    cwd: Template | None
    cleanup: tuple[Template, ...] | None
    rollback: tuple[Template, ...] | None
    waits: tuple[tuple[Template, ...], ...]  # a dataset partition, or a check command
    inputs: tuple[tuple[Template, Template], ...]  # (uri, partition)
    outputs: tuple[tuple[Template, Template], ...]


def template_names(spec: PipelineSpec) -> dict[str, Kind]:
    names: dict[str, Kind] = dict(RUN_NAMES)
    for name, param in spec.params.items():
        names[f"params.{name}"] = "date" if param.type.value == "date" else "text"
    return names


def check_graph(tasks: Sequence[tuple[str, Sequence[str]]]) -> list[Problem]:
    """Duplicate ids, unknown or self dependencies (with a suggestion), cycles (printed).

    Takes (task id, requires) pairs so that it runs even on a document the models refused:
    graph problems are reported together with every other one.
    """
    problems: list[Problem] = []
    ids = [task_id for task_id, _ in tasks]
    seen: set[str] = set()
    for index, task_id in enumerate(ids):
        if task_id in seen:
            problems.append(Problem(f"duplicate task id {task_id!r}", f"tasks[{index}].id"))
        seen.add(task_id)
    for index, (task_id, requires) in enumerate(tasks):
        for dep_index, dep in enumerate(requires):
            path = f"tasks[{index}].requires[{dep_index}]"
            if dep == task_id:
                problems.append(Problem(f"task {task_id!r} requires itself", path))
            elif dep not in seen:
                problems.append(Problem(f"unknown task {dep!r}{suggest(dep, ids)}", path))
        if len(set(requires)) != len(requires):
            problems.append(Problem("a task is listed twice", f"tasks[{index}].requires"))
    if not problems:
        try:
            graphlib.TopologicalSorter(dict(tasks)).prepare()
        except graphlib.CycleError as exc:
            # Arrows point downstream: "a -> b" reads "b requires a".
            problems.append(Problem("dependency cycle " + " -> ".join(exc.args[1]), "tasks"))
    return problems


def graph_of_document(data: Any) -> list[tuple[str, Sequence[str]]]:
    """The (id, requires) pairs of a raw document, as far as they can be read."""
    tasks = data.get("tasks") if isinstance(data, dict) else None
    pairs: list[tuple[str, Sequence[str]]] = []
    for task in tasks if isinstance(tasks, list) else []:
        if not isinstance(task, dict) or not isinstance(task.get("id"), str):
            return []
        requires = task.get("requires", [])
        if not isinstance(requires, list) or not all(isinstance(r, str) for r in requires):
            return []
        pairs.append((task["id"], requires))
    return pairs


def check_tasks(spec: PipelineSpec, capacity: Capacity | None) -> list[Problem]:
    problems: list[Problem] = []
    for index, task in enumerate(spec.tasks):
        path = f"tasks[{index}]"
        if capacity is not None:
            if task.resources.memory_mb > capacity.memory_mb:
                problems.append(
                    Problem(
                        f"asks for {task.resources.memory_mb} MB but a node has "
                        f"{capacity.memory_mb} MB",
                        f"{path}.resources.memory_mb",
                    )
                )
            if task.resources.cpu_cores > capacity.cpu_cores:
                problems.append(
                    Problem(
                        f"asks for {task.resources.cpu_cores:g} cores but a node has "
                        f"{capacity.cpu_cores:g}",
                        f"{path}.resources.cpu_cores",
                    )
                )
        if not task.requires and task.trigger_rule is not TriggerRule.ALL_SUCCESS:
            problems.append(
                Problem(
                    f"trigger_rule {task.trigger_rule} has no effect on a task "
                    "with no upstream tasks",
                    f"{path}.trigger_rule",
                    severity="warning",
                )
            )
        if task.retry.backoff.base > task.retry.backoff.max:
            problems.append(Problem("backoff base is longer than its max", f"{path}.retry.backoff"))
        if task.retry.on_exit_codes and 0 in task.retry.on_exit_codes:
            problems.append(
                Problem("0 means success: it cannot be retried", f"{path}.retry.on_exit_codes")
            )
        if task.timeout is not None and task.timeout.total_seconds() <= 0:
            problems.append(Problem("must be longer than 0s", f"{path}.timeout"))
    automatic = spec.triggers.datasets or spec.triggers.schedule
    for name, param in spec.params.items():
        if automatic and param.required:
            problems.append(
                Problem(
                    "a pipeline started by datasets or a schedule cannot have "
                    "required parameters: give it a default",
                    f"params.{name}",
                )
            )
    return problems


def compile_templates(spec: PipelineSpec) -> tuple[dict[str, TaskTemplates], list[Problem]]:
    """Compile every template of every task; collect every bad one."""
    names = template_names(spec)
    problems: list[Problem] = []

    def one(text: str, path: str) -> Template:
        try:
            return compile_template(text, names)
        except TemplateError as exc:
            problems.append(Problem(str(exc), path))
            return Template(text, (text,))

    def command(value: Sequence[str] | str, path: str) -> tuple[Template, ...]:
        if isinstance(value, str):
            return (one(value, path),)
        return tuple(one(arg, f"{path}[{i}]") for i, arg in enumerate(value))

    compiled: dict[str, TaskTemplates] = {}
    for index, task in enumerate(spec.tasks):
        path = f"tasks[{index}]"
        compiled[task.id] = TaskTemplates(
            command=command(task.command, f"{path}.command"),
            env={k: one(v, f"{path}.env.{k}") for k, v in task.env.items()},
            cwd=one(task.cwd, f"{path}.cwd") if task.cwd else None,
            cleanup=command(task.cleanup.command, f"{path}.cleanup.command")
            if task.cleanup
            else None,
            rollback=(
                command(task.rollback.command, f"{path}.rollback.command")
                if task.rollback
                else None
            ),
            waits=tuple(
                _wait_templates(task, i, path, one, command) for i in range(len(task.wait_for))
            ),
            inputs=tuple(
                (
                    one(r.uri, f"{path}.inputs[{i}].uri"),
                    one(r.partition, f"{path}.inputs[{i}].partition"),
                )
                for i, r in enumerate(task.inputs)
            ),
            outputs=tuple(
                (
                    one(r.uri, f"{path}.outputs[{i}].uri"),
                    one(r.partition, f"{path}.outputs[{i}].partition"),
                )
                for i, r in enumerate(task.outputs)
            ),
        )
    return compiled, problems


def _wait_templates(
    task: TaskSpec, index: int, path: str, one: Any, command: Any
) -> tuple[Template, ...]:
    wait = task.wait_for[index]
    if hasattr(wait, "check"):
        result: tuple[Template, ...] = command(wait.check, f"{path}.wait_for[{index}].check")
        return result
    return (one(wait.partition, f"{path}.wait_for[{index}].partition"),)


def check_datasets(pipelines: Iterable[PipelineSpec]) -> list[tuple[str, Problem]]:
    """Warn of each ``wait_for`` on a dataset that no pipeline outputs and none is triggered by.

    Returns (pipeline id, problem) pairs: the caller knows which file each pipeline came from.
    """
    specs = list(pipelines)
    known = {t.dataset for spec in specs for t in spec.triggers.datasets}
    known |= {ref.name for spec in specs for task in spec.tasks for ref in task.outputs}
    found = []
    for spec in specs:
        for index, task in enumerate(spec.tasks):
            for wait_index, wait in enumerate(task.wait_for):
                dataset = getattr(wait, "dataset", None)
                if dataset is not None and dataset not in known:
                    found.append(
                        (
                            spec.id,
                            Problem(
                                f"no pipeline outputs {dataset!r} and none is triggered by it: "
                                "make sure an upstream system announces it"
                                f"{suggest(dataset, sorted(known))}",
                                f"tasks[{index}].wait_for[{wait_index}].dataset",
                                severity="warning",
                            ),
                        )
                    )
    return found


def suggest(name: str, candidates: Iterable[str]) -> str:
    match = difflib.get_close_matches(name, list(candidates), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""
