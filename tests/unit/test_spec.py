"""The pipeline language: loading, located problems, suggestions, every cross-key check."""

from __future__ import annotations

import textwrap
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from service.engine.triggers import new_tasks
from service.errors import Problem, SpecError
from service.spec.base import TriggerRule
from service.spec.loader import load_pipeline_dir, load_pipeline_file, pipeline_from_data
from service.spec.validate import NodeCapacity

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "pipelines"


def spec(*tasks: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"id": "p", "tasks": list(tasks), **fields}


def task(task_id: str, *requires: str, **fields: Any) -> dict[str, Any]:
    return {"id": task_id, "command": ["true"], "requires": list(requires), **fields}


def problems(data: Any, capacity: NodeCapacity | None = None) -> list[Problem]:
    with pytest.raises(SpecError) as caught:
        pipeline_from_data(data, "p.yaml", capacity)
    return caught.value.problems


def messages(data: Any, capacity: NodeCapacity | None = None) -> list[str]:
    return [f"{p.path}: {p.message}" for p in problems(data, capacity)]


def load_text(tmp_path: Path, text: str) -> list[Problem]:
    path = tmp_path / "p.yaml"
    path.write_text(textwrap.dedent(text))
    with pytest.raises(SpecError) as caught:
        load_pipeline_file(path)
    return caught.value.problems


def test_the_examples_are_valid_and_chain_through_data() -> None:
    result = load_pipeline_dir(EXAMPLES)
    assert result.problems == []
    assert result.warnings == []  # every wait_for dataset is produced by a pipeline
    by_id = {p.id: p for p in result.pipelines}
    assert set(by_id) == {"orders_daily", "customer_dimension", "revenue_report", "orders_quality"}
    outputs = {ref.name for t in by_id["orders_daily"].spec.tasks for ref in t.outputs}
    assert by_id["revenue_report"].spec.triggers.datasets[0].dataset in outputs


def test_defaults_apply_to_every_task_and_env_and_tags_merge() -> None:
    pipeline = pipeline_from_data(
        spec(
            task("a", env={"B": "2"}, tags=["x"]),
            task("b", retry={"max_attempts": 5}),
            defaults={
                "retry": {"max_attempts": 3},
                "env": {"A": "1"},
                "tags": ["t"],
                "timeout": "1h",
                "trigger_rule": "all_done",
            },
        ),
        "x",
    )
    a, b = pipeline.tasks["a"], pipeline.tasks["b"]
    assert a.env == {"A": "1", "B": "2"}
    assert a.tags == ["t", "x"]
    assert (a.retry.max_attempts, b.retry.max_attempts) == (3, 5)
    assert a.timeout == b.timeout == timedelta(hours=1)
    assert b.trigger_rule is TriggerRule.ALL_DONE


def test_the_graph_is_indexed_both_ways() -> None:
    pipeline = pipeline_from_data(spec(task("a"), task("b", "a"), task("c", "a", "b")), "x")
    graph = pipeline.graph
    assert graph.roots == ("a",)
    assert graph.successors["a"] == ("b", "c")
    assert graph.predecessors["c"] == ("a", "b")
    assert graph.waves() == [["a"], ["b"], ["c"]]
    assert graph.downstream_of("b") == {"b", "c"}


def test_every_problem_is_reported_at_once_with_suggestions() -> None:
    found = messages(
        spec(
            task("extract"),
            task("extract"),
            task("load", "extrct", command=["x", "{batch_dat}"]),
        )
    )
    assert "tasks[1].id: duplicate task id 'extract'" in found
    assert "tasks[2].requires[0]: unknown task 'extrct' (did you mean 'extract'?)" in found
    assert (
        "tasks[2].command[1]: unknown placeholder {batch_dat} (did you mean {batch_date}?)" in found
    )


def test_a_cycle_is_printed() -> None:
    [found] = messages(spec(task("a", "c"), task("b", "a"), task("c", "b")))
    assert found.startswith("tasks: dependency cycle ")
    cycle = found.removeprefix("tasks: dependency cycle ").split(" -> ")
    assert cycle[0] == cycle[-1]
    assert set(cycle) == {"a", "b", "c"}


