"""The pipeline language: what data engineers write (YAML, one pipeline a file): triggers,
parameters, the SLA and the pipeline itself; the task keys are in ``tasks.py``.

The reference with an example for every key is ``docs/pipelines.md``. Models here check
shape and types; ``service/spec/validate.py`` checks everything that spans several keys
(the graph, templates, parameters, capacity).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter
from pydantic import Field, field_validator, model_validator

from service.spec.base import ID_PATTERN, PARAM_PATTERN, Spec, positive, whole_days
from service.spec.cron import next_fire_times
from service.spec.durations import Duration
from service.spec.params import ParamSpec
from service.spec.tasks import (
    Backoff,
    CheckWait,
    DatasetRef,
    DatasetWait,
    ExitCodes,
    InputRef,
    Resources,
    RetryPolicy,
    Step,
    TaskDefaults,
    TaskSpec,
)

# --- triggers --------------------------------------------------------------------------------


class DatasetTrigger(Spec):
    """A run starts when this dataset announces a partition (a ``dataset.ready`` event)."""

    dataset: str = Field(min_length=1)
    # How the partition names its day (strptime); the run's batch_date is that day + offset.
    partition_format: str = "%Y-%m-%d"
    batch_date_offset: Duration = timedelta(0)

    @field_validator("batch_date_offset")
    @classmethod
    def _days(cls, value: timedelta) -> timedelta:
        return whole_days(value)

    def batch_date_for(self, partition: str) -> date:
        """The run's batch_date for an announced partition; ValueError if it does not parse."""
        try:
            day = datetime.strptime(partition, self.partition_format).date()
        except ValueError:
            raise ValueError(
                f"partition {partition!r} of {self.dataset!r} does not match the format "
                f"{self.partition_format!r}"
            ) from None
        return day + self.batch_date_offset

    def partition_for(self, batch_date: date) -> str:
        return (batch_date - self.batch_date_offset).strftime(self.partition_format)

    @field_validator("partition_format")
    @classmethod
    def _round_trips(cls, value: str) -> str:
        sample = date(2026, 12, 31)
        try:
            parsed = datetime.strptime(sample.strftime(value), value).date()
        except ValueError as exc:
            raise ValueError(f"bad partition format {value!r}: {exc}") from None
        if parsed != sample:
            raise ValueError(f"partition format {value!r} must name year, month and day")
        return value


class Schedule(Spec):
    """Runs on a cron schedule, on the wall clock of ``timezone`` (UTC by default).
    batch_date = the scheduled day + offset. After downtime, ``catchup`` says which missed
    fires run: the newest (``latest``), the newest ``max_catchup`` (``all``), or none."""

    cron: str
    timezone: str = "UTC"
    batch_date_offset: Duration = timedelta(days=-1)
    catchup: Literal["latest", "all", "none"] = "latest"
    max_catchup: int = Field(default=10, ge=1, le=1000)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"{value!r} is not an IANA time zone such as 'Europe/Berlin'"
            ) from None
        return value

    @model_validator(mode="after")
    def _fires(self) -> Schedule:
        if "max_catchup" in self.model_fields_set and self.catchup != "all":
            raise ValueError("max_catchup goes with catchup: all")
        if croniter.is_valid(self.cron) and not _fires_at_all(self.cron, self.timezone):
            raise ValueError(f"{self.cron!r} never fires")
        return self

    @field_validator("batch_date_offset")
    @classmethod
    def _days(cls, value: timedelta) -> timedelta:
        return whole_days(value)

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        if not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a cron expression (minute hour day month weekday)")
        return value


def _fires_at_all(cron: str, timezone: str) -> bool:
    try:
        return bool(next_fire_times(cron, timezone, datetime(2026, 1, 1, tzinfo=UTC), 1))
    except CroniterError:  # it searched for a date that does not come
        return False


class Triggers(Spec):
    datasets: list[DatasetTrigger] = Field(default_factory=list)
    # Runs may also be requested by hand (HTTP, run.requested events).
    manual: bool = True
    schedule: Schedule | None = None
    # When a trigger dataset announces a new version of a partition that already ran.
    on_new_version: Literal["ignore", "rerun"] = "ignore"


# --- the pipeline ----------------------------------------------------------------------------


class Sla(Spec):
    """The run must succeed within ``deadline`` of the start (00:00 UTC) of its batch_date."""

    deadline: Duration

    @field_validator("deadline")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        return positive(value)


class PipelineSpec(Spec):
    id: str = Field(pattern=ID_PATTERN)
    version: str = "1"
    domain: str = "default"
    description: str = ""
    owner: str = ""
    triggers: Triggers = Field(default_factory=Triggers)
    params: dict[str, ParamSpec] = Field(default_factory=dict)
    max_active_runs: int = Field(default=16, ge=1)
    defaults: TaskDefaults = Field(default_factory=TaskDefaults)
    sla: Sla | None = None
    tasks: list[TaskSpec] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _apply_defaults(cls, data: Any) -> Any:
        """Give each task the pipeline's defaults for keys it does not set itself."""
        if not isinstance(data, dict) or not isinstance(data.get("tasks"), list):
            return data
        defaults = data.get("defaults")
        if not isinstance(defaults, dict) or not defaults:
            return data
        try:
            TaskDefaults.model_validate(defaults)
        except ValueError:
            return data  # reported once, at defaults.*, rather than once per task
        tasks = []
        for task in data["tasks"]:
            if isinstance(task, dict):
                merged = {**defaults, **task}
                if isinstance(task.get("env", {}), dict):
                    merged["env"] = {**defaults.get("env", {}), **task.get("env", {})}
                if isinstance(task.get("tags", []), list):
                    merged["tags"] = [*defaults.get("tags", []), *task.get("tags", [])]
                task = merged
            tasks.append(task)
        return {**data, "tasks": tasks}

    @field_validator("params")
    @classmethod
    def _param_names(cls, value: dict[str, ParamSpec]) -> dict[str, ParamSpec]:
        bad = [name for name in value if not re.match(PARAM_PATTERN, name)]
        if bad:
            raise ValueError(f"parameter names must be identifiers: {bad}")
        return dict(sorted(value.items()))  # one spelling per spec, for its hash


# Every key of the language, for "did you mean" on unknown keys.
KNOWN_KEYS = frozenset(
    name
    for model in (
        PipelineSpec,
        TaskSpec,
        Triggers,
        DatasetTrigger,
        Schedule,
        ParamSpec,
        Backoff,
        RetryPolicy,
        Resources,
        ExitCodes,
        Step,
        DatasetWait,
        CheckWait,
        DatasetRef,
        InputRef,
        Sla,
    )
    for name in model.model_fields
)
