"""The pipeline language: what data engineers write (YAML, one pipeline a file).

The reference with an example for every key is ``docs/pipelines.md``. Models here check
shape and types; ``service/spec/validate.py`` checks everything that spans several keys
(the graph, templates, parameters, capacity).
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from service.spec.durations import Duration

# Ids appear in file names, log paths, Kafka keys and URLs: keep them plain.
ID_PATTERN = r"^[A-Za-z][A-Za-z0-9_.-]{0,127}$"
PARAM_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
URI_PATTERN = re.compile(r"^[a-z][a-z0-9+.-]*://\S+$")

DEFAULT_GRACE_PERIOD = timedelta(seconds=30)
DEFAULT_STEP_TIMEOUT = timedelta(minutes=10)


class Spec(BaseModel):
    # Frozen: a spec never changes once loaded, and default sub-models can be shared.
    model_config = ConfigDict(extra="forbid", frozen=True)


class TriggerRule(StrEnum):
    """When a task may run, given how its upstream tasks ended."""

    ALL_SUCCESS = "all_success"  # every upstream succeeded (or was skipped)
    ALL_DONE = "all_done"  # every upstream ended, however
    ALL_FAILED = "all_failed"  # every upstream ended badly
    ONE_FAILED = "one_failed"  # at least one upstream ended badly (runs at once)
    ONE_SUCCESS = "one_success"  # at least one upstream succeeded (runs at once)
    NONE_FAILED = "none_failed"  # every upstream ended, none badly


class ParamType(StrEnum):
    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    DATE = "date"


# --- triggers --------------------------------------------------------------------------------


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be longer than 0s")
    return value


def _whole_days(value: timedelta) -> timedelta:
    if value % timedelta(days=1):
        raise ValueError("must be a whole number of days, e.g. '-1d'")
    return value


class DatasetTrigger(Spec):
    """A run starts when this dataset announces a partition (a ``dataset.ready`` event)."""

    dataset: str = Field(min_length=1)
    # How the partition names its day (strptime); the run's batch_date is that day + offset.
    partition_format: str = "%Y-%m-%d"
    batch_date_offset: Duration = timedelta(0)

    @field_validator("batch_date_offset")
    @classmethod
    def _days(cls, value: timedelta) -> timedelta:
        return _whole_days(value)

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
    """Runs on a cron schedule, in UTC. batch_date = the scheduled day + offset."""

    cron: str
    batch_date_offset: Duration = timedelta(days=-1)

    @field_validator("batch_date_offset")
    @classmethod
    def _days(cls, value: timedelta) -> timedelta:
        return _whole_days(value)

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        if not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a cron expression (minute hour day month weekday)")
        return value


class Triggers(Spec):
    datasets: list[DatasetTrigger] = Field(default_factory=list)
    # Runs may also be requested by hand (HTTP, run.requested events).
    manual: bool = True
    schedule: Schedule | None = None
    # When a trigger dataset announces a new version of a partition that already ran.
    on_new_version: Literal["ignore", "rerun"] = "ignore"


# --- parameters ------------------------------------------------------------------------------


class ParamSpec(Spec):
    type: ParamType = ParamType.STRING
    description: str = ""
    default: str | int | float | bool | date | None = None
    # Required parameters have no default and must be given for every run.
    required: bool = False
    choices: list[str | int | float] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ParamSpec:
        if self.required and self.default is not None:
            raise ValueError("a required parameter cannot have a default")
        if not self.required and self.default is None:
            raise ValueError("give a default, or mark the parameter required: true")
        if self.default is not None:
            from service.spec.params import coerce

            coerce(self, self.default)
        return self


# --- tasks -----------------------------------------------------------------------------------


class Backoff(Spec):
    """Delay before attempt n+1: min(base * factor^(n-1), max), then jitter."""

    base: Duration = timedelta(seconds=30)
    factor: float = Field(default=2.0, ge=1.0, le=10.0)
    max: Duration = timedelta(minutes=10)

    @model_validator(mode="after")
    def _ordered(self) -> Backoff:
        if self.base > self.max:
            raise ValueError("backoff base is longer than its max")
        return self


class RetryPolicy(Spec):
    max_attempts: int = Field(default=1, ge=1, le=100)
    backoff: Backoff = Backoff()
    # Each delay is scaled by a random factor in [1 - jitter, 1 + jitter].
    jitter: float = Field(default=0.1, ge=0.0, le=1.0)
    # Exit codes worth another attempt; unset means every failing code except fatal ones.
    on_exit_codes: tuple[int, ...] | None = None
    on_timeout: bool = True

    @field_validator("on_exit_codes")
    @classmethod
    def _not_success(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value and 0 in value:
            raise ValueError("0 means success: it cannot be retried")
        return value


class Resources(Spec):
    memory_mb: int = Field(default=256, ge=1)
    cpu_cores: float = Field(default=1.0, gt=0)
    # A named pool of slots shared across pipelines (e.g. connections to one database).
    pool: str | None = None


class ExitCodes(Spec):
    """Exit codes with a meaning beyond success (0) and retryable failure (anything else)."""

    skip: tuple[int, ...] = ()
    fatal: tuple[int, ...] = ()

    @model_validator(mode="after")
    def _disjoint(self) -> ExitCodes:
        if 0 in self.skip or 0 in self.fatal:
            raise ValueError("0 means success: it cannot be a skip or fatal code")
        both = sorted(set(self.skip) & set(self.fatal))
        if both:
            raise ValueError(f"codes {both} cannot mean both skip and fatal")
        return self


def _shorthand_command(value: Any) -> Any:
    """A step may be written as just its command (a list, or a string with shell)."""
    return {"command": value} if isinstance(value, list | str) else value


class Step(Spec):
    """A side command: ``cleanup`` before every attempt, ``rollback`` after a failure."""

    command: list[str] | str
    shell: bool = False
    timeout: Duration = DEFAULT_STEP_TIMEOUT

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return _shorthand_command(value)

    @model_validator(mode="after")
    def _command_form(self) -> Step:
        _check_command_form(self.command, self.shell)
        return self


class DatasetWait(Spec):
    """Wait until a dataset partition is announced (by an event or a pipeline's output)."""

    dataset: str = Field(min_length=1)
    partition: str = "{batch_date}"
    timeout: Duration | None = None


class CheckWait(Spec):
    """Poll a command until it exits 0; for sources that announce nothing. Holds no slot."""

    check: list[str] | str
    shell: bool = False
    poke_interval: Duration = timedelta(minutes=5)
    timeout: Duration = timedelta(hours=6)

    @model_validator(mode="after")
    def _command_form(self) -> CheckWait:
        _check_command_form(self.check, self.shell)
        return self


class DatasetRef(Spec):
    """An input or output: a URI, named as a dataset other pipelines can wait for."""

    uri: str = Field(pattern=URI_PATTERN.pattern)
    dataset: str | None = None  # defaults to the URI
    partition: str = "{batch_date}"

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"uri": value} if isinstance(value, str) else value

    @field_validator("uri")
    @classmethod
    def _is_uri(cls, value: str) -> str:
        if not URI_PATTERN.match(value):
            raise ValueError(
                f"{value!r} is not a URI such as pg://db/schema.table or s3://bucket/p"
            )
        return value

    @property
    def name(self) -> str:
        return self.dataset or self.uri