def test_a_cycle_is_reported_with_unknown_keys_and_misspelled_dependencies() -> None:
    found = messages(
        spec(
            task("a", "c"),
            task("b", "a", "ghost"),
            task("c", "b", comand=["x"]),
        )
    )
    assert any(m.startswith("tasks: dependency cycle ") for m in found), found
    assert any("unknown task 'ghost'" in m for m in found)
    assert any("unknown key 'comand'" in m for m in found)


def test_other_orchestrators_names_get_ours_suggested() -> None:
    found = messages(spec(task("a"), {"id": "b", "command": ["x"], "depends_on": ["a"]}))
    assert "tasks[1].depends_on: unknown key 'depends_on' (did you mean 'requires'?)" in found


def test_unknown_keys_get_a_suggestion_and_a_line(tmp_path: Path) -> None:
    found = load_text(
        tmp_path,
        """\
        id: p
        tasks:
          - id: a
            comand: [run]
            retry:
              max_atempts: 3
    """,
    )
    text = [str(p) for p in found]
    assert any(
        t.endswith("p.yaml:4: tasks[0].comand: unknown key 'comand' (did you mean 'command'?)")
        for t in text
    ), text
    assert any(
        t.endswith(
            "p.yaml:6: tasks[0].retry.max_atempts: unknown key 'max_atempts' "
            "(did you mean 'max_attempts'?)"
        )
        for t in text
    ), text
    bare = [str(p) for p in load_text(tmp_path, "id: p\ntasks:\n  - id: a\n")]
    assert any(
        "tasks[0]: a task runs either a command or a python function: give one" in t for t in bare
    ), bare


def test_wrong_types_say_what_they_got(tmp_path: Path) -> None:
    found = load_text(
        tmp_path,
        """\
        id: p
        max_active_runs: lots
        tasks:
          - id: a
            command: [run]
            timeout: soon
            resources: {cpu_cores: -1}
    """,
    )
    text = "\n".join(str(p) for p in found)
    assert "p.yaml:2: max_active_runs: Input should be a valid integer" in text
    assert "got 'lots'" in text
    assert "p.yaml:6: tasks[0].timeout: 'soon' is not a duration" in text
    assert "p.yaml:7: tasks[0].resources.cpu_cores: Input should be greater than 0" in text


def test_bad_yaml_names_the_file_and_line(tmp_path: Path) -> None:
    [found] = load_text(tmp_path, "id: p\ntasks: [unclosed\n")
    assert found.file.endswith("p.yaml")
    assert found.line == 3
    assert "not valid YAML" in found.message


@pytest.mark.parametrize(
    ("command", "shell", "reason"),
    [
        ("echo hi", False, "a command string needs shell: true"),
        (["echo", "hi"], True, "shell: true takes the command as one string"),
        ([], False, "the command is empty"),
    ],
)
def test_command_forms(command: Any, shell: bool, reason: str) -> None:
    assert any(reason in m for m in messages(spec(task("a", command=command, shell=shell))))


def test_templates_are_checked_everywhere() -> None:
    found = messages(
        spec(
            task(
                "a",
                command=["x", "{run_id + 1d}"],
                env={"D": "{params.day:%Q}"},
                wait_for=[{"dataset": "d", "partition": "{batch_date + 1y}"}],
                outputs=[{"uri": "s3://b/{params.nope}"}],
            ),
            params={"day": {"type": "date", "default": "2026-01-01"}},
        )
    )
    text = "\n".join(found)
    assert (
        "tasks[0].command[1]: {run_id + 1d}: date arithmetic and formats apply only to dates"
        in text
    )
    assert "tasks[0].env.D: {params.day:%Q}: '%Q' is not a date format directive" in text
    assert "tasks[0].wait_for[0].partition: {batch_date + 1y}: unknown unit 'y'" in text
    assert "tasks[0].outputs[0].uri: unknown placeholder {params.nope}" in text


