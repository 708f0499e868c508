"""Which fires of a cron schedule to run now, after downtime too. Pure: the caller passes the
time; what the schedule means (its fire times) is ``spec/cron.py``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from service.spec.cron import latest_fire_times

Catchup = Literal["latest", "all", "none"]
LOOKED_AT_MORE = 16  # fires looked at beyond max_catchup: the on-time ones, and a few skipped


@dataclass(frozen=True, slots=True)
class Fires:
    """What to do now: the fire times to start runs for, how many missed fires were
    skipped, and the fire time up to which everything is handled."""

    run: tuple[datetime, ...]
    skipped: int
    handled_until: datetime


def due_fires(
    cron: str,
    timezone: str,
    *,
    handled_until: datetime,
    now: datetime,
    catchup: Catchup,
    max_catchup: int,
    on_time: timedelta,
) -> Fires:
    """The fires in (handled_until, now] to run. A fire due less than ``on_time`` ago is on
    time and always runs; older ones were missed (the service was down): ``latest`` runs the
    newest missed one, ``all`` the newest ``max_catchup`` of them, ``none`` none. ``skipped``
    counts the missed fires among the newest looked at (a lower bound after long downtime)."""
    due = latest_fire_times(cron, timezone, handled_until, now, max_catchup + LOOKED_AT_MORE)
    if not due:
        return Fires((), 0, handled_until)
    missed = [at for at in due if now - at >= on_time]
    timely = due[len(missed) :]
    if catchup == "all":
        kept = missed[-max_catchup:]
    elif catchup == "latest":
        kept = missed[-1:]
    else:
        kept = []
    return Fires(tuple(kept + timely), len(missed) - len(kept), due[-1])
