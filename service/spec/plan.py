"""Dry runs: what a run of a pipeline would do for a partition, computed without side effects."""

from __future__ import annotations

import functools
import math
import shlex
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from service.errors import Problem, SpecError
from service.spec.cron import batch_date_of as cron_batch_date
from service.spec.cron import next_fire_times
from service.spec.durations import format_duration
from service.spec.loader import gc_paused
from service.spec.params import ParamValue, resolve_params
from service.spec.pipeline import Pipeline
from service.spec.render import RenderedTask, ShownResults, render_task, template_values
from service.spec.tasks import RetryPolicy, TaskSpec
from service.spec.validate import NodeCapacity, suggest

PLANNED_RUN_ID = "<run_id>"
NEXT_FIRES = 5  # schedule fire times a plan shows


@dataclass(frozen=True, slots=True)
class PlannedTask:
    task_id: str
    action: str  # "run", or "keep" when --resume-from leaves an upstream task as it was
    trigger_rule: str
    requires: list[str]
    rendered: RenderedTask
    executor: str
    cpu_cores: float
    memory_mb: int
    pool: str | None
    timeout: str
    retry: str
    cache: str | None
    expect: str = ""  # its rules on its own result
    when: str = ""  # its condition on upstream results (skipped when false)
    queue: str | None = None


@dataclass(frozen=True, slots=True)
class Wave:
    number: int
    tasks: list[PlannedTask]
    cpu_cores: float  # of the tasks that would run
    memory_mb: int
    rounds: int  # how many batches the node capacity needs for them, at best