def test_params_are_typed_and_checked() -> None:
    found = messages(
        spec(
            task("a"),
            params={
                "n": {"type": "integer", "default": "many"},
                "both": {"default": "x", "required": True},
                "none": {"type": "string"},
                "pick": {"default": "z", "choices": ["x", "y"]},
            },
        )
    )
    text = "\n".join(found)
    assert "params.n: expected an integer, got 'many'" in text
    assert "params.both: a required parameter cannot have a default" in text
    assert "params.none: give a default, or mark the parameter required: true" in text
    assert "params.pick: 'z' is not one of ['x', 'y']" in text


def test_triggered_pipelines_cannot_require_params() -> None:
    found = messages(
        spec(
            task("a"), triggers={"datasets": [{"dataset": "d"}]}, params={"who": {"required": True}}
        )
    )
    assert found == [
        "params.who: a pipeline started by datasets or a schedule cannot have "
        "required parameters: give it a default"
    ]


def test_resources_beyond_the_node_are_refused() -> None:
    found = messages(
        spec(task("big", resources={"memory_mb": 64_000, "cpu_cores": 16})),
        NodeCapacity(cpu_cores=8, memory_mb=32_000),
    )
    assert "tasks[0].resources.memory_mb: asks for 64000 MB but a node has 32000 MB" in found
    assert "tasks[0].resources.cpu_cores: asks for 16 cores but a node has 8" in found


def test_trigger_mapping_and_schedule_are_checked() -> None:
    found = messages(
        spec(
            task("a"),
            triggers={
                "datasets": [
                    {"dataset": "d", "partition_format": "%Y-%m", "batch_date_offset": "3h"}
                ],
                "schedule": {"cron": "61 * * * *"},
            },
        )
    )
    text = "\n".join(found)
    assert "partition format '%Y-%m' must name year, month and day" in text
    assert "triggers.datasets[0].batch_date_offset: must be a whole number of days" in text
    assert "'61 * * * *' is not a cron expression" in text


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ({"cron": "0 3 * * *", "timezone": "Mars/Olympus"}, "is not an IANA time zone"),
        ({"cron": "0 3 * * *", "max_catchup": 3}, "max_catchup goes with catchup: all"),
        ({"cron": "0 3 30 2 *"}, "'0 3 30 2 *' never fires"),
        ({"cron": "0 3 * * *", "catchup": "some"}, "triggers.schedule.catchup"),
    ],
)
def test_a_schedule_that_would_not_do_what_it_says_is_refused(
    schedule: dict[str, Any], expected: str
) -> None:
    found = "\n".join(messages(spec(task("a"), triggers={"schedule": schedule})))
    assert expected in found


@pytest.mark.parametrize(
    ("wait", "expected"),
    [
        ({"poke_interval": "1m"}, "needs exactly one of check, path, sql, url; got none"),
        ({"path": "/x", "url": "https://x"}, "got path, url"),
        ({"path": "/x", "shell": True}, "shell goes with check"),
        ({"url": "https://x", "marker": "_SUCCESS"}, "marker goes with path"),
        ({"path": "/x", "not_ready_codes": [2]}, "not_ready_codes goes with check"),
        ({"sql": "SELECT true"}, "sql needs database"),
        ({"check": ["true"], "not_ready_codes": [0]}, "0 means ready"),
        ({"url": "ftp://x"}, "is not an http:// or https:// URL"),
        ({"path": "/x", "poke_interval": "2h"}, "poke_interval is longer than max_poke_interval"),
        ({"path": "/x", "timeout": "0s"}, "must be longer than 0s"),
        ({"path": "/x", "poke_backoff": 0.5}, "poke_backoff"),
    ],
)
def test_a_check_wait_takes_exactly_one_probe_and_only_its_own_keys(
    wait: dict[str, Any], expected: str
) -> None:
    found = "\n".join(messages(spec(task("a", wait_for=[wait]))))
    assert expected in found