class TaskDefaults(Spec):
    """Values every task of the pipeline gets unless it sets its own (env and tags merge)."""

    env: dict[str, str] = Field(default_factory=dict)
    # Variables of the service's own environment passed on by name (e.g. a cloud profile);
    # nothing else of it reaches the task.
    inherit_env: list[str] = Field(default_factory=list)
    cwd: str | None = None
    trigger_rule: TriggerRule = TriggerRule.ALL_SUCCESS
    retry: RetryPolicy = RetryPolicy()
    timeout: Duration | None = None
    grace_period: Duration = DEFAULT_GRACE_PERIOD
    resources: Resources = Resources()
    exit_codes: ExitCodes = ExitCodes()
    cache: bool = False
    executor: Literal["local", "remote"] = "local"
    # Among queued tasks of runs of the same age, higher goes first.
    priority: int = Field(default=0, ge=-1000, le=1000)
    tags: list[str] = Field(default_factory=list)

    @field_validator("timeout")
    @classmethod
    def _positive_timeout(cls, value: timedelta | None) -> timedelta | None:
        return None if value is None else _positive(value)

    @field_validator("inherit_env")
    @classmethod
    def _variable_names(cls, value: list[str]) -> list[str]:
        bad = [name for name in value if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name)]
        if bad:
            raise ValueError(f"not environment variable names: {bad}")
        return value

    @field_validator("env")
    @classmethod
    def _sorted_env(cls, value: dict[str, str]) -> dict[str, str]:
        return dict(sorted(value.items()))  # one spelling per spec, for its hash


class TaskSpec(TaskDefaults):
    id: str = Field(pattern=ID_PATTERN)
    description: str = ""
    # An argv list; a single string is run by /bin/sh -c only with shell: true.
    command: list[str] | str
    shell: bool = False
    requires: list[str] = Field(default_factory=list)
    wait_for: list[DatasetWait | CheckWait] = Field(default_factory=list)
    inputs: list[DatasetRef] = Field(default_factory=list)
    outputs: list[DatasetRef] = Field(default_factory=list)
    cleanup: Step | None = None
    rollback: Step | None = None

    @model_validator(mode="after")
    def _command_form(self) -> TaskSpec:
        _check_command_form(self.command, self.shell)
        return self


def _check_command_form(command: list[str] | str, shell: bool) -> None:
    if isinstance(command, str) and not shell:
        raise ValueError("a command string needs shell: true; otherwise give an argv list")
    if isinstance(command, list) and shell:
        raise ValueError("shell: true takes the command as one string")
    if not command:
        raise ValueError("the command is empty")


# --- the pipeline ----------------------------------------------------------------------------


class Sla(Spec):
    """The run must succeed within ``deadline`` of the start (00:00 UTC) of its batch_date."""

    deadline: Duration

    @field_validator("deadline")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        return _positive(value)


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
        Sla,
    )
    for name in model.model_fields
)