@dataclass(frozen=True, slots=True)
class Plan:
    pipeline_id: str
    spec_hash: str
    partition: str
    batch_date: date
    params: dict[str, ParamValue]
    resume_from: str | None
    capacity: NodeCapacity | None
    waves: list[Wave]
    # With a schedule: its next fire times (UTC) and the batch date each would run.
    next_fires: list[tuple[datetime, date]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def batch_date_of(pipeline: Pipeline, partition: str) -> date:
    """Map a partition as the pipeline's first dataset trigger does, else read it as a date."""
    triggers = pipeline.spec.triggers.datasets
    try:
        if triggers:
            return triggers[0].batch_date_for(partition)
        return date.fromisoformat(partition)
    except ValueError as exc:
        raise SpecError([Problem(str(exc), "partition")]) from None


def make_plan(
    pipeline: Pipeline,
    partition: str,
    given_params: Mapping[str, Any],
    resume_from: str | None = None,
    capacity: NodeCapacity | None = None,
    now: datetime | None = None,
) -> Plan:
    """The plan; with ``now``, also the schedule's next fire times after it."""
    with gc_paused():
        plan = _make_plan(pipeline, partition, given_params, resume_from, capacity)
    schedule = pipeline.spec.triggers.schedule
    if schedule is None or now is None:
        return plan
    fires = next_fire_times(schedule.cron, schedule.timezone, now, NEXT_FIRES)
    plan.next_fires.extend(
        (at, cron_batch_date(at, schedule.timezone, schedule.batch_date_offset)) for at in fires
    )
    return plan


def _make_plan(
    pipeline: Pipeline,
    partition: str,
    given_params: Mapping[str, Any],
    resume_from: str | None,
    capacity: NodeCapacity | None,
) -> Plan:
    if resume_from is not None and resume_from not in pipeline.tasks:
        raise SpecError(
            [
                Problem(
                    f"no task {resume_from!r} in {pipeline.id}"
                    f"{suggest(resume_from, pipeline.tasks)}",
                    "--resume-from",
                )
            ]
        )
    batch_date = batch_date_of(pipeline, partition)
    params = resolve_params(pipeline.spec.params, given_params, source="--param")
    rerun = pipeline.graph.downstream_of(resume_from) if resume_from else set(pipeline.tasks)
    base = template_values(
        batch_date=batch_date,
        run_id=PLANNED_RUN_ID,
        attempt=1,
        task_id="",
        pipeline_id=pipeline.id,
        params=params,
    )
    waves = []
    for number, task_ids in enumerate(pipeline.graph.waves(), start=1):
        tasks = []
        for task_id in task_ids:
            rendered = render_task(pipeline, task_id, ShownResults(base, task_id=task_id))
            tasks.append(_planned(pipeline.tasks[task_id], rendered, task_id in rerun))
        running = [t for t in tasks if t.action == "run"]
        cpu = sum(t.cpu_cores for t in running)
        memory = sum(t.memory_mb for t in running)
        rounds = 0
        if running:
            rounds = (
                1
                if capacity is None
                else max(
                    1, math.ceil(cpu / capacity.cpu_cores), math.ceil(memory / capacity.memory_mb)
                )
            )
        waves.append(Wave(number, tasks, cpu, memory, rounds))
    return Plan(
        pipeline.id, pipeline.spec_hash, partition, batch_date, params, resume_from, capacity, waves
    )


def _planned(task: TaskSpec, rendered: RenderedTask, runs: bool) -> PlannedTask:
    return PlannedTask(
        task_id=task.id,
        action="run" if runs else "keep",
        trigger_rule=str(task.trigger_rule),
        requires=list(task.requires),
        rendered=rendered,
        executor=task.executor,
        cpu_cores=task.resources.cpu_cores,
        memory_mb=task.resources.memory_mb,
        pool=task.resources.pool,
        timeout=_timeout_text(task.timeout, task.grace_period),
        retry=_retry_text(task.retry),
        cache=CACHE_NOTE if task.cache else None,
        expect=", ".join(f"{name} {rule.strip()}" for name, rule in task.expect.items()),
        when=f"{task.when} (else skipped)" if task.when else "",
        queue=task.queue,
    )


CACHE_NOTE = (
    "skipped (cache_hit) if an earlier success had the same cache key: this spec "
    "version, this command and the versions of its inputs, checked when it starts"
)


@functools.lru_cache(maxsize=256)
def _retry_text(retry: RetryPolicy) -> str:
    if retry.max_attempts == 1:
        return "no retry"
    backoff = retry.backoff
    return (
        f"{retry.max_attempts} attempts, backoff {format_duration(backoff.base)}"
        f" x{backoff.factor:g} up to {format_duration(backoff.max)}, jitter {retry.jitter:.0%}"
    )


@functools.lru_cache(maxsize=256)
def _timeout_text(timeout: timedelta | None, grace: timedelta) -> str:
    limit = format_duration(timeout) if timeout else "the default_task_timeout_seconds setting"
    return f"{limit}, grace {format_duration(grace)}"


def format_plan(plan: Plan) -> str:
    lines = [
        f"Plan for {plan.pipeline_id} (spec {plan.spec_hash[:12]}): partition {plan.partition} "
        f"-> batch_date {plan.batch_date.isoformat()}",
        "params: " + (", ".join(f"{k}={v}" for k, v in plan.params.items()) or "none"),
    ]
    if plan.next_fires:
        schedule = ", ".join(f"{at:%Y-%m-%d %H:%M} UTC ({day})" for at, day in plan.next_fires)
        lines.append(f"next scheduled runs (batch date): {schedule}")
    if plan.resume_from:
        lines.append(
            f"resume from {plan.resume_from}: it and everything downstream re-run; "
            "tasks marked keep stay as they ended"
        )
    lines.append("A dry run: nothing is executed or written.")
    for wave in plan.waves:
        fits = f", {wave.rounds} round(s) at node capacity" if plan.capacity else ""
        lines.append("")
        lines.append(
            f"wave {wave.number}: {len(wave.tasks)} task(s), "
            f"{wave.cpu_cores:g} cores, {wave.memory_mb} MB{fits}"
        )
        for task in wave.tasks:
            rule = f" [{task.trigger_rule}]" if task.requires else ""
            after = f" after {', '.join(task.requires)}" if task.requires else ""
            lines.append(f"  {task.task_id}: {task.action}{rule}{after}")
            lines.append(f"      $ {_shell_words(task.rendered.argv)}")
            lines.extend(_details(task))
    return "\n".join(lines)


def _details(task: PlannedTask) -> list[str]:
    rendered = task.rendered
    details = [
        ("env", ", ".join(f"{k}={v}" for k, v in rendered.env.items())),
        ("cwd", rendered.cwd or ""),
        ("waits for", "; ".join(rendered.waits)),
        ("inputs", ", ".join(rendered.inputs)),
        ("outputs", ", ".join(rendered.outputs)),
        ("cleanup", _shell_words(rendered.cleanup) if rendered.cleanup else ""),
        ("rollback", _shell_words(rendered.rollback) if rendered.rollback else ""),
        (
            "resources",
            f"{task.cpu_cores:g} cores, {task.memory_mb} MB"
            + (f", pool {task.pool}" if task.pool else "")
            + (", remote executor" if task.executor == "remote" else "")
            + (f", queue {task.queue}" if task.queue else ""),
        ),
        ("timeout", task.timeout),
        ("retry", task.retry),
        ("cache", task.cache or ""),
        ("expect", task.expect),
        ("when", task.when),
    ]
    return [f"      {name}: {value}" for name, value in details if value]


def _shell_words(argv: list[str]) -> str:
    return shlex.join(argv)