def test_an_input_may_say_not_to_wait_but_an_output_may_not() -> None:
    found = "\n".join(messages(spec(task("a", outputs=[{"uri": "pg://w/t", "wait": False}]))))
    assert "tasks[0].outputs[0].wait: unknown key 'wait'" in found
    pipeline = pipeline_from_data(
        spec(task("a", inputs=[{"uri": "pg://w/t", "wait": False}])), "p.yaml"
    )
    assert pipeline.tasks["a"].inputs[0].wait is False


def test_partitions_map_to_batch_dates() -> None:
    pipeline = pipeline_from_data(
        spec(
            task("a"),
            triggers={
                "datasets": [
                    {"dataset": "d", "partition_format": "dt=%Y%m%d", "batch_date_offset": "-1d"}
                ]
            },
        ),
        "x",
    )
    trigger = pipeline.spec.triggers.datasets[0]
    assert trigger.batch_date_for("dt=20260301") == date(2026, 2, 28)
    assert trigger.partition_for(date(2026, 2, 28)) == "dt=20260301"
    with pytest.raises(ValueError, match="does not match the format 'dt=%Y%m%d'"):
        trigger.batch_date_for("2026-03-01")


def test_exit_codes_and_retry_are_consistent() -> None:
    found = "\n".join(
        messages(
            spec(
                task(
                    "a",
                    exit_codes={"skip": [3], "fatal": [3]},
                    retry={
                        "max_attempts": 2,
                        "on_exit_codes": [0],
                        "backoff": {"base": "1h", "max": "1m"},
                    },
                )
            )
        )
    )
    assert "codes [3] cannot mean both skip and fatal" in found
    assert "tasks[0].retry.on_exit_codes: 0 means success: it cannot be retried" in found
    assert "tasks[0].retry.backoff: backoff base is longer than its max" in found


def test_a_wait_for_nothing_produces_is_a_warning(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "id: a\ntasks:\n  - id: t\n    command: [x]\n    wait_for: [{dataset: dim_custmer}]\n"
        "    outputs: [{uri: 'pg://w/dim', dataset: dim_customer}]\n"
    )
    result = load_pipeline_dir(tmp_path)
    assert result.problems == []
    [warning] = result.warnings
    assert warning.severity == "warning"
    assert warning.path == "tasks[0].wait_for[0].dataset"
    assert "no pipeline outputs 'dim_custmer'" in warning.message
    assert "(did you mean 'dim_customer'?)" in warning.message


def test_an_input_nothing_announces_is_a_warning_unless_it_is_not_waited_for(
    tmp_path: Path,
) -> None:
    (tmp_path / "a.yaml").write_text(
        "id: a\ntasks:\n  - id: t\n    command: [x]\n    inputs:\n"
        "      - {uri: 'pg://w/raw', dataset: raw_orders}\n"
        "      - {uri: 'pg://w/lookup', wait: false}\n"
    )
    [warning] = load_pipeline_dir(tmp_path).warnings
    assert warning.path == "tasks[0].inputs[0]"
    assert "no pipeline outputs 'raw_orders'" in warning.message


def test_a_trigger_rule_on_a_root_task_is_a_warning() -> None:
    pipeline = pipeline_from_data(spec(task("a", trigger_rule="all_done")), "x")
    [warning] = pipeline.warnings
    assert "has no effect" in warning.message


