"""The task graph derived from what tasks declare: validated once, indexed both ways."""

from __future__ import annotations

import graphlib
from collections.abc import Mapping
from dataclasses import dataclass

from service.spec.models import PipelineSpec


@dataclass(frozen=True, slots=True)
class TaskGraph:
    """Predecessors and successors of every task, and one topological order."""

    order: tuple[str, ...]
    predecessors: Mapping[str, tuple[str, ...]]
    successors: Mapping[str, tuple[str, ...]]

    @property
    def roots(self) -> tuple[str, ...]:
        return tuple(task for task in self.order if not self.predecessors[task])


def graph_problems(spec: PipelineSpec) -> list[str]:
    """Every structural problem: duplicate ids, unknown dependencies, cycles."""
    problems: list[str] = []
    seen: set[str] = set()
    for index, task in enumerate(spec.tasks):
        if task.id in seen:
            problems.append(f"tasks[{index}].id: duplicate task id {task.id!r}")
        seen.add(task.id)
    for index, task in enumerate(spec.tasks):
        for dep_index, dep in enumerate(task.requires):
            if dep not in seen:
                problems.append(
                    f"tasks[{index}].requires[{dep_index}]: unknown task {dep!r}"
                    f" (task {task.id!r} requires it)"
                )
            elif dep == task.id:
                problems.append(
                    f"tasks[{index}].requires[{dep_index}]: {task.id!r} requires itself"
                )
    if not problems:
        try:
            _topological_order(spec)
        except graphlib.CycleError as exc:
            # Arrows point downstream: "a -> b" reads "b requires a".
            problems.append("tasks: dependency cycle " + " -> ".join(exc.args[1]))
    return problems


def build_graph(spec: PipelineSpec) -> TaskGraph:
    """Index a spec that :func:`graph_problems` found sound."""
    predecessors = {task.id: tuple(dict.fromkeys(task.requires)) for task in spec.tasks}
    successors: dict[str, list[str]] = {task.id: [] for task in spec.tasks}
    for task_id, deps in predecessors.items():
        for dep in deps:
            successors[dep].append(task_id)
    return TaskGraph(
        order=_topological_order(spec),
        predecessors=predecessors,
        successors={task: tuple(succ) for task, succ in successors.items()},
    )


def _topological_order(spec: PipelineSpec) -> tuple[str, ...]:
    sorter = graphlib.TopologicalSorter({task.id: task.requires for task in spec.tasks})
    return tuple(sorter.static_order())
