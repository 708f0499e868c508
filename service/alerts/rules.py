"""Which committed status events deserve a person's attention. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

TASK_FAILED = "task_failed"  # failed after its last attempt
TASK_TIMED_OUT = "task_timed_out"  # timed out after its last attempt
RUN_FAILED = "run_failed"
RECOVERED = "recovered"  # a pipeline that had alerted succeeded again
DEAD_LETTER = "dead_letter"  # input refused and kept on the dead-letter topic
SERVICE_ERROR = "service_error"  # the service itself logged an error
SLA_MISSED = "sla_missed"  # a run had not succeeded by its deadline
SERVICE = "(service)"  # the pipeline id of alerts about the service itself


@dataclass(frozen=True, slots=True)
class Alert:
    kind: str
    pipeline_id: str
    run_id: str
    batch_date: str
    trace_id: str
    at: str
    task_id: str | None = None
    attempt: int | None = None
    exit_code: int | None = None
    signal: str | None = None
    error_snippet: str | None = None
    reason: str = ""
    duration_seconds: float | None = None
    max_attempts: int | None = None

    @property
    def fold_key(self) -> tuple[str, str | None, str]:
        """Alerts with the same key inside a window are folded into one."""
        return (self.pipeline_id, self.task_id, self.kind)


@dataclass
class AlertRules:
    """Turns status events into alerts; remembers which pipelines are failing, for recoveries."""

    failing: set[str] = field(default_factory=set)

    def alerts_for(self, event: Mapping[str, Any]) -> list[Alert]:
        data = event.get("data") or {}
        kind = event.get("type")
        state = data.get("state")
        common = {
            "pipeline_id": data.get("pipeline_id", "?"),
            "run_id": data.get("run_id", "?"),
            "batch_date": data.get("batch_date", "?"),
            "trace_id": data.get("trace_id", ""),
            "at": data.get("at", ""),
            "reason": data.get("reason", ""),
        }
        if kind == "task.status" and state in ("failed", "timed_out"):
            self.failing.add(common["pipeline_id"])
            return [
                Alert(
                    TASK_FAILED if state == "failed" else TASK_TIMED_OUT,
                    **common,
                    task_id=data.get("task_id"),
                    attempt=data.get("attempt"),
                    exit_code=data.get("exit_code"),
                    signal=data.get("signal"),
                    error_snippet=data.get("error_snippet"),
                    duration_seconds=data.get("duration_seconds"),
                )
            ]
        if kind == "run.deadline_missed":
            common["reason"] = f"not done by its deadline {data.get('deadline_at')} (still {state})"
            return [Alert(SLA_MISSED, **common)]
        if kind == "run.status" and state == "failed":
            self.failing.add(common["pipeline_id"])
            return [Alert(RUN_FAILED, **common)]
        if kind == "run.status" and state == "success" and common["pipeline_id"] in self.failing:
            self.failing.discard(common["pipeline_id"])
            return [Alert(RECOVERED, **common)]
        return []
