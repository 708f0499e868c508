"""What views of a run show (the API, ``tributary runs show``): the run, its tasks, and what
each queued task still waits for, since when."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from service.spec.render import describe_probe
from service.store.records import RunRecord, TaskRecord


@dataclass(frozen=True, slots=True)
class WaitingFor:
    """Something a queued task still waits for: a dataset partition (``what``) or a check
    (``probe``), since its task was queued."""

    task_id: str
    what: str | None
    probe: Mapping[str, Any] | None
    since: datetime | None
    timeout_seconds: float | None = None
    pokes: int | None = None
    last_result: str | None = None
    run_id: str = ""
    why: str = ""  # for a wait that failed: wait_timeout or check_error: …

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> WaitingFor:
        return cls(**row)

    def describe(self) -> str:
        if self.probe is not None:
            return describe_probe(self.probe)
        return self.what or ""

    def view(self) -> dict[str, Any]:
        """For people and the API: what, since when, until when, and a check's last answer."""
        found: dict[str, Any] = {"waits_for": self.describe(), "since": self.since}
        if self.timeout_seconds is not None and self.since is not None:
            found["times_out_at"] = self.since + timedelta(seconds=self.timeout_seconds)
        if self.probe is not None:
            found |= {"pokes": self.pokes, "last_result": self.last_result}
        return found


@dataclass(frozen=True, slots=True)
class RunDetails:
    """A run, its tasks, what its queued tasks still wait for, and the operators' commands
    about it (who, what, when, why, applied or refused): what views of a run show."""

    run: RunRecord
    tasks: Sequence[TaskRecord]
    waits: Sequence[WaitingFor]
    commands: Sequence[Mapping[str, Any]] = ()

    def view(self) -> dict[str, Any]:
        waiting: dict[str, list[dict[str, Any]]] = {}
        for wait in self.waits:
            waiting.setdefault(wait.task_id, []).append(wait.view())
        tasks = [
            {
                **asdict(task),
                **({"waiting_for": waiting[task.task_id]} if task.task_id in waiting else {}),
            }
            for task in self.tasks
        ]
        return {"run": asdict(self.run), "tasks": tasks, "commands": list(self.commands)}
