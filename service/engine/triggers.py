"""Which runs to start, and what a new run is made of. Pure: the orchestrator asks, then writes.

- A dataset partition is announced (``dataset.ready``, or a task's output): each pipeline that
  triggers on the dataset maps the partition to a batch date, and gets a run for that date once
  every one of its trigger datasets has announced its partition of it (``needs``).
- A run is requested by hand (``run.requested``): the pipeline must exist and allow it, and
  the parameters must fit its declaration.

One run per (pipeline, trigger key): the key of a dataset-triggered run is its batch date (plus
the input's version with ``on_new_version: rerun``), the key of a manual run its request.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dt_time
from typing import Any

from service.errors import SpecError
from service.spec.cron import batch_date_of
from service.spec.params import ParamValue, resolve_params
from service.spec.pipeline import Pipeline
from service.spec.render import render_probe, template_values
from service.spec.tasks import CheckWait
from service.spec.validate import suggest


@dataclass(frozen=True, slots=True)
class RunToStart:
    pipeline: Pipeline
    batch_date: date
    trigger_key: str
    reason: str  # for the run's history: what made it
    params: Mapping[str, ParamValue] = field(default_factory=dict)  # resolved
    # Other trigger partitions that must have been announced before the run may start.
    needs: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an event starts nothing (for the log and ``ignored_events``)."""

    reason: str
    pipeline_id: str | None = None
    kind: str = "refused"  # partition_mismatch, date_out_of_range, …


@dataclass(frozen=True, slots=True)
class BatchDates:
    """The batch dates a run may have (settings earliest_batch_date, latest_batch_date): a
    year 1 or 9999 is a mistake, and templates doing arithmetic on it would overflow."""

    earliest: date = date(1900, 1, 1)
    latest: date = date(2999, 12, 31)

    def refusal(self, batch_date: date, pipeline_id: str | None = None) -> Refusal | None:
        if self.earliest <= batch_date <= self.latest:
            return None
        why = (
            f"batch date {batch_date.isoformat()} is outside {self.earliest.isoformat()}.."
            f"{self.latest.isoformat()} (settings earliest_batch_date, latest_batch_date)"
        )
        return Refusal(why, pipeline_id, "date_out_of_range")


ANY_SENSIBLE_DATE = BatchDates()


# Time an attempt past its limit still gets for the stop sequence's own overheads (spawning
# the rollback, reporting), on top of cleanup, grace and rollback timeouts.
HOLD_MARGIN = timedelta(seconds=30)


@dataclass(frozen=True, slots=True)
class NewTask:
    """A task instance of a new run, with what it reserves while it runs, where it runs, and
    for how long at most (None: no limit)."""

    task_id: str
    cpu_cores: float
    memory_mb: int
    pool: str | None
    priority: int
    remote: bool
    time_limit_seconds: float | None = None  # the timeout: its own or the default
    hold_seconds: float | None = None  # cleanup + timeout + grace + rollback: the lease's cap


@dataclass(frozen=True, slots=True)
class TaskWait:
    """A dataset partition a task of a run waits for before it may be claimed (a
    ``wait_for`` dataset, or an input); after ``timeout_seconds`` queued the task fails."""

    task_id: str
    dataset: str
    partition: str
    timeout_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class TaskCheck:
    """A probe a task of a run polls before it may be claimed (a ``wait_for`` check)."""

    task_id: str
    position: int  # its place in the task's wait_for
    probe: Mapping[str, Any]  # rendered: see spec/render.py render_probe
    poke_seconds: float
    poke_backoff: float
    max_poke_seconds: float
    timeout_seconds: float


def runs_for_partition(
    pipelines: Iterable[Pipeline],
    dataset: str,
    partition: str,
    version: str,
    dates: BatchDates = ANY_SENSIBLE_DATE,
) -> tuple[list[RunToStart], list[Refusal]]:
    """The runs ``dataset``'s ``partition`` (at ``version``) may start, one per pipeline that
    triggers on the dataset, and the pipelines whose partition format it does not match or
    whose batch date it puts out of range."""
    starts: list[RunToStart] = []
    refusals: list[Refusal] = []
    for pipeline in pipelines:
        triggers = pipeline.spec.triggers
        trigger = next(t for t in triggers.datasets if t.dataset == dataset)
        try:
            batch_date = trigger.batch_date_for(partition)
        except (ValueError, OverflowError) as exc:
            refusals.append(Refusal(str(exc), pipeline.id, "partition_mismatch"))
            continue
        out_of_range = dates.refusal(batch_date, pipeline.id)
        if out_of_range is not None:
            refusals.append(out_of_range)
            continue
        key = f"batch_date:{batch_date.isoformat()}"
        if triggers.on_new_version == "rerun":
            key += f"|{dataset}@{version}"  # a new version of the input: a new run
        needs = tuple(
            (other.dataset, other.partition_for(batch_date))
            for other in triggers.datasets
            if other is not trigger
        )
        starts.append(
            RunToStart(
                pipeline,
                batch_date,
                key,
                f"{dataset} {partition} is ready",
                resolve_params(pipeline.spec.params, {}),
                needs,
            )
        )
    return starts, refusals


