"""The state machine: examples for each move, and properties over random DAGs."""

from __future__ import annotations

import random
from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.engine.decide import (
    AttemptFinished,
    Decision,
    IllegalTransition,
    RunCreated,
    RunSnapshot,
    TaskSnapshot,
    decide,
    start_attempt,
)
from service.engine.states import (
    RUN_TERMINAL,
    TASK_SATISFIED,
    TASK_TERMINAL,
    RunState,
    TaskState,
    run_may_move,
    task_may_move,
)
from service.spec.graph import TaskGraph, build_graph
from service.spec.models import PipelineSpec


def graph_of(deps: Mapping[str, list[str]]) -> TaskGraph:
    tasks = [{"id": t, "command": ["true"], "requires": r} for t, r in deps.items()]
    return build_graph(PipelineSpec.model_validate({"id": "p", "tasks": tasks}))


class Run:
    """A run held in memory, advanced only through decide()."""

    def __init__(self, graph: TaskGraph) -> None:
        self.graph = graph
        self.state = RunState.QUEUED
        self.tasks = {t: TaskSnapshot(t, TaskState.PENDING, 0) for t in graph.order}
        self.history: list[tuple[str | None, str, str]] = []

    def snapshot(self) -> RunSnapshot:
        return RunSnapshot("r", self.state, dict(self.tasks))

    def apply(self, decision: Decision) -> Decision:
        for t in decision.transitions:
            self.history.append((t.task_id, t.from_state, t.to_state))
            if t.task_id is None:
                assert run_may_move(RunState(t.from_state), RunState(t.to_state))
                self.state = RunState(t.to_state)
            else:
                assert task_may_move(TaskState(t.from_state), TaskState(t.to_state))
                old = self.tasks[t.task_id]
                self.tasks[t.task_id] = TaskSnapshot(t.task_id, TaskState(t.to_state), old.attempt)
        return decision

    def create(self) -> Decision:
        return self.apply(decide(self.graph, self.snapshot(), RunCreated()))

    def start(self, task_id: str) -> int:
        t = start_attempt(self.tasks[task_id])
        assert t.attempt is not None
        self.tasks[task_id] = TaskSnapshot(task_id, TaskState.RUNNING, t.attempt)
        return t.attempt

    def finish(self, task_id: str, outcome: TaskState, attempt: int | None = None) -> Decision:
        attempt = self.tasks[task_id].attempt if attempt is None else attempt
        event = AttemptFinished(task_id, attempt, outcome)
        return self.apply(decide(self.graph, self.snapshot(), event))

    def queued(self) -> list[str]:
        return [t for t, s in self.tasks.items() if s.state is TaskState.QUEUED]


def test_creation_starts_the_run_and_queues_the_roots() -> None:
    run = Run(graph_of({"a": [], "b": ["a"], "c": []}))
    run.create()
    assert run.state is RunState.RUNNING
    assert sorted(run.queued()) == ["a", "c"]
    assert run.tasks["b"].state is TaskState.PENDING


def test_a_chain_runs_in_order_and_succeeds() -> None:
    run = Run(graph_of({"a": [], "b": ["a"], "c": ["b"]}))
    run.create()
    for task_id in ("a", "b", "c"):
        assert run.queued() == [task_id]
        run.start(task_id)
        run.finish(task_id, TaskState.SUCCESS)
    assert run.state is RunState.SUCCESS


def test_a_join_waits_for_every_dependency() -> None:
    run = Run(graph_of({"a": [], "b": [], "c": ["a", "b"]}))
    run.create()
    run.start("a")
    run.finish("a", TaskState.SUCCESS)
    assert run.tasks["c"].state is TaskState.PENDING
    run.start("b")
    run.finish("b", TaskState.SKIPPED)
    assert run.queued() == ["c"]


