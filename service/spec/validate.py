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
from service.spec.base import TriggerRule
from service.spec.conditions import parse_when
from service.spec.models import PipelineSpec
from service.spec.tasks import CheckWait, DatasetWait, TaskSpec, task_argv
from service.spec.templates import (
    RESULT_NAME,
    RESULTS,
    RUN_DIR,
    RUN_NAMES,
    Kind,
    Placeholder,
    Template,
    TemplateError,
    compile_template,
)


@dataclass(frozen=True, slots=True)
class NodeCapacity:
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
    names: dict[str, Kind] = {**RUN_NAMES, RESULTS: "text", RUN_DIR: "text"}
    for name, param in spec.params.items():
        names[f"params.{name}"] = "date" if param.type.value == "date" else "text"
    return names


def check_graph(tasks: Sequence[tuple[str, Sequence[str]]]) -> list[Problem]:
    return graph_order(tasks)[0]


def graph_order(
    tasks: Sequence[tuple[str, Sequence[str]]],
) -> tuple[list[Problem], tuple[str, ...] | None]:
    """Duplicate ids, unknown or self dependencies (with a suggestion), cycles (printed).

    Takes (task id, requires) pairs so that it runs even on a document the models refused:
    graph problems are reported together with every other one. Returns a topological order
    when the graph is sound.
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
            if dep != task_id and dep in seen:
                continue
            path = f"tasks[{index}].requires[{dep_index}]"
            if dep == task_id:
                problems.append(Problem(f"task {task_id!r} requires itself", path))
            else:
                problems.append(Problem(f"unknown task {dep!r}{suggest(dep, ids)}", path))
        if len(set(requires)) != len(requires):
            problems.append(Problem("a task is listed twice", f"tasks[{index}].requires"))
    # A cycle among the dependencies that are sound is reported with the other problems.
    sound: dict[str, list[str]] = {}
    for task_id, requires in tasks:
        known = [dep for dep in requires if dep in seen and dep != task_id]
        sound.setdefault(task_id, []).extend(known)
    try:
        order = tuple(graphlib.TopologicalSorter(sound).static_order())
    except graphlib.CycleError as exc:
        # Arrows point downstream: "a -> b" reads "b requires a".
        problems.append(Problem("dependency cycle " + " -> ".join(exc.args[1]), "tasks"))
    return (problems, None) if problems else ([], order)


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


def check_conditions(spec: PipelineSpec) -> list[Problem]:
    """A when: condition reads results of tasks upstream of its own (ended before it runs)."""
    requires = {task.id: task.requires for task in spec.tasks}
    problems = []
    for index, task in enumerate(spec.tasks):
        if task.when is None:
            continue
        upstream = _ancestors(task.id, requires)
        for comparison in parse_when(task.when):
            if comparison.task_id not in upstream:
                problems.append(
                    Problem(
                        f"when reads the result of {comparison.task_id!r}, which is not "
                        f"upstream of {task.id!r}{suggest(comparison.task_id or '', upstream)} "
                        "(add it to requires, directly or not)",
                        f"tasks[{index}].when",
                    )
                )
    return problems


def _ancestors(task_id: str, requires: Mapping[str, Sequence[str]]) -> set[str]:
    found: set[str] = set()
    frontier = list(requires.get(task_id, ()))
    while frontier:
        dep = frontier.pop()
        if dep not in found:
            found.add(dep)
            frontier.extend(requires.get(dep, ()))
    return found


def check_tasks(spec: PipelineSpec, capacity: NodeCapacity | None) -> list[Problem]:
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
    compiler = _TemplateCompiler(template_names(spec))
    compiled = {
        task.id: compiler.task(task, f"tasks[{index}]") for index, task in enumerate(spec.tasks)
    }
    if not compiler.reads_late_values():
        return compiled, compiler.problems  # no result or run_dir is read: none misplaced
    return compiled, compiler.problems + _result_problems(spec, compiled)


def _result_problems(spec: PipelineSpec, compiled: Mapping[str, TaskTemplates]) -> list[Problem]:
    """Upstream results are known when an attempt starts: they may fill its command, env and
    working directory — of tasks upstream of it — never what a run is made of at creation."""
    requires = {task.id: task.requires for task in spec.tasks}
    reads = _ResultReads()
    problems = []
    for index, task in enumerate(spec.tasks):
        templates = compiled[task.id]
        at_start = [*templates.command, *templates.env.values()]
        at_start += [templates.cwd] if templates.cwd else []
        read = [found for template in at_start for found in reads.results(template)]
        upstream = _ancestors(task.id, requires) if read else set()
        for name, producer in read:
            if producer not in upstream:
                problems.append(
                    Problem(
                        f"{{{name}}} reads the result of {producer!r}, which is not "
                        f"upstream of {task.id!r} (add it to requires, directly or not)",
                        f"tasks[{index}]",
                    )
                )
        early = [t for wait in templates.waits for t in wait]
        early += [t for pair in (*templates.inputs, *templates.outputs) for t in pair]
        if any(reads.known_late(t) for t in early):
            problems.append(
                Problem(
                    "an upstream result and {run_dir} are known only when the attempt starts: "
                    "use them in the command, env or cwd, not in waits, inputs or outputs",
                    f"tasks[{index}]",
                )
            )
    return problems


class _ResultReads:
    """What each distinct template reads of upstream results (texts recur across tasks)."""

    def __init__(self) -> None:
        self._results: dict[str, list[tuple[str, str]]] = {}

    def results(self, template: Template) -> list[tuple[str, str]]:
        """(placeholder, the task whose result it reads), in name order."""
        found = self._results.get(template.text)
        if found is None:
            found = self._results[template.text] = [
                (name, match[1])
                for name in sorted(template.names)
                if (match := RESULT_NAME.match(name))
            ]
        return found

    def known_late(self, template: Template) -> bool:
        """Reads what is known only when an attempt starts."""
        return bool(self.results(template)) or RUN_DIR in template.names


class _TemplateCompiler:
    """Compiles each distinct text once ({batch_date}, flags recur across tasks).

    Paths are given in pieces and joined only for a problem: most texts have none.
    """

    def __init__(self, names: Mapping[str, Kind]) -> None:
        self._names = names
        self._seen: dict[str, Template | TemplateError] = {}
        self._bodies: dict[str, Placeholder] = {}
        self.problems: list[Problem] = []

    def reads_late_values(self) -> bool:
        """Some template reads an upstream result or {run_dir}."""
        return any(
            RUN_DIR in template.names or any(RESULT_NAME.match(name) for name in template.names)
            for template in self._seen.values()
            if isinstance(template, Template)
        )

    def one(self, text: str, *path: object) -> Template:
        compiled = self._seen.get(text)
        if compiled is None:
            try:
                compiled = compile_template(text, self._names, self._bodies)
            except TemplateError as exc:
                compiled = exc
            self._seen[text] = compiled
        if isinstance(compiled, TemplateError):
            self.problems.append(Problem(str(compiled), "".join(map(str, path))))
            return Template(text, (text,), literal=text)
        return compiled

    def command(self, value: Sequence[str] | str, *path: object) -> tuple[Template, ...]:
        if isinstance(value, str):
            return (self.one(value, *path),)
        return tuple(self.one(arg, *path, "[", i, "]") for i, arg in enumerate(value))

    def probe(self, wait: CheckWait, *path: object) -> tuple[Template, ...]:
        """A check's templated texts: the command's arguments, or the path (and its marker),
        the query or the URL."""
        kind = wait.probe_kind
        if wait.check is not None:
            return self.command(wait.check, *path, kind)
        found = [self.one(getattr(wait, kind), *path, kind)]
        if wait.marker:
            found.append(self.one(wait.marker, *path, "marker"))
        return tuple(found)

    def task(self, task: TaskSpec, path: str) -> TaskTemplates:
        one, command = self.one, self.command
        waits = []
        for i, wait in enumerate(task.wait_for):
            if isinstance(wait, CheckWait):
                waits.append(self.probe(wait, path, ".wait_for[", i, "]."))
            else:
                waits.append((one(wait.partition, path, ".wait_for[", i, "].partition"),))
        return TaskTemplates(
            command=command(task_argv(task), path, ".command" if task.command else ".python"),
            env={k: one(v, path, ".env.", k) for k, v in task.env.items()},
            cwd=one(task.cwd, path, ".cwd") if task.cwd else None,
            cleanup=command(task.cleanup.command, path, ".cleanup.command")
            if task.cleanup
            else None,
            rollback=command(task.rollback.command, path, ".rollback.command")
            if task.rollback
            else None,
            waits=tuple(waits),
            inputs=tuple(
                (
                    one(r.uri, path, ".inputs[", i, "].uri"),
                    one(r.partition, path, ".inputs[", i, "].partition"),
                )
                for i, r in enumerate(task.inputs)
            ),
            outputs=tuple(
                (
                    one(r.uri, path, ".outputs[", i, "].uri"),
                    one(r.partition, path, ".outputs[", i, "].partition"),
                )
                for i, r in enumerate(task.outputs)
            ),
        )


def check_datasets(pipelines: Iterable[PipelineSpec]) -> list[tuple[str, Problem]]:
    """Warn of each dataset a task waits for (a ``wait_for`` dataset, or an input it waits
    for) that no pipeline outputs and none is triggered by.

    Returns (pipeline id, problem) pairs: the caller knows which file each pipeline came from.
    """
    specs = list(pipelines)
    known = {t.dataset for spec in specs for t in spec.triggers.datasets}
    known |= {ref.name for spec in specs for task in spec.tasks for ref in task.outputs}
    found = []
    for spec in specs:
        for index, task in enumerate(spec.tasks):
            waited = [
                (wait.dataset, f"wait_for[{i}].dataset")
                for i, wait in enumerate(task.wait_for)
                if isinstance(wait, DatasetWait)
            ]
            waited += [(ref.name, f"inputs[{i}]") for i, ref in enumerate(task.inputs) if ref.wait]
            for dataset, path in waited:
                if dataset in known:
                    continue
                hint = suggest(dataset, sorted(known))
                problem = Problem(
                    f"no pipeline outputs {dataset!r} and none is triggered by it: make sure an "
                    f"upstream system announces it{hint}",
                    f"tasks[{index}].{path}",
                    severity="warning",
                )
                found.append((spec.id, problem))
    return found


def suggest(name: str, candidates: Iterable[str]) -> str:
    match = difflib.get_close_matches(name, list(candidates), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""
