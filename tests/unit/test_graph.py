"""Properties of the derived graph: order, waves, and cycles found and printed."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from service.spec.graph import build_graph
from service.spec.models import PipelineSpec
from service.spec.validate import check_graph


@st.composite
def dags(draw: st.DrawFn, max_size: int = 40) -> dict[str, list[str]]:
    size = draw(st.integers(min_value=1, max_value=max_size))
    names = [f"t{i}" for i in draw(st.permutations(range(size)))]
    return {
        name: sorted(draw(st.sets(st.sampled_from(names[:i]), max_size=4)) if i else set())
        for i, name in enumerate(names)
    }


def spec_of(deps: dict[str, list[str]]) -> PipelineSpec:
    tasks = [{"id": t, "command": ["true"], "requires": r} for t, r in deps.items()]
    return PipelineSpec.model_validate({"id": "p", "tasks": tasks})


@given(dags())
def test_the_order_respects_every_edge_and_waves_are_consistent(deps: dict[str, list[str]]) -> None:
    assert check_graph(list(deps.items())) == []
    graph = build_graph(spec_of(deps))
    position = {task: i for i, task in enumerate(graph.order)}
    assert sorted(position) == sorted(deps)
    wave_of = {task: n for n, wave in enumerate(graph.waves()) for task in wave}
    for task, requires in deps.items():
        for dep in requires:
            assert position[dep] < position[task]
            assert wave_of[dep] < wave_of[task]
            assert task in graph.successors[dep]
        assert set(graph.predecessors[task]) == set(requires)


@settings(max_examples=200)
@given(deps=dags(max_size=30), data=st.data())
def test_every_injected_cycle_is_found_and_printed(
    deps: dict[str, list[str]], data: st.DataObject
) -> None:
    # Close a cycle: pick a path a -> ... -> b through existing edges, then make a require b.
    graph = build_graph(spec_of(deps))
    start = data.draw(st.sampled_from(graph.order))
    path = [start]
    while graph.successors[path[-1]] and data.draw(st.booleans()):
        path.append(data.draw(st.sampled_from(graph.successors[path[-1]])))
    closing = path[-1]
    cyclic = {task: list(requires) for task, requires in deps.items()}
    cyclic[start] = [*cyclic[start], closing] if closing != start else cyclic[start]
    problems = check_graph(list(cyclic.items()))
    if closing == start:  # a task requiring itself
        cyclic[start].append(start)
        problems = check_graph(list(cyclic.items()))
        assert any("requires itself" in p.message for p in problems)
        return
    [problem] = problems
    cycle = problem.message.removeprefix("dependency cycle ").split(" -> ")
    assert cycle[0] == cycle[-1]
    for upstream, downstream in itertools.pairwise(cycle):
        assert upstream in cyclic[downstream], f"{downstream} does not require {upstream}"
