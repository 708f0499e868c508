"""What the dashboard shows beside the numbers: each state as a colour class, an icon and a
word (never colour alone), durations people read, a pipeline's SLA state, and the heat of a
heat map cell. Pure functions."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# state -> (icon, word). The colour comes from the CSS class ``state-<state>``.
STATES: dict[str, tuple[str, str]] = {
    "pending": ("○", "pending"),
    "queued": ("◷", "queued"),
    "running": ("▶", "running"),
    "success": ("✓", "success"),
    "failed": ("✗", "failed"),
    "up_for_retry": ("↻", "up for retry"),
    "upstream_failed": ("⊘", "upstream failed"),
    "timed_out": ("⧖", "timed out"),
    "skipped": ("»", "skipped"),
    "cancelled": ("■", "cancelled"),
}
UNKNOWN = ("?", "unknown")
NOTHING = "\N{EN DASH}"  # shown where there is no value
HEAT_LEVELS = 6  # heat map colours, 0 (fastest) to 5 (slowest)


def icon(state: str) -> str:
    return STATES.get(state, UNKNOWN)[0]


def word(state: str) -> str:
    return STATES.get(state, UNKNOWN)[1]


def duration_text(seconds: float | None) -> str:
    """``850 ms``, ``4.2 s``, ``3 m 05 s``, ``2 h 04 m``, ``3 d 02 h``; NOTHING for none."""
    if seconds is None or math.isnan(seconds):
        return NOTHING
    if seconds < 1:
        return f"{max(seconds, 0) * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60} m {whole % 60:02d} s"
    if whole < 86400:
        return f"{whole // 3600} h {whole % 3600 // 60:02d} m"
    return f"{whole // 86400} d {whole % 86400 // 3600:02d} h"


def seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    return (end - start).total_seconds() if start and end else None


def success_rate(ended: int, succeeded: int) -> float | None:
    return succeeded / ended if ended else None


@dataclass(frozen=True, slots=True)
class SlaState:
    name: str  # none, met, missed, at_risk, pending
    text: str


def sla_state(deadline: Mapping[str, Any] | None, now: datetime) -> SlaState:
    """From the pipeline's newest run with a deadline: met, missed, at risk (it ended without
    success before its deadline) or pending (the deadline is ahead)."""
    if deadline is None:
        return SlaState("none", "no SLA")
    due: datetime = deadline["deadline_at"]
    ended: datetime | None = deadline["ended_at"]
    succeeded = deadline["state"] == "success"
    if deadline["deadline_missed_at"] is not None or (ended or now) > due:
        return SlaState("missed", f"missed ({due:%Y-%m-%d %H:%M} UTC)")
    if succeeded:
        return SlaState("met", f"met (due {due:%Y-%m-%d %H:%M} UTC)")
    if ended is not None:  # failed or cancelled before the deadline: it will be missed
        return SlaState("at_risk", f"at risk: run {deadline['state']} (due {due:%H:%M} UTC)")
    return SlaState("pending", f"due {due:%Y-%m-%d %H:%M} UTC")


def heat_levels(values: Sequence[float | None]) -> list[int | None]:
    """Each value's heat, 0 to HEAT_LEVELS - 1, on a log scale between the smallest and the
    largest of ``values`` (durations span orders of magnitude); None stays None."""
    known = [v for v in values if v is not None and v > 0]
    if not known:
        return [None if v is None else 0 for v in values]
    low, high = math.log(min(known)), math.log(max(known))
    span = high - low
    levels: list[int | None] = []
    for value in values:
        if value is None:
            levels.append(None)
        elif value <= 0 or span == 0:
            levels.append(0)
        else:
            share = (math.log(value) - low) / span
            levels.append(min(HEAT_LEVELS - 1, int(share * HEAT_LEVELS)))
    return levels
