"""One exception hierarchy for Tributary.

Driver errors are translated at the edge (``raise … from exc``). ``retriable`` tells the caller
whether trying the same thing again can succeed (a lost race, a broker hiccup) or not (bad
input, bad configuration).
"""

from __future__ import annotations


class TributaryError(Exception):
    """Base of every error Tributary raises on purpose."""

    retriable = False


class ConfigError(TributaryError):
    """The settings are wrong or incomplete; the message names each setting."""


class MigrationError(TributaryError):
    """The database schema cannot be brought up to date safely."""


class SpecError(TributaryError):
    """A pipeline specification is invalid; ``problems`` holds every finding."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class EventError(TributaryError):
    """An incoming event is malformed: not JSON, not CloudEvents, or not its schema."""


class ConcurrencyError(TributaryError):
    """A guarded update found the row in another state: someone else won the race."""

    retriable = True


class InfrastructureError(TributaryError):
    """A server we depend on (PostgreSQL, Kafka, Redis) could not be reached or used."""

    retriable = True
