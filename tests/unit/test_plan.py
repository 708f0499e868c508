"""Dry-run plans: waves, rendered commands, resume-from, parameters; and the CLI around them."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import orjson
import pytest

from service.cli import main
from service.errors import SpecError
from service.spec.loader import load_pipeline_file, pipeline_from_data
from service.spec.plan import format_plan, make_plan
from service.spec.validate import NodeCapacity

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "pipelines"
ORDERS = load_pipeline_file(EXAMPLES / "orders_daily.yaml")


def test_waves_follow_the_dependencies_with_everything_rendered() -> None:
    plan = make_plan(ORDERS, "2026-03-01", {"region": "north"}, capacity=NodeCapacity(1, 1024))
    waves = [[t.task_id for t in wave.tasks] for wave in plan.waves]
    assert waves == [
        ["ingest"],
        ["clean"],
        ["join_customers"],
        ["aggregate"],
        ["publish"],
        ["notify", "tidy_staging"],
    ]
    tasks = {t.task_id: t for wave in plan.waves for t in wave.tasks}
    assert tasks["join_customers"].rendered.argv[-1] == "2026-02-28"  # {batch_date - 1d}
    assert tasks["join_customers"].rendered.waits == ["dim_customer@2026-02-28"]
    assert "--region" in tasks["aggregate"].rendered.argv
    assert (
        tasks["aggregate"].rendered.argv[tasks["aggregate"].rendered.argv.index("--region") + 1]
        == "north"
    )
    assert tasks["aggregate"].cache is not None
    assert tasks["notify"].trigger_rule == "all_done"
    assert plan.waves[-1].rounds == 2  # two 1-core tasks on a 1-core node
    assert plan.params == {"region": "north", "min_orders": 1}
    text = format_plan(plan)
    assert "nothing is executed or written" in text
    assert "$ python3 examples/scripts/etl.py join --date 2026-03-01 --dim-date 2026-02-28" in text


def test_resume_from_reruns_a_task_and_its_downstream_only() -> None:
    plan = make_plan(ORDERS, "2026-03-01", {}, resume_from="aggregate")
    actions = {t.task_id: t.action for wave in plan.waves for t in wave.tasks}
    assert {t for t, a in actions.items() if a == "run"} == {
        "aggregate",
        "publish",
        "notify",
        "tidy_staging",
    }
    assert {t for t, a in actions.items() if a == "keep"} == {"ingest", "clean", "join_customers"}


def test_bad_requests_are_refused_with_every_reason() -> None:
    with pytest.raises(SpecError) as caught:
        make_plan(ORDERS, "2026-03-01", {"regoin": "x", "min_orders": "some"})
    text = str(caught.value)
    assert "unknown parameter 'regoin' (did you mean 'region'?)" in text
    assert "--param.min_orders: expected an integer, got 'some'" in text
    with pytest.raises(SpecError, match="no task 'agregate' in orders_daily"):
        make_plan(ORDERS, "2026-03-01", {}, resume_from="agregate")
    with pytest.raises(SpecError, match="does not match the format"):
        make_plan(ORDERS, "March 1st", {})


def test_a_plan_shows_the_next_scheduled_runs() -> None:
    pipeline = pipeline_from_data(
        {
            "id": "nightly",
            "triggers": {"schedule": {"cron": "30 2 * * *", "timezone": "Europe/Berlin"}},
            "tasks": [{"id": "t", "command": ["true"]}],
        },
        "nightly.yaml",
    )
    now = datetime(2026, 3, 27, 12, 0, tzinfo=UTC)
    plan = make_plan(pipeline, "2026-03-27", {}, now=now)
    # Berlin springs forward on the 29th: 02:30 does not exist that night, it fires at 03:30.
    assert [(f"{at:%d %H:%M}", str(day)) for at, day in plan.next_fires] == [
        ("28 01:30", "2026-03-27"),
        ("29 01:30", "2026-03-28"),
        ("30 00:30", "2026-03-29"),
        ("31 00:30", "2026-03-30"),
        ("01 00:30", "2026-03-31"),
    ]
    assert "next scheduled runs (batch date): 2026-03-28 01:30 UTC (2026-03-27)" in format_plan(
        plan
    )


def test_the_plan_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(
            [
                "plan",
                str(EXAMPLES / "orders_daily.yaml"),
                "--partition",
                "2026-03-01",
                "--format",
                "json",
                "--param",
                "min_orders=3",
            ]
        )
    assert exited.value.code == 0
    body = orjson.loads(capsys.readouterr().out)
    assert body["batch_date"] == str(date(2026, 3, 1))
    assert body["params"]["min_orders"] == 3
    assert len(body["waves"]) == 6


def test_plan_finds_pipelines_by_id(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(
            ["plan", "orders_dialy", "--partition", "2026-03-01", "--pipelines-dir", str(EXAMPLES)]
        )
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert "no pipeline 'orders_dialy'" in err
    assert "(did you mean 'orders_daily'?)" in err


def test_validate_exit_status_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["validate", str(EXAMPLES)])
    assert exited.value.code == 0
    capsys.readouterr()
    (tmp_path / "bad.yaml").write_text(
        "id: bad\ntasks:\n  - id: a\n    command: [x]\n    requires: [b]\n"
    )
    with pytest.raises(SystemExit) as exited:
        main(["validate", str(tmp_path), "--format", "json"])
    assert exited.value.code == 1
    body = orjson.loads(capsys.readouterr().out)
    assert body["valid"] is False
    [error] = body["errors"]
    assert error["line"] == 5
    assert error["path"] == "tasks[0].requires[0]"
    assert error["file"].endswith("bad.yaml")
