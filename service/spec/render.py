"""A task as it will run for one run: every template filled in (used by executor and planner)."""

from __future__ import annotations

import shlex
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import orjson

from service.spec.params import ParamValue
from service.spec.pipeline import Pipeline
from service.spec.tasks import CheckWait
from service.spec.templates import RESULT_NAME, RUN_DIR, Template

SHELL = "/bin/sh"


@dataclass(frozen=True, slots=True)
class RenderedTask:
    argv: list[str]
    env: dict[str, str]
    cwd: str | None
    cleanup: list[str] | None
    rollback: list[str] | None
    waits: list[str]  # "dataset@partition", or what a check looks at
    inputs: list[str]  # "uri@partition"
    outputs: list[str]


def template_values(
    *,
    batch_date: date,
    run_id: str,
    attempt: int,
    task_id: str,
    pipeline_id: str,
    params: Mapping[str, ParamValue],
    results: Mapping[str, Mapping[str, Any] | None] | None = None,
    run_dir: str | None = None,
) -> dict[str, str | date]:
    """What placeholders stand for; ``results``: what the run's tasks reported (upstream
    results are known when an attempt starts)."""
    values: dict[str, str | date] = {
        "batch_date": batch_date,
        "run_id": run_id,
        "attempt": str(attempt),
        "task_id": task_id,
        "pipeline_id": pipeline_id,
    }
    for name, value in params.items():
        values[f"params.{name}"] = value if isinstance(value, date) else _text(value)
    if run_dir is not None:
        values[RUN_DIR] = run_dir
    for task, reported in (results or {}).items():
        for name, value in (reported or {}).items():
            values[f"tasks.{task}.result.{name}"] = (
                value if isinstance(value, str) else orjson.dumps(value).decode()
            )
    return values


class ShownResults(dict[str, str | date]):
    """Template values for a plan, before anything ran: an upstream result shows as itself
    ({tasks.count.result.rows})."""

    def __missing__(self, name: str) -> str:
        if RESULT_NAME.match(name) or name == RUN_DIR:
            return "{" + name + "}"
        raise KeyError(name)


def render_task(pipeline: Pipeline, task_id: str, values: Mapping[str, str | date]) -> RenderedTask:
    task = pipeline.tasks[task_id]
    compiled = pipeline.templates[task_id]

    def command(templates: Sequence[Template], shell: bool) -> list[str]:
        if shell:
            return [SHELL, "-c", templates[0].render(values, quote=shlex.quote)]
        return [t.literal if t.literal is not None else t.render(values) for t in templates]

    waits = []
    for wait, templates in zip(task.wait_for, compiled.waits, strict=True):
        if isinstance(wait, CheckWait):
            waits.append(describe_probe(render_probe(wait, templates, values)))
        else:
            waits.append(f"{wait.dataset}@{templates[0].render(values)}")
    for ref, (_, partition) in zip(task.inputs, compiled.inputs, strict=True):
        if ref.wait:
            waits.append(f"{ref.name}@{partition.render(values)} (input)")
    return RenderedTask(
        argv=command(compiled.command, task.shell),
        env={name: t.render(values) for name, t in compiled.env.items()},
        cwd=compiled.cwd.render(values) if compiled.cwd else None,
        cleanup=command(compiled.cleanup, task.cleanup.shell)
        if compiled.cleanup and task.cleanup
        else None,
        rollback=command(compiled.rollback, task.rollback.shell)
        if compiled.rollback and task.rollback
        else None,
        waits=waits,
        inputs=[f"{u.render(values)}@{p.render(values)}" for u, p in compiled.inputs],
        outputs=[f"{u.render(values)}@{p.render(values)}" for u, p in compiled.outputs],
    )


def render_probe(
    wait: CheckWait, templates: Sequence[Template], values: Mapping[str, str | date]
) -> dict[str, Any]:
    """A check as it runs for one run: its kind and its filled-in texts. Values substituted
    into ``sql`` become quoted SQL literals, into a ``url`` URL-quoted text, into a shell
    ``check`` shell-quoted words."""
    kind = wait.probe_kind
    if kind == "check":
        if wait.shell:
            argv = [SHELL, "-c", templates[0].render(values, quote=shlex.quote)]
        else:
            argv = [t.render(values) for t in templates]
        return {"kind": "command", "argv": argv, "not_ready_codes": list(wait.not_ready_codes)}
    if kind == "path":
        marker = templates[1].render(values) if len(templates) > 1 else None
        return {"kind": "path", "path": templates[0].render(values), "marker": marker}
    if kind == "sql":
        sql = templates[0].render(values, quote=_sql_literal)
        return {"kind": "sql", "database": wait.database, "sql": sql}
    return {"kind": "url", "url": templates[0].render(values, quote=_url_text)}


def describe_probe(probe: Mapping[str, Any]) -> str:
    """One line for people: what the check looks at."""
    kind = probe["kind"]
    if kind == "command":
        return f"check {shlex.join(probe['argv'])}"
    if kind == "path":
        marker = f" with {probe['marker']}" if probe.get("marker") else ""
        return f"path {probe['path']}{marker}"
    if kind == "sql":
        return f"query on {probe['database']}: {probe['sql']}"
    return f"url {probe['url']}"


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _url_text(text: str) -> str:
    return urllib.parse.quote(text, safe="=-_.~:")


def _text(value: ParamValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
