"""The dashboard's pure parts: states in words and icons, durations, SLA states, heat levels,
the run graph's layout and the Gantt chart's bars."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from service.dashboard import figures, layout
from service.engine.states import RunState, TaskState

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def test_every_state_has_its_own_icon_and_word() -> None:
    states = {s.value for s in TaskState} | {s.value for s in RunState}
    assert states <= set(figures.STATES)
    icons = [figures.icon(s) for s in figures.STATES]
    assert len(set(icons)) == len(icons)  # never colour alone: each state its own sign
    assert figures.word("up_for_retry") == "up for retry"
    assert figures.icon("lost") == "?"


def test_durations_read_as_people_say_them() -> None:
    cases = {
        None: figures.NOTHING,
        0.0123: "12 ms",
        4.25: "4.2 s",
        185: "3 m 05 s",
        7440: "2 h 04 m",
        3 * 86400 + 7200: "3 d 02 h",
    }
    assert {k: figures.duration_text(k) for k in cases} == cases


def deadline(state: str, due: timedelta, ended: timedelta | None, missed: bool = False) -> dict:
    return {
        "state": state,
        "deadline_at": NOW + due,
        "ended_at": None if ended is None else NOW + ended,
        "deadline_missed_at": NOW if missed else None,
    }


def test_sla_states() -> None:
    def name(row: dict | None) -> str:
        return figures.sla_state(row, NOW).name

    assert name(None) == "none"
    assert name(deadline("success", timedelta(hours=1), timedelta(hours=-1))) == "met"
    assert name(deadline("running", timedelta(hours=1), None)) == "pending"
    assert name(deadline("running", timedelta(hours=-1), None)) == "missed"  # late, not flagged yet
    assert name(deadline("success", timedelta(hours=-2), timedelta(hours=-1))) == "missed"
    assert name(deadline("running", timedelta(hours=1), None, missed=True)) == "missed"
    assert name(deadline("failed", timedelta(hours=1), timedelta(hours=-1))) == "at_risk"


@given(st.lists(st.one_of(st.none(), st.floats(0, 1e6, allow_nan=False)), max_size=60))
def test_heat_levels_are_bounded_ordered_and_keep_gaps(values: list[float | None]) -> None:
    levels = figures.heat_levels(values)
    assert len(levels) == len(values)
    for value, level in zip(values, levels, strict=True):
        assert (level is None) == (value is None)
        assert level is None or 0 <= level < figures.HEAT_LEVELS
    known = sorted((v, lv) for v, lv in zip(values, levels, strict=True) if v is not None)
    assert all(a[1] <= b[1] for a, b in itertools.pairwise(known))  # monotone
    positive = [v for v in values if v is not None and v > 0]
    if len(set(positive)) > 1:
        assert levels[values.index(max(positive))] == figures.HEAT_LEVELS - 1


@st.composite
def dags(draw: st.DrawFn) -> tuple[list[list[str]], dict[str, list[str]]]:
    """A random DAG as the pipeline graph gives it: waves by longest upstream chain."""
    count = draw(st.integers(1, 25))
    tasks = [f"t{i}" for i in range(count)]
    predecessors = {
        task: sorted(draw(st.sets(st.sampled_from(tasks[:i]), max_size=3)) if i else [])
        for i, task in enumerate(tasks)
    }
    depth: dict[str, int] = {}
    for task in tasks:
        depth[task] = 1 + max((depth[p] for p in predecessors[task]), default=-1)
    waves = [[t for t in tasks if depth[t] == d] for d in range(max(depth.values()) + 1)]
    return waves, predecessors


@given(dags())
def test_the_graph_layout_places_each_task_once_left_to_right_without_overlap(
    dag: tuple[list[list[str]], dict[str, list[str]]],
) -> None:
    waves, predecessors = dag
    laid = layout.graph_layout(waves, predecessors)
    nodes = {n.task_id: n for n in laid.nodes}
    assert sorted(nodes) == sorted(t for wave in waves for t in wave)
    boxes = {(n.x, n.y) for n in laid.nodes}
    assert len(boxes) == len(laid.nodes)
    for a in laid.nodes:
        assert a.x >= 0
        assert a.x + layout.NODE_WIDTH <= laid.width
        assert a.y >= 0
        assert a.y + layout.NODE_HEIGHT <= laid.height
        for b in laid.nodes:
            if a is not b and a.x == b.x:
                assert abs(a.y - b.y) >= layout.NODE_HEIGHT  # same column: no overlap
    edges = {(e.source, e.target) for e in laid.edges}
    assert edges == {(p, t) for t, ps in predecessors.items() for p in ps}
    assert all(nodes[s].x < nodes[t].x for s, t in edges)  # upstream on the left


def test_a_chain_lies_on_one_row_and_a_fan_in_sits_beside_its_sources() -> None:
    laid = layout.graph_layout([["a"], ["b"], ["c"]], {"b": ["a"], "c": ["b"]})
    assert len({n.y for n in laid.nodes}) == 1
    fan = layout.graph_layout([["x", "y", "z"], ["w", "v"]], {"v": ["z"], "w": ["x"]})
    rows = {n.task_id: n.y for n in fan.nodes}
    assert rows["w"] < rows["v"]  # ordered like their sources: edges do not cross


def test_gantt_bars_share_one_axis() -> None:
    start = NOW - timedelta(seconds=100)
    attempts = [
        {
            "task_id": "a",
            "attempt": 1,
            "state": "failed",
            "started_at": start,
            "ended_at": start + timedelta(seconds=10),
        },
        {
            "task_id": "a",
            "attempt": 2,
            "state": "success",
            "started_at": start + timedelta(seconds=50),
            "ended_at": start + timedelta(seconds=100),
        },
        {
            "task_id": "b",
            "attempt": 1,
            "state": "running",
            "started_at": start + timedelta(seconds=75),
            "ended_at": None,
        },
        {"task_id": "c", "attempt": 0, "state": "queued", "started_at": None, "ended_at": None},
    ]
    bars, span = layout.gantt(attempts, NOW)
    assert span == 100
    assert [(b.task_id, b.attempt, b.left, b.width) for b in bars] == [
        ("a", 1, 0.0, 10.0),
        ("a", 2, 50.0, 50.0),
        ("b", 1, 75.0, 25.0),  # running: up to now
    ]
    assert layout.gantt([], NOW) == ([], 0.0)


@given(
    st.lists(
        st.tuples(st.integers(0, 10_000), st.one_of(st.none(), st.integers(0, 10_000))),
        min_size=1,
        max_size=30,
    )
)
def test_gantt_bars_stay_inside_the_chart(spans: list[tuple[int, int | None]]) -> None:
    attempts = [
        {
            "task_id": f"t{i}",
            "attempt": 1,
            "state": "success",
            "started_at": NOW - timedelta(seconds=20_000 - begin),
            "ended_at": None
            if length is None
            else NOW - timedelta(seconds=20_000 - begin - length),
        }
        for i, (begin, length) in enumerate(spans)
    ]
    bars, _ = layout.gantt(attempts, NOW)
    assert len(bars) == len(spans)
    for bar in bars:
        assert bar.left >= 0
        assert bar.width >= layout.MIN_BAR
        assert bar.left + bar.width <= 100 + 1e-6
