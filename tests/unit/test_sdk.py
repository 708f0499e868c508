"""The task SDK: light to import, its builder compiling to the language's document, its
runner calling a function with its context and writing what it returns as the result — or
saying in one line why it cannot."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from service.sdk import Context, Pipeline, task
from service.sdk.context import context
from service.spec.loader import pipeline_from_data

ROOT = Path(__file__).resolve().parents[2]
ENV = {
    "TRIBUTARY_RUN_ID": "r1",
    "TRIBUTARY_TASK_ID": "count",
    "TRIBUTARY_ATTEMPT": "2",
    "TRIBUTARY_BATCH_DATE": "2026-11-21",
    "TRIBUTARY_PIPELINE_ID": "p",
    "TRIBUTARY_TRACE_ID": "t1",
    "TRIBUTARY_PARAMS": '{"orders": 12, "day": "2026-11-21"}',
    "TRIBUTARY_OUTPUTS": '[{"dataset": "facts", "uri": "file:///data/facts", "partition": "x"}]',
}


def test_importing_the_sdk_pulls_in_no_heavy_library() -> None:
    # structlog too: its logger is made when a task first logs (ctx.log), not before.
    code = (
        "import sys, service.sdk, service.sdk.runner; "
        "print(sorted(m for m in ('asyncpg', 'aiokafka', 'aiohttp', 'redis', 'pydantic', "
        "'service.store', 'service.spec', 'structlog') if m in sys.modules))"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert found.stdout.strip() == "[]"


@task(expect={"rows": "> 0"}, retry={"max_attempts": 3}, outputs=["file:///data/facts"])
def count(ctx: Context) -> dict[str, int]:
    """Count the rows."""
    return {"rows": int(ctx.params["orders"])}


def test_a_pipeline_in_python_compiles_to_the_languages_document() -> None:
    pipeline = Pipeline("p", triggers={"manual": True})
    pipeline.add_task(count)
    pipeline.add_task(
        {"id": "report", "command": ["echo", "{tasks.count.result.rows}"]},
        depends_on=[count],
        when="tasks.count.result.rows > 0",
    )
    document = pipeline.to_spec()
    assert document["tasks"][0] == {
        "id": "count",
        "python": "tests.unit.test_sdk:count",
        "description": "Count the rows.",
        "expect": {"rows": "> 0"},
        "retry": {"max_attempts": 3},
        "outputs": [{"uri": "file:///data/facts"}],
    }
    compiled = pipeline_from_data(document, "p.py")
    assert compiled.graph.predecessors["report"] == ("count",)
    assert compiled.tasks["count"].python == "tests.unit.test_sdk:count"
    assert count(Context("r", "t", 1, context(ENV).batch_date, "p", "t", {"orders": 3})) == {
        "rows": 3
    }  # still a plain function


def test_the_context_comes_from_the_attempts_environment() -> None:
    ctx = context(ENV)
    assert (ctx.run_id, ctx.attempt, str(ctx.batch_date)) == ("r1", 2, "2026-11-21")
    assert ctx.params == {"orders": 12, "day": "2026-11-21"}
    assert ctx.output("facts").path == Path("/data/facts")
    with pytest.raises(KeyError, match="no input 'orders'"):
        ctx.input("orders")
    with pytest.raises(KeyError, match="TRIBUTARY_RUN_ID is not set"):
        context({})


def run(target: str, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    result = tmp_path / "result.json"
    env = {**os.environ, **ENV, "TRIBUTARY_RESULT_FILE": str(result)}
    done = subprocess.run(
        [sys.executable, "-m", "service.sdk.runner", target],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        check=False,
    )
    return done, result


def test_the_runner_writes_what_the_function_returns(tmp_path: Path) -> None:
    done, result = run("tests.unit.test_sdk:count", tmp_path)
    assert done.returncode == 0, done.stderr
    assert orjson.loads(result.read_bytes()) == {"rows": 12}
    lines = [orjson.loads(line) for line in done.stderr.splitlines()]
    assert [line["event"] for line in lines] == ["task.started", "task.done"]
    assert all(line["run_id"] == "r1" and line["trace_id"] == "t1" for line in lines)


def not_a_result(ctx: Context) -> list[int]:
    return [1, 2]


def raises(ctx: Context) -> None:
    raise RuntimeError("the warehouse is down")


async def awaited(ctx: Context) -> dict[str, str]:
    return {"mode": "async"}


def test_the_runner_says_why_it_cannot(tmp_path: Path) -> None:
    done, _ = run("tests.unit.test_sdk:nowhere", tmp_path)
    assert done.returncode == 2
    assert "module 'tests.unit.test_sdk' has no 'nowhere'" in done.stderr
    done, result = run("tests.unit.test_sdk:not_a_result", tmp_path)
    assert done.returncode == 2
    assert "a result is a JSON object (name: value), got list" in done.stderr
    assert not result.exists()
    done, _ = run("tests.unit.test_sdk:raises", tmp_path)
    assert done.returncode == 1
    assert "RuntimeError: the warehouse is down" in done.stderr
    done, result = run("tests.unit.test_sdk:awaited", tmp_path)
    assert (done.returncode, orjson.loads(result.read_bytes())) == (0, {"mode": "async"})
