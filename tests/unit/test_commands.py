"""Operators' commands in the pure engine: what each does to a run, what it refuses, and
properties over random runs and command sequences (the run stays consistent whatever the
order in which commands, completions and retries land)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from service.engine.commands import (
    CancelRun,
    Command,
    MarkTask,
    ResumeFrom,
    RetryRun,
    RetryTask,
    decide_command,
)
from service.engine.decide import decide
from service.engine.model import AttemptFinished, StopAttempt, TaskSnapshot
from service.engine.states import (
    RUN_TERMINAL,
    TASK_BROKEN,
    TASK_TERMINAL,
    RunState,
    TaskState,
)
from tests.unit.test_decide import Run, graph_of


class Operated(Run):
    def command(self, command: Command) -> str | None:
        decision = decide_command(self.graph, self.snapshot(), command)
        if decision.ignored is not None:
            return decision.ignored
        self.apply(decision)
        for t in decision.transitions:
            if t.task_id is not None and t.reset:
                old = self.tasks[t.task_id]
                self.tasks[t.task_id] = TaskSnapshot(
                    t.task_id, old.state, old.attempt, 0, old.attempt
                )
        self.stopped = [e for e in decision.effects if isinstance(e, StopAttempt)]
        return None


def failed_chain() -> Operated:
    run = Operated(graph_of({"a": [], "b": ["a"], "c": ["b"], "tidy": ["c"]}, {"tidy": "all_done"}))
    run.create()
    run.start("a")
    run.finish("a", TaskState.SUCCESS)
    run.start("b")
    run.finish("b", TaskState.FAILED)
    run.start("tidy")
    run.finish("tidy", TaskState.SUCCESS)
    assert run.state is RunState.FAILED
    return run


def test_cancel_stops_what_runs_and_cancels_what_waits() -> None:
    run = Operated(graph_of({"a": [], "b": [], "c": ["a"]}))
    run.create()
    run.start("a")
    assert run.command(CancelRun("cancelled by ops")) is None
    assert run.state is RunState.CANCELLED
    assert {t: s.state for t, s in run.tasks.items()} == {
        "a": TaskState.CANCELLED,
        "b": TaskState.CANCELLED,
        "c": TaskState.CANCELLED,
    }
    assert run.stopped == [StopAttempt("a", 1)]
    # The stopped attempt's own completion arrives later: stale, ignored.
    late = decide(run.graph, run.snapshot(), AttemptFinished("a", 1, TaskState.FAILED))
    assert late.ignored is not None
    assert run.command(CancelRun("again")) == (
        "run r is cancelled: only a queued or running run can be cancelled"
    )


def test_retrying_a_failed_run_reruns_what_did_not_succeed_under_the_same_id() -> None:
    run = failed_chain()
    assert run.command(RetryRun("retry by ops")) is None
    assert run.state is RunState.RUNNING
    assert run.tasks["a"].state is TaskState.SUCCESS  # kept
    assert run.tasks["b"].state is TaskState.QUEUED  # rerun, attempt numbers go on
    assert run.tasks["b"].attempt == 1
    assert run.tasks["c"].state is TaskState.PENDING  # decided again: it never ran
    assert run.tasks["tidy"].state is TaskState.SUCCESS  # it ran and ended well: kept
    assert run.start("b") == 2
    run.finish("b", TaskState.SUCCESS)
    run.start("c")
    run.finish("c", TaskState.SUCCESS)
    assert run.state is RunState.SUCCESS


def test_a_retry_refused_says_why() -> None:
    run = Operated(graph_of({"a": []}))
    run.create()
    run.start("a")
    run.finish("a", TaskState.SUCCESS)
    assert run.command(RetryRun("x")) == (
        "run r is success: only failed or cancelled runs can be retried"
    )
    assert run.command(RetryTask("a", False, "x")) == (
        "task 'a' is success: only a failed, timed out, upstream_failed or cancelled task can "
        "be retried"
    )
    assert run.command(MarkTask("nope", TaskState.SUCCESS, "x")) == "run r has no task 'nope'"


def test_marking_a_failed_task_success_lets_its_downstream_run() -> None:
    run = failed_chain()
    assert run.command(MarkTask("b", TaskState.SUCCESS, "mark by ops")) is None
    assert run.tasks["b"].state is TaskState.SUCCESS
    assert run.tasks["c"].state is TaskState.QUEUED
    assert run.state is RunState.RUNNING


def test_resume_from_a_task_reruns_it_and_everything_downstream() -> None:
    run = Operated(graph_of({"a": [], "b": ["a"], "c": ["b"]}))
    run.create()
    for task_id in ("a", "b", "c"):
        run.start(task_id)
        run.finish(task_id, TaskState.SUCCESS)
    assert run.command(ResumeFrom("b", "resume by ops")) is None
    assert [run.tasks[t].state for t in ("a", "b", "c")] == [
        TaskState.SUCCESS,
        TaskState.QUEUED,
        TaskState.PENDING,
    ]


def test_a_queued_run_can_only_be_cancelled() -> None:
    run = Operated(graph_of({"a": []}))
    assert run.command(RetryRun("x")) is not None
    assert run.command(CancelRun("x")) is None
    assert run.state is RunState.CANCELLED


COMMANDS = st.sampled_from(["cancel", "retry", "retry_task", "retry_down", "mark", "resume"])


@settings(max_examples=300, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    steps=st.lists(st.tuples(st.sampled_from(["work", "command"]), COMMANDS), max_size=40),
)
def test_any_mix_of_commands_and_work_keeps_the_run_consistent(
    seed: int, steps: list[tuple[str, str]]
) -> None:
    rng = random.Random(seed)
    deps = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"], "e": ["d"]}
    run = Operated(graph_of(deps, {"e": rng.choice(["all_success", "all_done", "one_failed"])}))
    run.create()
    for kind, name in steps:
        if kind == "work":
            running = [t for t, s in run.tasks.items() if s.state is TaskState.RUNNING]
            if running:
                task = rng.choice(running)
                run.finish(task, rng.choice([TaskState.SUCCESS, TaskState.FAILED]))
            elif run.queued() and run.state is RunState.RUNNING:
                run.start(rng.choice(run.queued()))
            continue
        task = rng.choice(sorted(deps))
        command: Command = {
            "cancel": CancelRun("c"),
            "retry": RetryRun("r"),
            "retry_task": RetryTask(task, False, "rt"),
            "retry_down": RetryTask(task, True, "rd"),
            "mark": MarkTask(task, rng.choice([TaskState.SUCCESS, TaskState.SKIPPED]), "m"),
            "resume": ResumeFrom(task, "rs"),
        }[name]
        run.command(command)  # applied (every move checked by Run.apply) or refused
        states = [s.state for s in run.tasks.values()]
        ended = all(s in TASK_TERMINAL for s in states)
        if run.state is RunState.CANCELLED:
            assert ended
        elif run.state in RUN_TERMINAL:
            assert ended
            assert (run.state is RunState.FAILED) == any(s in TASK_BROKEN for s in states)
        # Never a running task in a run that is not running.
        if run.state is not RunState.RUNNING:
            assert TaskState.RUNNING not in states
