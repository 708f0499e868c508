"""Which committed status events deserve a person's attention. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from service.clock import utc_timestamp
from service.engine.states import RunState, TaskState
from service.events import Payload, RunDeadlineMissed, RunStatus, TaskStatus

TASK_FAILED = "task_failed"  # failed after its last attempt
TASK_TIMED_OUT = "task_timed_out"  # timed out after its last attempt
RUN_FAILED = "run_failed"
RUN_CANCELLED = "run_cancelled"  # an operator cancelled it
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

    def alerts_for(self, payload: Payload) -> list[Alert]:
        match payload:
            case TaskStatus(state=TaskState.FAILED | TaskState.TIMED_OUT):
                self.failing.add(payload.pipeline_id)
                kind = TASK_FAILED if payload.state is TaskState.FAILED else TASK_TIMED_OUT
                return [
                    Alert(
                        kind,
                        **_common(payload, payload.reason),
                        task_id=payload.task_id,
                        attempt=payload.attempt,
                        exit_code=payload.exit_code,
                        signal=payload.signal,
                        error_snippet=payload.error_snippet,
                        duration_seconds=payload.duration_seconds,
                        max_attempts=payload.max_attempts,
                    )
                ]
            case RunDeadlineMissed():
                why = f"not done by its deadline {utc_timestamp(payload.deadline_at)} "
                why += f"(still {payload.state})"
                return [Alert(SLA_MISSED, **_common(payload, why))]
            case RunStatus(state=RunState.CANCELLED):
                return [Alert(RUN_CANCELLED, **_common(payload, payload.reason))]
            case RunStatus(state=RunState.FAILED):
                self.failing.add(payload.pipeline_id)
                return [Alert(RUN_FAILED, **_common(payload, payload.reason))]
            case RunStatus(state=RunState.SUCCESS) if payload.pipeline_id in self.failing:
                self.failing.discard(payload.pipeline_id)
                return [Alert(RECOVERED, **_common(payload, payload.reason))]
        return []


def _common(payload: TaskStatus | RunStatus | RunDeadlineMissed, reason: str) -> dict[str, Any]:
    return {
        "pipeline_id": payload.pipeline_id,
        "run_id": payload.run_id,
        "batch_date": payload.batch_date.isoformat(),
        "trace_id": payload.trace_id,
        "at": utc_timestamp(payload.at),
        "reason": reason,
    }