def test_a_directory_keeps_the_valid_pipelines(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text("id: good\ntasks: [{id: a, command: ['true']}]\n")
    (tmp_path / "bad.yaml").write_text("id: bad\ntasks: []\n")
    (tmp_path / "twin.yaml").write_text("id: good\ntasks: [{id: a, command: ['true']}]\n")
    (tmp_path / "notes.txt").write_text("not a pipeline")
    result = load_pipeline_dir(tmp_path)
    assert [p.id for p in result.pipelines] == ["good"]
    assert {Path(f).name for f in result.refused_files} == {"bad.yaml", "twin.yaml"}
    text = "\n".join(str(p) for p in result.problems)
    assert "bad.yaml:2: tasks: List should have at least 1 item" in text
    assert "twin.yaml: id: pipeline id 'good' is already defined in" in text


def test_a_yaml_boolean_is_not_a_command(tmp_path: Path) -> None:
    found = load_text(tmp_path, "id: p\ntasks: [{id: a, command: [true]}]\n")
    assert any("command[0]" in p.path and "valid string" in p.message for p in found)


def test_the_hash_names_the_content() -> None:
    one = pipeline_from_data(spec(task("a")), "x")
    same = pipeline_from_data(spec(task("a")), "y")
    other = pipeline_from_data(spec(task("a", command=["false"])), "x")
    assert one.spec_hash == same.spec_hash != other.spec_hash
    # A stored version reloads to the same hash (runs find their exact spec again).
    again = pipeline_from_data(one.spec.model_dump(mode="json"), "db")
    assert again.spec_hash == one.spec_hash


def test_model_and_graph_problems_come_together() -> None:
    found = messages(spec(task("a", colour="red"), task("b", "aa")))
    assert "tasks[0].colour: unknown key 'colour'" in found
    assert "tasks[1].requires[0]: unknown task 'aa' (did you mean 'a'?)" in found


def test_unchanged_files_are_not_parsed_again(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("id: p\ntasks: [{id: a, command: ['true']}]\n")
    cache: dict[str, Any] = {}
    first = load_pipeline_dir(tmp_path, cache=cache).pipelines[0]
    assert load_pipeline_dir(tmp_path, cache=cache).pipelines[0] is first
    path.write_text("id: p\ntasks: [{id: a, command: ['false']}]\n")
    changed = load_pipeline_dir(tmp_path, cache=cache).pipelines[0]
    assert changed is not first
    assert changed.spec_hash != first.spec_hash


def test_json_pipelines_load_and_locate_their_problems(tmp_path: Path) -> None:
    good = tmp_path / "gen.json"
    good.write_text('{"id": "gen", "tasks": [{"id": "a", "command": ["run", "{batch_date}"]}]}')
    assert load_pipeline_file(good).id == "gen"
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "id": "gen",\n  "tasks": [\n    {"id": "a", "comand": ["x"]}\n  ]\n}\n')
    with pytest.raises(SpecError) as caught:
        load_pipeline_file(bad)
    unknown = [p for p in caught.value.problems if "comand" in p.message]
    assert unknown[0].line == 4
    broken = tmp_path / "broken.json"
    broken.write_text('{"id": "gen",\n "tasks": [}')
    with pytest.raises(SpecError, match=r"not valid JSON"):
        load_pipeline_file(broken)


def test_a_remote_task_cannot_be_cached_and_remote_by_default_keeps_cached_tasks_local() -> None:
    found = "\n".join(messages(spec(task("a", cache=True, executor="remote"))))
    assert "a remote task (executor: remote, or a queue) cannot be cached" in found
    pipeline = pipeline_from_data(spec(task("a", cache=True), task("b")), "p.yaml")
    where = {t.task_id: t.remote for t in new_tasks(pipeline, remote_by_default=True)}
    assert where == {"a": False, "b": True}


def test_a_queue_sends_its_task_to_that_queues_workers() -> None:
    pipeline = pipeline_from_data(spec(task("a", queue="gpu-large"), task("b")), "p.yaml")
    assert {t.task_id: t.remote for t in new_tasks(pipeline, remote_by_default=False)} == {
        "a": True,
        "b": False,
    }
    found = "\n".join(messages(spec(task("a", queue="gpu.large"))))
    assert "tasks[0].queue" in found  # a queue names a Kafka topic: no dots, no spaces
    found = "\n".join(messages(spec(task("a", queue="gpu", cache=True))))
    assert "cannot be cached" in found


def test_a_workers_queue_is_checked_as_a_tasks_queue_is() -> None:
    from service.config import kafka
    from service.spec import base

    assert kafka.QUEUE_PATTERN == base.QUEUE_PATTERN
