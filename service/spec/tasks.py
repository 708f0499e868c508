"""The task keys of the pipeline language: the command, its dependencies, retries, limits,
resources, exit codes, side steps (cleanup, rollback), waits, inputs and outputs.

The reference with an example for every key is ``docs/pipelines.md``.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from service.spec.base import (
    DEFAULT_GRACE_PERIOD,
    DEFAULT_STEP_TIMEOUT,
    ID_PATTERN,
    PYTHON_TARGET,
    QUEUE_PATTERN,
    URI_PATTERN,
    Spec,
    TriggerRule,
    positive,
)
from service.spec.conditions import ConditionError, parse_expectation, parse_when
from service.spec.durations import Duration


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


PROBE_KEYS = ("check", "path", "sql", "url")


class CheckWait(Spec):
    """Poll a probe until it says ready; for sources that announce nothing. Exactly one of:
    ``check`` (a command: exit 0 ready, a ``not_ready_codes`` code not yet, else an error),
    ``path`` (exists; with ``marker``, that file inside it too), ``sql`` (on a database named in
    the check_databases setting: a true first column is ready) or ``url`` (2xx ready, 404 not
    yet). The task holds no slot while it waits; after ``timeout`` it fails (wait_timeout)."""

    check: list[str] | str | None = None
    shell: bool = False
    not_ready_codes: tuple[int, ...] = (1,)
    path: str | None = None
    marker: str | None = None
    sql: str | None = None
    database: str | None = None
    url: str | None = None
    poke_interval: Duration = timedelta(minutes=5)
    # Each interval is the last one times this, up to max_poke_interval (1: a steady poke).
    poke_backoff: float = Field(default=1.0, ge=1.0, le=10.0)
    max_poke_interval: Duration = timedelta(hours=1)
    timeout: Duration = timedelta(hours=6)

    @model_validator(mode="after")
    def _one_probe(self) -> CheckWait:
        given = [key for key in PROBE_KEYS if getattr(self, key) is not None]
        if len(given) != 1:
            raise ValueError(
                f"a check wait needs exactly one of {', '.join(PROBE_KEYS)}; "
                + (f"got {', '.join(given)}" if given else "got none")
            )
        owners = {
            "shell": "check",
            "not_ready_codes": "check",
            "marker": "path",
            "database": "sql",
        }
        for key, owner in owners.items():
            if key in self.model_fields_set and getattr(self, owner) is None:
                raise ValueError(f"{key} goes with {owner}")
        if self.check is not None:
            _check_command_form(self.check, self.shell)
            if 0 in self.not_ready_codes:
                raise ValueError("0 means ready: it cannot be a not-ready code")
        if self.sql is not None and not self.database:
            raise ValueError("sql needs database: a name from the check_databases setting")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"{self.url!r} is not an http:// or https:// URL")
        if self.poke_interval > self.max_poke_interval:
            raise ValueError("poke_interval is longer than max_poke_interval")
        for key in ("poke_interval", "timeout"):
            positive(getattr(self, key))
        return self

    @property
    def probe_kind(self) -> str:
        return next(key for key in PROBE_KEYS if getattr(self, key) is not None)


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


class InputRef(DatasetRef):
    """An input: the task waits for its partition to be announced, unless ``wait: false``."""

    wait: bool = True


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
    # Remote workers started with --queue NAME take this task, and only they: a task with a
    # queue runs remote (large-memory, GPU or warehouse-network machines take their own).
    queue: str | None = Field(default=None, pattern=QUEUE_PATTERN)
    # Among queued tasks of runs of the same age, higher goes first.
    priority: int = Field(default=0, ge=-1000, le=1000)
    tags: list[str] = Field(default_factory=list)

    @field_validator("timeout")
    @classmethod
    def _positive_timeout(cls, value: timedelta | None) -> timedelta | None:
        return None if value is None else positive(value)

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
    command: list[str] | str | None = None
    # Or a Python function, package.module:function, run by the task runner (service.sdk).
    python: str | None = Field(default=None, pattern=PYTHON_TARGET)
    shell: bool = False
    # Rules on the task's own result: name -> "> 0"; a rule that fails fails the task.
    expect: dict[str, str] = Field(default_factory=dict)
    # Runs only if this holds of upstream results, else skipped: tasks.x.result.rows > 0.
    when: str | None = None
    requires: list[str] = Field(default_factory=list)
    wait_for: list[DatasetWait | CheckWait] = Field(default_factory=list)
    inputs: list[InputRef] = Field(default_factory=list)
    outputs: list[DatasetRef] = Field(default_factory=list)
    cleanup: Step | None = None
    rollback: Step | None = None

    @model_validator(mode="after")
    def _command_form(self) -> TaskSpec:
        if (self.command is None) == (self.python is None):
            raise ValueError("a task runs either a command or a python function: give one")
        if self.command is not None:
            _check_command_form(self.command, self.shell)
        elif self.shell:
            raise ValueError("shell: true is for a command, not a python function")
        try:
            for name, rule in self.expect.items():
                parse_expectation(name, rule)
            if self.when is not None:
                parse_when(self.when)
        except ConditionError as exc:
            raise ValueError(str(exc)) from None
        if self.cache and (self.executor == "remote" or self.queue is not None):
            raise ValueError(
                "cache is checked where the service runs a task: a remote task (executor: "
                "remote, or a queue) cannot be cached (remove cache, or let the service run it)"
            )
        return self


# A Python task's interpreter: the literal text {python} (braces doubled in the template),
# replaced where the attempt runs by that process's own interpreter.
SDK_PYTHON = "{{python}}"
RUNNER_PYTHON = "{python}"


def _check_command_form(command: list[str] | str, shell: bool) -> None:
    if isinstance(command, str) and not shell:
        raise ValueError("a command string needs shell: true; otherwise give an argv list")
    if isinstance(command, list) and shell:
        raise ValueError("shell: true takes the command as one string")
    if not command:
        raise ValueError("the command is empty")


def task_argv(task: TaskSpec) -> list[str] | str:
    """What a task runs: its command, or the task runner calling its python function (the
    interpreter is the one running the attempt: see service.execution.attempt)."""
    if task.python is not None:
        return [SDK_PYTHON, "-m", "service.sdk.runner", task.python]
    assert task.command is not None  # one of the two, checked above
    return task.command