def test_a_failure_fails_everything_downstream_and_the_run() -> None:
    run = Run(graph_of({"a": [], "b": ["a"], "c": ["b"], "side": []}))
    run.create()
    run.start("a")
    run.finish("a", TaskState.FAILED)
    assert run.tasks["b"].state is TaskState.UPSTREAM_FAILED
    assert run.tasks["c"].state is TaskState.UPSTREAM_FAILED
    assert run.state is RunState.RUNNING  # "side" still runs
    run.start("side")
    run.finish("side", TaskState.SUCCESS)
    assert run.state is RunState.FAILED


def test_a_timeout_counts_as_a_failure() -> None:
    run = Run(graph_of({"a": [], "b": ["a"]}))
    run.create()
    run.start("a")
    run.finish("a", TaskState.TIMED_OUT)
    assert run.tasks["b"].state is TaskState.UPSTREAM_FAILED
    assert run.state is RunState.FAILED


def test_a_stale_completion_is_ignored() -> None:
    run = Run(graph_of({"a": []}))
    run.create()
    run.start("a")
    decision = run.finish("a", TaskState.SUCCESS, attempt=7)
    assert decision.transitions == ()
    assert decision.ignored is not None
    assert "stale completion" in decision.ignored
    assert run.tasks["a"].state is TaskState.RUNNING


def test_a_completion_of_a_task_that_is_not_running_is_ignored() -> None:
    run = Run(graph_of({"a": [], "b": ["a"]}))
    run.create()
    decision = run.finish("b", TaskState.SUCCESS, attempt=0)
    assert decision.ignored is not None
    assert "pending" in decision.ignored


def test_creation_twice_is_ignored() -> None:
    run = Run(graph_of({"a": []}))
    run.create()
    assert run.create().ignored == "run is running, not queued"


def test_an_attempt_cannot_end_as_a_non_outcome() -> None:
    run = Run(graph_of({"a": []}))
    run.create()
    run.start("a")
    with pytest.raises(IllegalTransition):
        run.finish("a", TaskState.QUEUED)


def test_only_queued_tasks_start() -> None:
    with pytest.raises(IllegalTransition):
        start_attempt(TaskSnapshot("a", TaskState.PENDING, 0))


@st.composite
def dags(draw: st.DrawFn) -> dict[str, list[str]]:
    size = draw(st.integers(min_value=1, max_value=25))
    names = [f"t{i}" for i in range(size)]
    return {
        name: sorted(draw(st.sets(st.sampled_from(names[:i]), max_size=3)) if i else set())
        for i, name in enumerate(names)
    }


@settings(max_examples=200, deadline=None)
@given(
    deps=dags(),
    seed=st.integers(min_value=0, max_value=2**32),
    failure_rate=st.sampled_from([0.0, 0.1, 0.5]),
)
def test_any_completion_order_keeps_the_rules(
    deps: dict[str, list[str]], seed: int, failure_rate: float
) -> None:
    rng = random.Random(seed)
    graph = graph_of(deps)
    run = Run(graph)
    run.create()
    running: list[str] = []
    outcomes = [TaskState.SUCCESS, TaskState.SKIPPED, TaskState.FAILED, TaskState.TIMED_OUT]
    while run.queued() or running:
        # Start some queued tasks, finish a random running one: any interleaving.
        for task_id in run.queued():
            if rng.random() < 0.7 or not running:
                for dep in graph.predecessors[task_id]:
                    assert run.tasks[dep].state in TASK_SATISFIED, (
                        "started before a dependency succeeded"
                    )
                run.start(task_id)
                running.append(task_id)
        if running:
            task_id = running.pop(rng.randrange(len(running)))
            fail = rng.random() < failure_rate
            outcome = rng.choice(outcomes[2:]) if fail else rng.choice(outcomes[:2])
            run.finish(task_id, outcome)
    assert all(s.state in TASK_TERMINAL for s in run.tasks.values())
    assert run.state in RUN_TERMINAL
    broken = any(s.state not in TASK_SATISFIED for s in run.tasks.values())
    assert run.state is (RunState.FAILED if broken else RunState.SUCCESS)
    run_moves = [h for h in run.history if h[0] is None]
    assert [to for _, _, to in run_moves] == ["running", str(run.state)]
