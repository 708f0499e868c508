"""Placeholders in commands, env values, paths and partitions. No eval, no code.

Grammar of a placeholder (spaces allowed between the parts)::

    {NAME [+|- AMOUNT UNIT]... [:STRFTIME]}

- NAME: ``batch_date``, ``run_id``, ``attempt``, ``task_id``, ``pipeline_id``,
  ``params.NAME`` (a declared parameter) or ``tasks.TASK.result.NAME`` (a value an upstream
  task reported) or ``run_dir`` (the run's working directory) — these two only in commands,
  env values and working directories, rendered when the attempt starts;
- date arithmetic (``+ 1d``, ``- 2w``) and a strftime format (``:%Y%m%d``) apply only to
  dates: ``batch_date`` and parameters of type ``date``. Dates are calendar dates, in UTC;
- ``{{`` and ``}}`` stand for literal braces.

Templates are compiled once when a pipeline is loaded; a bad one is a validation error.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Literal

Kind = Literal["date", "text"]

# Names every run provides, and their kinds.
RUN_NAMES: Mapping[str, Kind] = {
    "batch_date": "date",
    "run_id": "text",
    "attempt": "text",
    "task_id": "text",
    "pipeline_id": "text",
}
UNIT_DAYS = {"d": 1, "w": 7}
# The run's working directory, where the names include it (rendered when an attempt starts).
RUN_DIR = "run_dir"
# A value an upstream task reported: allowed where the names include RESULTS.
RESULTS = "tasks.*.result.*"
RESULT_NAME = re.compile(r"^tasks\.([A-Za-z][A-Za-z0-9_.]*?)\.result\.([A-Za-z_][A-Za-z0-9_]*)$")

_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_BODY = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*((?:[+-]\s*\d+\s*[A-Za-z]+\s*)*)(?::(.*))?$")
_OFFSET = re.compile(r"([+-])\s*(\d+)\s*([A-Za-z]+)")
# strftime directives that mean something for a date (glibc passes unknown ones through).
_DIRECTIVE = re.compile(r"%(-?[aAwdbBmyYjUWuVGgCeDFxh]|%)")
_ANY_DIRECTIVE = re.compile(r"%-?.?")


class TemplateError(ValueError):
    """A template that cannot be compiled; the message says what and where in the text."""


@dataclass(frozen=True, slots=True)
class Placeholder:
    name: str
    offset_days: int = 0
    fmt: str | None = None


@dataclass(frozen=True, slots=True)
class Template:
    text: str
    parts: tuple[str | Placeholder, ...]
    # The text itself when it has no placeholder: rendering is then free.
    literal: str | None = None
    names: frozenset[str] = field(init=False)  # of its placeholders (asked for often)

    def __post_init__(self) -> None:
        names = frozenset(p.name for p in self.parts if isinstance(p, Placeholder))
        object.__setattr__(self, "names", names)

    def render(
        self, values: Mapping[str, str | date], quote: Callable[[str], str] | None = None
    ) -> str:
        """Fill every placeholder; ``quote`` wraps each substituted value (shell commands)."""
        if self.literal is not None:
            return self.literal
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            try:
                value = values[part.name]
            except KeyError:
                raise TemplateError(_missing(part.name)) from None
            text = (
                _format_date(value, part.offset_days, part.fmt)
                if isinstance(value, date)
                else value
            )
            out.append(quote(text) if quote else text)
        return "".join(out)


@functools.lru_cache(maxsize=1024)
def _format_date(value: date, offset_days: int, fmt: str | None) -> str:
    """Dates repeat across a run's tasks: format each (date, offset, format) once."""
    moved = value + timedelta(days=offset_days)
    return moved.strftime(fmt) if fmt else moved.isoformat()


def compile_template(
    text: str, names: Mapping[str, Kind], bodies: dict[str, Placeholder] | None = None
) -> Template:
    """Parse ``text``; every placeholder must name one of ``names`` and fit its kind.

    ``bodies`` caches parsed placeholders across calls with the same ``names``.
    """
    if "{" not in text and "}" not in text:
        return Template(text, (text,) if text else (), literal=text)
    parts: list[str | Placeholder] = []
    literal: list[str] = []
    position = 0
    for match in _PLACEHOLDER.finditer(text):
        literal.append(text[position : match.start()])
        position = match.end()
        token = match.group(0)
        if token in ("{{", "}}"):
            literal.append(token[0])
            continue
        if match.group(1) is None:
            raise TemplateError(
                f"unmatched {token!r} at character {match.start() + 1} (write {token * 2} for a "
                f"literal brace)"
            )
        if literal:
            parts.append("".join(literal))
            literal = []
        body = match.group(1)
        placeholder = bodies.get(body) if bodies is not None else None
        if placeholder is None:
            placeholder = _placeholder(body, names)
            if bodies is not None:
                bodies[body] = placeholder
        parts.append(placeholder)
    literal.append(text[position:])
    if "".join(literal):
        parts.append("".join(literal))
    plain = None if any(isinstance(p, Placeholder) for p in parts) else "".join(map(str, parts))
    return Template(text, tuple(parts), literal=plain)


def _placeholder(body: str, names: Mapping[str, Kind]) -> Placeholder:
    match = _BODY.match(body)
    if not match:
        raise TemplateError(
            f"{{{body}}} is not a placeholder: expected {{name}}, {{name + 1d}} or {{name:%Y%m%d}}"
        )
    name, arithmetic, fmt = match.group(1), match.group(2), match.group(3)
    if name not in names and not (RESULTS in names and RESULT_NAME.match(name)):
        raise TemplateError(f"unknown placeholder {{{name}}}{_suggest(name, names)}")
    kind = names.get(name, "text")
    offset = 0
    for sign, amount, unit in _OFFSET.findall(arithmetic or ""):
        if unit not in UNIT_DAYS:
            raise TemplateError(
                f"{{{body}}}: unknown unit {unit!r} in date arithmetic (use d or w)"
            )
        offset += (1 if sign == "+" else -1) * int(amount) * UNIT_DAYS[unit]
    if kind != "date" and (arithmetic or fmt is not None):
        raise TemplateError(
            f"{{{body}}}: date arithmetic and formats apply only to dates, and {name} is not a date"
        )
    if fmt is not None:
        fmt = fmt.strip()
        if not fmt:
            raise TemplateError(f"{{{body}}}: empty date format after ':'")
        unknown = [d for d in _ANY_DIRECTIVE.findall(fmt) if not _DIRECTIVE.fullmatch(d)]
        if unknown:
            raise TemplateError(
                f"{{{body}}}: {unknown[0]!r} is not a date format directive (e.g. %Y %m %d %j %a)"
            )
    return Placeholder(name, offset, fmt)


def _missing(name: str) -> str:
    found = RESULT_NAME.match(name)
    if found:
        return f"{{{name}}}: task {found[1]!r} reported no {found[2]!r}"
    return f"{{{name}}} has no value here"


def _suggest(name: str, names: Mapping[str, Kind]) -> str:
    match = difflib.get_close_matches(name, list(names), n=1)
    if match:
        return f" (did you mean {{{match[0]}}}?)"
    if name.startswith("params."):
        declared = sorted(n for n in names if n.startswith("params."))
        return f": declare it under params ({', '.join(declared) or 'none declared'})"
    return ""
