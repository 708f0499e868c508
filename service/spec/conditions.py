"""Conditions on what tasks report: ``expect:`` rules on a task's own result (``rows: "> 0"``)
and ``when:`` conditions on upstream results (``tasks.count.result.rows > 1000``). Parsed
once, when a pipeline is loaded; evaluated by the engine. No eval: a comparison is a name, one
of ``== != > >= < <=`` and a JSON literal (a number, a quoted string, true, false, null);
``when:`` joins comparisons with ``and``."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}
_RULE = re.compile(r"^\s*(==|!=|>=|<=|>|<)\s*(.+?)\s*$")
_WHEN = re.compile(
    r"^\s*tasks\.([A-Za-z][A-Za-z0-9_.-]*?)\.result\.([A-Za-z_][A-Za-z0-9_]*)\s*"
    r"(==|!=|>=|<=|>|<)\s*(.+?)\s*$"
)
WHEN_FORM = "tasks.<task>.result.<name> <op> <value>, joined by 'and'"


class ConditionError(ValueError):
    """A rule or condition that cannot be parsed; the message says what is wanted."""


@dataclass(frozen=True, slots=True)
class Comparison:
    """``name op value`` on a result: ``rows > 0``."""

    name: str
    op: str
    value: Any
    task_id: str | None = None  # for a when: condition, whose result

    def holds(self, result: Mapping[str, Any] | None) -> bool:
        if result is None or self.name not in result:
            return False
        try:
            return OPERATORS[self.op](result[self.name], self.value)
        except TypeError:  # a string against a number: does not hold
            return False

    def __str__(self) -> str:
        subject = f"tasks.{self.task_id}.result.{self.name}" if self.task_id else self.name
        return f"{subject} {self.op} {orjson.dumps(self.value).decode()}"

    def explain(self, result: Mapping[str, Any] | None) -> str:
        """Why it does not hold: the value found, or that there is none."""
        whose = f"{self.task_id} " if self.task_id else "the task "
        if result is None:
            return f"{whose}reported no result"
        if self.name not in result:
            return f"{whose}reported no {self.name!r}"
        return f"{self.name} = {orjson.dumps(result[self.name]).decode()}"


def _literal(text: str, where: str) -> Any:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ConditionError(
            f"{where}: {text!r} is not a value (a number, a quoted string, true, false, null)"
        ) from None
    if isinstance(value, (dict, list)):
        raise ConditionError(f"{where}: compare with a number, a string, true, false or null")
    return value


def parse_expectation(name: str, text: str) -> Comparison:
    """An ``expect:`` rule: ``rows: "> 0"``."""
    found = _RULE.match(text)
    if found is None:
        raise ConditionError(
            f"expect {name}: {text!r} is not a rule: use an operator (== != > >= < <=) and a "
            'value, e.g. "> 0"'
        )
    return Comparison(name, found[1], _literal(found[2], f"expect {name}"))


def parse_when(text: str) -> tuple[Comparison, ...]:
    """A ``when:`` condition: comparisons on upstream results, all of which must hold."""
    found = []
    for part in re.split(r"\s+and\s+", text.strip()):
        match = _WHEN.match(part)
        if match is None:
            raise ConditionError(f"when: {part!r} is not a condition: use {WHEN_FORM}")
        task_id, name, op, value = match.groups()
        found.append(Comparison(name, op, _literal(value, "when"), task_id))
    return tuple(found)


def failed_expectations(
    rules: tuple[Comparison, ...], result: Mapping[str, Any] | None
) -> list[str]:
    """What each rule that does not hold found: ``rows = 0, expected > 0``."""
    return [
        f"{rule.explain(result)}, expected {rule.op} {orjson.dumps(rule.value).decode()}"
        for rule in rules
        if not rule.holds(result)
    ]
