from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from service.errors import SpecError
from service.spec.loader import load_pipeline_dir, load_pipeline_file, pipeline_from_data

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "pipelines"


def spec(*tasks: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"id": "p", "tasks": list(tasks), **fields}


def task(task_id: str, *requires: str, **fields: Any) -> dict[str, Any]:
    return {"id": task_id, "command": ["true"], "requires": list(requires), **fields}


def problems(data: Any) -> list[str]:
    with pytest.raises(SpecError) as caught:
        pipeline_from_data(data, "p.yaml")
    return caught.value.problems


def test_the_examples_are_valid() -> None:
    pipelines, found = load_pipeline_dir(EXAMPLES)
    assert found == []
    assert {p.id for p in pipelines} >= {"orders_daily"}


def test_the_graph_is_indexed_both_ways() -> None:
    pipeline = pipeline_from_data(spec(task("a"), task("b", "a"), task("c", "a", "b")), "x")
    assert pipeline.graph.roots == ("a",)
    assert pipeline.graph.successors["a"] == ("b", "c")
    assert pipeline.graph.predecessors["c"] == ("a", "b")
    assert (
        pipeline.graph.order.index("a")
        < pipeline.graph.order.index("b")
        < pipeline.graph.order.index("c")
    )


def test_every_problem_is_reported_at_once() -> None:
    found = problems(spec(task("a", "ghost"), task("a"), task("b", command=["x", "{nope}"])))
    assert any("tasks[0].requires[0]: unknown task 'ghost'" in p for p in found)
    assert any("tasks[1].id: duplicate task id 'a'" in p for p in found)
    assert any("tasks[2].command[1]: unknown placeholder {nope}" in p for p in found)
    assert all(p.startswith("p.yaml: ") for p in found)


def test_a_cycle_is_printed() -> None:
    found = problems(spec(task("a", "c"), task("b", "a"), task("c", "b")))
    assert len(found) == 1
    assert "dependency cycle" in found[0]
    cycle = found[0].split("dependency cycle ")[1].split(" -> ")
    assert cycle[0] == cycle[-1]
    assert set(cycle) == {"a", "b", "c"}


def test_unknown_keys_and_wrong_types_are_located() -> None:
    found = problems(spec(task("a", comand=["x"]), max_runs="x"))
    assert any("tasks[0].comand: Extra inputs are not permitted" in p for p in found)
    assert any("max_runs: Extra inputs are not permitted" in p for p in found)


def test_bad_yaml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("id: [unclosed\n")
    with pytest.raises(SpecError, match=r"broken.yaml: not valid YAML"):
        load_pipeline_file(path)


def test_a_directory_keeps_the_valid_pipelines(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text("id: good\ntasks: [{id: a, command: ['true']}]\n")
    (tmp_path / "bad.yaml").write_text("id: bad\ntasks: []\n")
    (tmp_path / "twin.yaml").write_text("id: good\ntasks: [{id: a, command: ['true']}]\n")
    pipelines, found = load_pipeline_dir(tmp_path)
    assert [p.id for p in pipelines] == ["good"]
    assert any("bad.yaml" in p and "tasks" in p for p in found)
    assert any("twin.yaml" in p and "already defined" in p for p in found)


def test_the_hash_names_the_content() -> None:
    one = pipeline_from_data(spec(task("a")), "x")
    same = pipeline_from_data(spec(task("a")), "y")
    other = pipeline_from_data(spec(task("a", command=["false"])), "x")
    assert one.spec_hash == same.spec_hash != other.spec_hash
