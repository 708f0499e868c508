"""What tasks report, judged by the pure engine: expect: rules fail a task whose result breaks
them (with the value, never retried), when: conditions skip a task whose upstream results say
so — and what the language refuses. No eval anywhere: rules are parsed, then compared."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.engine.decide import decide
from service.engine.model import AttemptFinished, RunSnapshot, TaskSnapshot
from service.engine.states import RunState, TaskState
from service.errors import SpecError
from service.spec.conditions import Comparison, ConditionError, parse_expectation, parse_when
from service.spec.graph import TaskGraph
from service.spec.loader import pipeline_from_data


def graph(*tasks: dict[str, Any]) -> TaskGraph:
    data = {"id": "p", "tasks": [{"command": ["true"], **t} for t in tasks]}
    return pipeline_from_data(data, "p.yaml").graph


def finish(
    g: TaskGraph,
    states: Mapping[str, TaskState],
    task_id: str,
    result: Mapping[str, Any] | None,
    results: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, tuple[str, str]]:
    """The moves (task -> (state, reason)) when ``task_id``'s attempt 1 succeeds with
    ``result``, the others being in ``states`` with ``results``."""
    tasks = {
        t: TaskSnapshot(
            t,
            TaskState.RUNNING if t == task_id else states.get(t, TaskState.PENDING),
            1,
            result=(results or {}).get(t),
        )
        for t in g.order
    }
    event = AttemptFinished(task_id, 1, TaskState.SUCCESS, exit_code=0, result=result)
    decision = decide(g, RunSnapshot("r", RunState.RUNNING, tasks), event)
    return {t.task_id: (t.to_state, t.reason) for t in decision.transitions if t.task_id}


def test_an_expectation_that_fails_fails_the_task_with_the_value_and_no_retry() -> None:
    g = graph(
        {
            "id": "load",
            "expect": {"rows": "> 0", "error_rate": "< 0.01"},
            "retry": {"max_attempts": 3},
        },
        {"id": "report", "requires": ["load"]},
    )
    moves = finish(g, {}, "load", {"rows": 0, "error_rate": 0.5})
    state, reason = moves["load"]
    assert state == "failed"  # not up_for_retry: the data is wrong, not the run
    assert reason == (
        "attempt 1 ended failed: expectation_failed: rows = 0, expected > 0; "
        "error_rate = 0.5, expected < 0.01"
    )
    assert moves["report"][0] == "upstream_failed"
    missing = finish(g, {}, "load", {"error_rate": 0.0})["load"][1]
    assert "load" not in missing
    assert "expectation_failed: the task reported no 'rows', expected > 0" in missing
    assert finish(g, {}, "load", None)["load"][1].endswith(
        "the task reported no result, expected > 0; the task reported no result, expected < 0.01"
    )
    assert finish(g, {}, "load", {"rows": 5, "error_rate": 0.001})["load"][0] == "success"


def test_a_branch_runs_where_its_condition_holds_and_is_skipped_where_not() -> None:
    g = graph(
        {"id": "count"},
        {"id": "big", "requires": ["count"], "when": "tasks.count.result.rows > 1000"},
        {"id": "small", "requires": ["count"], "when": "tasks.count.result.rows <= 1000"},
        {"id": "after_big", "requires": ["big"]},
        {"id": "join", "requires": ["big", "small"]},
    )
    moves = finish(g, {}, "count", {"rows": 12})
    assert moves["big"] == (
        "skipped",
        "when: tasks.count.result.rows > 1000 is false (rows = 12) (after count)",
    )
    assert moves["small"][0] == "queued"
    assert "when: tasks.count.result.rows <= 1000" in moves["small"][1]
    assert moves["after_big"][0] == "queued"  # a skipped task counts as done, as always
    assert "join" not in moves  # waits for small
    absent = finish(g, {}, "count", {"files": 3})
    assert absent["big"] == (
        "skipped",
        "when: tasks.count.result.rows > 1000 is false (count reported no 'rows') (after count)",
    )


def test_conditions_read_results_reported_in_earlier_batches() -> None:
    g = graph(
        {"id": "a"},
        {"id": "b"},
        {
            "id": "c",
            "requires": ["a", "b"],
            "when": 'tasks.a.result.mode == "full" and tasks.b.result.ok == true',
        },
    )
    moves = finish(g, {"a": TaskState.SUCCESS}, "b", {"ok": True}, {"a": {"mode": "full"}})
    assert moves["c"][0] == "queued"
    moves = finish(g, {"a": TaskState.SUCCESS}, "b", {"ok": True}, {"a": {"mode": "delta"}})
    assert moves["c"] == (
        "skipped",
        'when: tasks.a.result.mode == "full" is false (mode = "delta") (after b)',
    )


def test_the_language_refuses_what_it_cannot_compare() -> None:
    for text in ("0", "> lots", ">= [1]", "~ 3"):
        with pytest.raises(ConditionError):
            parse_expectation("rows", text)
    for text in (
        "rows > 0",
        "tasks.a.rows > 0",
        "tasks.a.result.rows >",
        "tasks.a.result.rows > 0 or tasks.b.result.x < 1",
    ):
        with pytest.raises(ConditionError):
            parse_when(text)
    with pytest.raises(SpecError) as caught:
        pipeline_from_data(
            {
                "id": "p",
                "tasks": [
                    {"id": "a", "command": ["true"]},
                    {"id": "b", "command": ["true"], "when": "tasks.a.result.rows > 0"},
                ],
            },
            "p.yaml",
        )
    assert "when reads the result of 'a', which is not upstream of 'b'" in str(caught.value)
    with pytest.raises(SpecError, match="expect rows: '0' is not a rule"):
        pipeline_from_data(
            {"id": "p", "tasks": [{"id": "a", "command": ["true"], "expect": {"rows": "0"}}]},
            "p.yaml",
        )


VALUES = st.one_of(
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5),
)


@given(VALUES, st.sampled_from(["==", "!=", ">", ">=", "<", "<="]), VALUES)
def test_a_comparison_never_raises_and_agrees_with_python(
    actual: Any, op: str, wanted: Any
) -> None:
    import operator

    rule = Comparison("x", op, wanted)
    python = {
        "==": operator.eq,
        "!=": operator.ne,
        ">": operator.gt,
        ">=": operator.ge,
        "<": operator.lt,
        "<=": operator.le,
    }[op]
    try:
        expected = python(actual, wanted)
    except TypeError:
        expected = False
    assert rule.holds({"x": actual}) is expected
    assert rule.holds({}) is False
    assert rule.holds(None) is False
