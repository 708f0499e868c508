"""A task as it will run for one run: every template filled in (used by executor and planner)."""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from service.spec.params import ParamValue
from service.spec.pipeline import Pipeline
from service.spec.templates import Template

SHELL = "/bin/sh"


@dataclass(frozen=True, slots=True)
class RenderedTask:
    argv: list[str]
    env: dict[str, str]
    cwd: str | None
    cleanup: list[str] | None
    rollback: list[str] | None
    waits: list[str]  # "dataset@partition" or the check command
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
) -> dict[str, str | date]:
    values: dict[str, str | date] = {
        "batch_date": batch_date,
        "run_id": run_id,
        "attempt": str(attempt),
        "task_id": task_id,
        "pipeline_id": pipeline_id,
    }
    for name, value in params.items():
        values[f"params.{name}"] = value if isinstance(value, date) else _text(value)
    return values


def render_task(pipeline: Pipeline, task_id: str, values: Mapping[str, str | date]) -> RenderedTask:
    task = pipeline.tasks[task_id]
    compiled = pipeline.templates[task_id]

    def command(templates: Sequence[Template], shell: bool) -> list[str]:
        if shell:
            return [SHELL, "-c", templates[0].render(values, quote=shlex.quote)]
        return [t.literal if t.literal is not None else t.render(values) for t in templates]

    waits = []
    for wait, templates in zip(task.wait_for, compiled.waits, strict=True):
        dataset = getattr(wait, "dataset", None)
        if dataset is not None:
            waits.append(f"{dataset}@{templates[0].render(values)}")
        else:
            waits.append(shlex.join(command(templates, getattr(wait, "shell", False))))
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


def _text(value: ParamValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
