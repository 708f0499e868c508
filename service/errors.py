"""One exception hierarchy for Tributary.

Driver errors are translated at the edge (``raise … from exc``). ``retriable`` tells the caller
whether trying the same thing again can succeed (a lost race, a server away for a while) or
not (bad input, bad configuration, a bug). Loops retry what is retriable and stop the service
on anything else: an exception that is not a :class:`TributaryError` is a bug, never input to
be dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal


class TributaryError(Exception):
    """Base of every error Tributary raises on purpose."""

    retriable = False


class ConfigError(TributaryError):
    """The settings are wrong or incomplete; the message names each setting."""


class MigrationError(TributaryError):
    """The database schema cannot be brought up to date safely."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding about a pipeline file: where (file, line, path) and what."""

    message: str
    path: str = ""
    file: str = ""
    line: int | None = None
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        where = self.file + (f":{self.line}" if self.line else "")
        prefix = f"{where}: " if where else ""
        path = f"{self.path}: " if self.path else ""
        tag = "warning: " if self.severity == "warning" else ""
        return f"{prefix}{tag}{path}{self.message}"

    def to_json(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "path": self.path,
            "message": self.message,
            "severity": self.severity,
        }


class SpecError(TributaryError):
    """A pipeline specification (or a run's parameters) is invalid; ``problems`` lists all."""

    def __init__(self, problems: Sequence[Problem | str]) -> None:
        self.problems = [p if isinstance(p, Problem) else Problem(p) for p in problems]
        super().__init__("\n".join(str(p) for p in self.problems))


class EventError(TributaryError):
    """An incoming event is malformed: not JSON, not CloudEvents, or not its schema."""


class ConcurrencyError(TributaryError):
    """A guarded update found the row in another state: someone else won the race."""

    retriable = True


class InfrastructureError(TributaryError):
    """A server we depend on (PostgreSQL, Kafka, Redis) could not be reached or used."""

    retriable = True


class RefusedByDatabase(TributaryError):
    """PostgreSQL refuses this data for good (a NUL in a string, a value out of range, a row
    too large): the only failure that makes an event a dead letter rather than a retry."""


class IllegalTransition(TributaryError):
    """A move the transition table does not allow: a bug in the caller or in the engine."""
