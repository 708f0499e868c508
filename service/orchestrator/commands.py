"""Operators' commands on runs (``run.command``), carried out like every other event: in the
batch's transaction, decided by the engine (``engine/commands.py``), logged with who asked and
why, each once (the event id is the idempotency key). A refused command changes nothing and
says why (``ignored_events``, and the answer the API gives)."""

from __future__ import annotations

from service.clock import utc_now
from service.engine.commands import (
    REOPENING,
    CancelRun,
    Command,
    MarkTask,
    ResumeFrom,
    RetryRun,
    RetryTask,
    decide_command,
)
from service.engine.model import StopAttempt
from service.engine.states import RUN_TERMINAL, TaskState
from service.events import CloudEvent, RunCommand
from service.observability import get_logger
from service.orchestrator.outgoing import Outgoing
from service.orchestrator.working_set import WorkingSet
from service.pipelines import PipelineRegistry
from service.store.records import AuditEntry

log = get_logger(__name__)


def engine_command(request: RunCommand) -> Command | str:
    """The engine's command for a request, or why the request is incomplete."""
    why = f"{request.command} by {request.requested_by}" + (
        f": {request.reason}" if request.reason else ""
    )
    needs_task = request.command in ("retry_task", "mark", "resume")
    if needs_task and not request.task_id:
        return f"{request.command} needs a task_id"
    task_id = request.task_id or ""
    match request.command:
        case "cancel":
            return CancelRun(why)
        case "retry":
            return RetryRun(why)
        case "retry_task":
            return RetryTask(task_id, bool(request.downstream), why)
        case "mark":
            if request.state not in (TaskState.SUCCESS, TaskState.SKIPPED):
                return "mark needs state: success or skipped"
            return MarkTask(task_id, request.state, why)
        case "resume":
            return ResumeFrom(task_id, why)
    return f"unknown command {request.command!r}"


class CommandApplier:
    def __init__(self, outgoing: Outgoing, registry: PipelineRegistry) -> None:
        self._outgoing = outgoing
        self._registry = registry

    async def apply(self, ws: WorkingSet, event: CloudEvent, request: RunCommand) -> None:
        run_id = request.run_id
        await ws.load([run_id])
        command = engine_command(request)
        if isinstance(command, str):
            self._refuse(ws, event, request, command)
            return
        if run_id not in ws.runs:
            self._refuse(ws, event, request, f"no run {run_id!r}")
            return
        run = ws.runs[run_id]
        if isinstance(command, REOPENING) and ws.run_state(run_id) in RUN_TERMINAL:
            await ws.tx.lock_admission(run.pipeline_id)
            other = await ws.tx.other_active_run(run.pipeline_id, run.batch_date, run_id)
            if other is not None:
                why = (
                    f"run {other} of the same batch date {run.batch_date} is active: wait for "
                    "it or cancel it first (two runs never write one partition at once)"
                )
                self._refuse(ws, event, request, why)
                return
        if request.current_version and isinstance(command, RetryRun):
            refusal = await self._follow_current_version(ws, run_id)
            if refusal is not None:
                self._refuse(ws, event, request, refusal)
                return
        decision = decide_command(ws.pipelines[run_id].graph, ws.snapshot(run_id), command)
        if decision.ignored is not None:
            self._refuse(ws, event, request, decision.ignored)
            return
        ws.apply(run_id, decision.transitions)
        for effect in decision.effects:
            if isinstance(effect, StopAttempt):
                ws.stop_attempt(run_id, effect)
        self._record(ws, _audit(event, request, "applied", ""))
        ws.outcome.applied += 1
        log.info(
            "command.applied",
            command=request.command,
            run_id=run_id,
            task_id=request.task_id,
            requested_by=request.requested_by,
            reason=request.reason,
        )

    async def _follow_current_version(self, ws: WorkingSet, run_id: str) -> str | None:
        """Move the run to its pipeline's current version (same tasks); or why it cannot."""
        run = ws.runs[run_id]
        current = self._registry.current.get(run.pipeline_id)
        if current is None:
            return (
                f"pipeline {run.pipeline_id!r} is no longer deployed: retry under the run's version"
            )
        if current.spec_hash == run.spec_hash:
            return None
        before, now = set(ws.pipelines[run_id].graph.order), set(current.graph.order)
        if before != now:
            added, removed = sorted(now - before), sorted(before - now)
            return (
                f"the current version has other tasks (added {added}, removed {removed}): "
                "retry under the run's own version, or start a new run"
            )
        await ws.tx.set_run_version(run_id, current.spec_hash)
        ws.pipelines[run_id] = current
        return None

    def _refuse(self, ws: WorkingSet, event: CloudEvent, request: RunCommand, why: str) -> None:
        ws.ignore(event, why, request.run_id, request.task_id)
        self._record(ws, _audit(event, request, "refused", why))

    def _record(self, ws: WorkingSet, entry: AuditEntry) -> None:
        """In the audit log and, for downstream consumers, on the status topic."""
        ws.tx.add_audit(entry)
        ws.tx.add_outbox([self._outgoing.command_recorded(entry, utc_now())])


def _audit(event: CloudEvent, request: RunCommand, outcome: str, why: str) -> AuditEntry:
    return AuditEntry(
        event_id=event.id,
        actor=request.requested_by,
        command=request.command,
        run_id=request.run_id,
        task_id=request.task_id,
        reason=request.reason or "",
        outcome=outcome,
        detail=why,
    )
