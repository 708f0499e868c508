"""The task graph derived from what tasks declare: built once per version, indexed both ways."""

from __future__ import annotations

import graphlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from service.spec.base import TriggerRule
from service.spec.conditions import Comparison, parse_expectation, parse_when
from service.spec.models import PipelineSpec
from service.spec.tasks import RetryPolicy


@dataclass(frozen=True, slots=True)
class TaskGraph:
    """Predecessors and successors of every task, its trigger rule, and one topological order."""

    order: tuple[str, ...]
    predecessors: Mapping[str, tuple[str, ...]]
    successors: Mapping[str, tuple[str, ...]]
    trigger_rules: Mapping[str, TriggerRule]
    retries: Mapping[str, RetryPolicy]
    # expect: rules on a task's own result; when: conditions on upstream results.
    expectations: Mapping[str, tuple[Comparison, ...]] = field(default_factory=dict)
    conditions: Mapping[str, tuple[Comparison, ...]] = field(default_factory=dict)

    @property
    def roots(self) -> tuple[str, ...]:
        return tuple(task for task in self.order if not self.predecessors[task])

    def waves(self) -> list[list[str]]:
        """Tasks grouped by depth: wave n holds tasks whose longest upstream chain is n."""
        depth: dict[str, int] = {}
        for task in self.order:
            depth[task] = 1 + max((depth[dep] for dep in self.predecessors[task]), default=-1)
        waves: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
        for task in self.order:
            waves[depth[task]].append(task)
        return waves

    def downstream_of(self, task_id: str) -> set[str]:
        """``task_id`` and everything that depends on it, directly or not."""
        found = {task_id}
        frontier = [task_id]
        while frontier:
            for successor in self.successors[frontier.pop()]:
                if successor not in found:
                    found.add(successor)
                    frontier.append(successor)
        return found


def build_graph(spec: PipelineSpec, order: tuple[str, ...] | None = None) -> TaskGraph:
    """Index a spec whose graph was found sound (``order``: a topological order, if known)."""
    predecessors = {task.id: tuple(task.requires) for task in spec.tasks}
    successors: dict[str, list[str]] = {task.id: [] for task in spec.tasks}
    for task_id, deps in predecessors.items():
        for dep in deps:
            successors[dep].append(task_id)
    if order is None:
        order = tuple(graphlib.TopologicalSorter(predecessors).static_order())
    return TaskGraph(
        order=order,
        predecessors=predecessors,
        successors={task: tuple(succ) for task, succ in successors.items()},
        trigger_rules={task.id: task.trigger_rule for task in spec.tasks},
        retries={task.id: task.retry for task in spec.tasks},
        expectations={
            task.id: tuple(parse_expectation(name, rule) for name, rule in task.expect.items())
            for task in spec.tasks
            if task.expect
        },
        conditions={task.id: parse_when(task.when) for task in spec.tasks if task.when},
    )