def run_for_request(
    pipeline: Pipeline | None,
    *,
    pipeline_id: str,
    deployed: Iterable[str],
    batch_date: date,
    params: Mapping[str, object],
    requested_by: str,
    reason: str | None,
    trigger_key: str,
    dates: BatchDates = ANY_SENSIBLE_DATE,
) -> RunToStart | Refusal:
    """The run a manual request asks for, or why it cannot have it."""
    if pipeline is None:
        return Refusal(f"no pipeline {pipeline_id!r}" + suggest(pipeline_id, deployed))
    out_of_range = dates.refusal(batch_date, pipeline.id)
    if out_of_range is not None:
        return out_of_range
    if not pipeline.spec.triggers.manual:
        return Refusal(f"{pipeline.id} does not allow manual runs", pipeline.id)
    try:
        resolved = resolve_params(pipeline.spec.params, params)
    except SpecError as exc:
        return Refusal("; ".join(str(p) for p in exc.problems), pipeline.id)
    why = f"requested by {requested_by}" + (f": {reason}" if reason else "")
    return RunToStart(pipeline, batch_date, trigger_key, why, resolved)


def run_for_fire(
    pipeline: Pipeline, fire_at: datetime, dates: BatchDates = ANY_SENSIBLE_DATE
) -> RunToStart | Refusal:
    """The run a fire of the pipeline's schedule starts: one per (pipeline, fire time)."""
    schedule = pipeline.spec.triggers.schedule
    if schedule is None:
        return Refusal(f"{pipeline.id} has no schedule", pipeline.id)
    batch_date = batch_date_of(fire_at, schedule.timezone, schedule.batch_date_offset)
    out_of_range = dates.refusal(batch_date, pipeline.id)
    if out_of_range is not None:
        return out_of_range
    at = fire_at.astimezone(UTC).isoformat()
    return RunToStart(
        pipeline,
        batch_date,
        f"schedule:{at}",
        f"scheduled for {at} ({schedule.cron}, {schedule.timezone})",
        resolve_params(pipeline.spec.params, {}),
    )


def new_run_id(now: datetime, suffix: str) -> str:
    """``20261121-142233-8a3f``: the UTC time of creation and a random suffix."""
    return f"{now.astimezone(UTC):%Y%m%d-%H%M%S}-{suffix}"


def new_tasks(
    pipeline: Pipeline, remote_by_default: bool, default_timeout: timedelta | None = None
) -> list[NewTask]:
    """Every task of a new run, in topological order; a task without a ``timeout`` of its
    own gets ``default_timeout`` (the default_task_timeout setting)."""
    found = []
    for task_id in pipeline.graph.order:
        task = pipeline.tasks[task_id]
        limit = task.timeout or default_timeout
        hold = None
        if limit is not None:
            steps = [step.timeout for step in (task.cleanup, task.rollback) if step is not None]
            hold = limit + task.grace_period + sum(steps, timedelta(0)) + HOLD_MARGIN
        found.append(
            NewTask(
                task_id,
                task.resources.cpu_cores,
                task.resources.memory_mb,
                task.resources.pool,
                task.priority,
                # A cached task runs where its cache is checked: in the service.
                task.executor == "remote"
                or task.queue is not None
                or (remote_by_default and not task.cache),
                None if limit is None else limit.total_seconds(),
                None if hold is None else hold.total_seconds(),
            )
        )
    return found


def task_waits(
    pipeline: Pipeline, run_id: str, batch_date: date, params: Mapping[str, ParamValue]
) -> tuple[list[TaskWait], list[TaskCheck]]:
    """What each task of a new run waits for: dataset partitions (``wait_for`` datasets, and
    inputs unless ``wait: false``) and checks to poll."""
    waits: list[TaskWait] = []
    checks: list[TaskCheck] = []
    for task_id, task in pipeline.tasks.items():
        compiled = pipeline.templates[task_id]
        values = template_values(
            batch_date=batch_date,
            run_id=run_id,
            attempt=1,
            task_id=task_id,
            pipeline_id=pipeline.id,
            params=params,
        )
        for position, (wait, texts) in enumerate(zip(task.wait_for, compiled.waits, strict=True)):
            if isinstance(wait, CheckWait):
                checks.append(
                    TaskCheck(
                        task_id,
                        position,
                        render_probe(wait, texts, values),
                        wait.poke_interval.total_seconds(),
                        wait.poke_backoff,
                        wait.max_poke_interval.total_seconds(),
                        wait.timeout.total_seconds(),
                    )
                )
                continue
            timeout = wait.timeout.total_seconds() if wait.timeout else None
            waits.append(TaskWait(task_id, wait.dataset, texts[0].render(values), timeout))
        for ref, (_, partition) in zip(task.inputs, compiled.inputs, strict=True):
            if ref.wait:
                waits.append(TaskWait(task_id, ref.name, partition.render(values)))
    return waits, checks


def deadline_for(pipeline: Pipeline, batch_date: date) -> datetime | None:
    """When a run must have succeeded: 00:00 UTC of its batch date plus ``sla.deadline``."""
    sla = pipeline.spec.sla
    if sla is None:
        return None
    return datetime.combine(batch_date, dt_time(0), tzinfo=UTC) + sla.deadline


def stored_params(params: Mapping[str, ParamValue]) -> dict[str, str | int | float | bool]:
    """Resolved parameters as the run row keeps them (dates as YYYY-MM-DD)."""
    return {
        name: value.isoformat() if isinstance(value, date) else value
        for name, value in params.items()
    }


def ready_to_start(start: RunToStart, announced: Iterable[str]) -> bool:
    """Whether every partition the run needs is among the ``announced`` datasets."""
    return {dataset for dataset, _ in start.needs} <= set(announced)
