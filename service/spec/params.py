"""Run parameters: declared with a type in the pipeline, given per run (CLI, API, events)."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from datetime import date
from typing import Any

from pydantic import model_validator

from service.errors import SpecError
from service.spec.base import ParamType, Spec

ParamValue = str | int | float | bool | date
_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


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
            coerce(self, self.default)
        return self


def coerce(spec: ParamSpec, value: Any) -> ParamValue:
    """``value`` as the declared type (command-line strings are parsed); ValueError if not."""
    kind = spec.type.value
    result: ParamValue
    if kind == "string":
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {value!r}")
        result = value
    elif kind == "boolean":
        if isinstance(value, bool):
            result = value
        elif isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            result = value.lower() in _TRUE
        else:
            raise ValueError(f"expected true or false, got {value!r}")
    elif kind == "integer":
        result = _number(value, int)
    elif kind == "number":
        result = _number(value, float)
    else:
        result = _date(value)
    if spec.choices is not None and result not in spec.choices:
        raise ValueError(f"{result!r} is not one of {spec.choices}")
    return result


def resolve_params(
    declared: Mapping[str, ParamSpec], given: Mapping[str, Any], source: str = "params"
) -> dict[str, ParamValue]:
    """Declared defaults overlaid with ``given``; every problem at once as a SpecError."""
    problems = []
    values: dict[str, ParamValue] = {}
    for name in given:
        if name not in declared:
            match = difflib.get_close_matches(name, list(declared), n=1)
            hint = f" (did you mean {match[0]!r}?)" if match else f" (declared: {sorted(declared)})"
            problems.append(f"{source}: unknown parameter {name!r}{hint}")
    for name, spec in declared.items():
        if name in given:
            try:
                values[name] = coerce(spec, given[name])
            except ValueError as exc:
                problems.append(f"{source}.{name}: {exc}")
        elif spec.default is not None:
            values[name] = coerce(spec, spec.default)
        else:
            problems.append(f"{source}.{name}: required parameter not given")
    if problems:
        raise SpecError(problems)
    return values


def _number(value: Any, kind: type[int] | type[float]) -> int | float:
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    if isinstance(value, int | float) and (kind is float or isinstance(value, int)):
        return kind(value)
    if isinstance(value, str):
        try:
            return kind(value)
        except ValueError:
            pass
    raise ValueError(f"expected {'an integer' if kind is int else 'a number'}, got {value!r}")


def _date(value: Any) -> date:
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError(f"expected a date (YYYY-MM-DD), got {value!r}")
