"""What every model of the pipeline language shares: the frozen base, the enums, the id and
URI patterns, the defaults, and the small checks several keys use."""

from __future__ import annotations

import re
from datetime import timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

# Ids appear in file names, log paths, Kafka keys and URLs: keep them plain.
ID_PATTERN = r"^[A-Za-z][A-Za-z0-9_.-]{0,127}$"
# A Python task's function: package.module:function.
PYTHON_TARGET = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"
# A worker queue's name: part of a Kafka topic's name (config/kafka.py checks the same).
QUEUE_PATTERN = r"^[A-Za-z0-9_-]{1,100}$"
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


def positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be longer than 0s")
    return value


def whole_days(value: timedelta) -> timedelta:
    if value % timedelta(days=1):
        raise ValueError("must be a whole number of days, e.g. '-1d'")
    return value
