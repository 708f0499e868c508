"""Geometry of the run page's pictures, pure: the task graph laid out left to right (one
column per wave — a task's longest upstream chain — ordered to keep edges short) and the
Gantt chart of attempts on one time axis."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

NODE_WIDTH = 168
NODE_HEIGHT = 36
COLUMN_GAP = 56
ROW_GAP = 16
MARGIN = 8


@dataclass(frozen=True, slots=True)
class Node:
    task_id: str
    x: int
    y: int


@dataclass(frozen=True, slots=True)
class Edge:
    source: str
    target: str
    path: str  # an SVG path: a curve from the source's right side to the target's left side


@dataclass(frozen=True, slots=True)
class GraphLayout:
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    width: int
    height: int


def graph_layout(
    waves: Sequence[Sequence[str]], predecessors: Mapping[str, Sequence[str]]
) -> GraphLayout:
    """Columns are the waves; within one, tasks sit in the order of their predecessors' mean
    row (the barycenter heuristic), so most edges run straight or nearly."""
    rows: dict[str, float] = {}
    columns: list[list[str]] = []
    for wave in waves:
        column = sorted(wave, key=lambda task: (_barycenter(task, rows, predecessors), task))
        rows.update({task: float(row) for row, task in enumerate(column)})
        columns.append(column)
    tallest = max((len(column) for column in columns), default=0)
    nodes: dict[str, Node] = {}
    for number, column in enumerate(columns):
        offset = (tallest - len(column)) * (NODE_HEIGHT + ROW_GAP) // 2
        for row, task in enumerate(column):
            x = MARGIN + number * (NODE_WIDTH + COLUMN_GAP)
            y = MARGIN + offset + row * (NODE_HEIGHT + ROW_GAP)
            nodes[task] = Node(task, x, y)
    edges = tuple(
        Edge(source, target, _curve(nodes[source], nodes[target]))
        for target in nodes
        for source in predecessors.get(target, ())
        if source in nodes
    )
    width = 2 * MARGIN + len(columns) * (NODE_WIDTH + COLUMN_GAP) - (COLUMN_GAP if columns else 0)
    height = 2 * MARGIN + tallest * (NODE_HEIGHT + ROW_GAP) - (ROW_GAP if tallest else 0)
    return GraphLayout(tuple(nodes.values()), edges, width, height)


def _barycenter(
    task: str, rows: Mapping[str, float], predecessors: Mapping[str, Sequence[str]]
) -> float:
    above = [rows[p] for p in predecessors.get(task, ()) if p in rows]
    return sum(above) / len(above) if above else 0.0


def _curve(source: Node, target: Node) -> str:
    x1, y1 = source.x + NODE_WIDTH, source.y + NODE_HEIGHT // 2
    x2, y2 = target.x, target.y + NODE_HEIGHT // 2
    middle = (x1 + x2) // 2
    return f"M{x1},{y1} C{middle},{y1} {middle},{y2} {x2},{y2}"


@dataclass(frozen=True, slots=True)
class Bar:
    task_id: str
    attempt: int
    state: str
    left: float  # percent of the chart's width
    width: float
    started_at: datetime
    ended_at: datetime | None


MIN_BAR = 0.4  # percent: an instant attempt stays visible


def gantt(attempts: Sequence[Mapping[str, object]], now: datetime) -> tuple[list[Bar], float]:
    """Bars on one axis from the first start to the last end (``now`` for one still
    running), and that span in seconds. Attempts that never started are left out."""
    started = [a for a in attempts if isinstance(a.get("started_at"), datetime)]
    if not started:
        return [], 0.0
    begin = min(_at(a, "started_at", now) for a in started)
    end = max(_at(a, "ended_at", now) for a in started)
    span = max((end - begin).total_seconds(), 1e-3)
    bars = []
    for a in started:
        start, stop = _at(a, "started_at", now), _at(a, "ended_at", now)
        left = min(max((start - begin).total_seconds() / span * 100, 0.0), 100 - MIN_BAR)
        width = min(max((stop - start).total_seconds() / span * 100, MIN_BAR), 100 - left)
        ended = a.get("ended_at")
        bars.append(
            Bar(
                str(a["task_id"]),
                int(str(a["attempt"])),
                str(a["state"]),
                round(left, 3),
                round(width, 3),
                start,
                ended if isinstance(ended, datetime) else None,
            )
        )
    return bars, span


def _at(attempt: Mapping[str, object], key: str, now: datetime) -> datetime:
    value = attempt.get(key)
    return value if isinstance(value, datetime) else now
