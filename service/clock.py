"""Time, in UTC: the one place that reads the wall clock and formats timestamps.

Every timestamp Tributary writes (events, logs, the database) is UTC. Events carry RFC 3339
text with millisecond precision (``2026-11-21T14:22:33.123Z``).
"""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)


def utc_timestamp(moment: datetime | None = None) -> str:
    """RFC 3339 in UTC with millisecond precision: ``2026-11-21T14:22:33.123Z``."""
    moment = moment or utc_now()
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_timestamp(text: str) -> datetime:
    """An RFC 3339 timestamp as an aware datetime (a naive one is taken as UTC)."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
