"""Which queued runs of a pipeline may start now. Pure: the orchestrator asks, then writes.

A new run is created ``queued`` and starts (is *admitted*) only while its pipeline has fewer
than ``max_active_runs`` running runs, and never while another run of the same batch date is
running: a rerun of a date waits for the run in flight, so two runs never write one partition
at once. Waiting runs start oldest batch date first, then in the order they were created.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True, slots=True)
class WaitingRun:
    """A queued run, as admission sees it (candidates come oldest batch date first)."""

    run_id: str
    batch_date: date


def runs_to_admit(
    max_active_runs: int, running_dates: Iterable[date], waiting: Sequence[WaitingRun]
) -> list[str]:
    """The queued runs to start, given the batch dates of the pipeline's running runs and its
    waiting runs in queue order (oldest batch date, then creation)."""
    busy = list(running_dates)
    room = max_active_runs - len(busy)
    taken = set(busy)
    admitted: list[str] = []
    for run in waiting:
        if len(admitted) >= room:
            break
        if run.batch_date in taken:
            continue
        taken.add(run.batch_date)
        admitted.append(run.run_id)
    return admitted
