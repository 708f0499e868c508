"""Operators' commands over HTTP: trigger, cancel, retry, resume, mark, backfill, pause.

Each run command becomes a ``run.command`` event (its ``Idempotency-Key`` header, when given,
is the event id: sending it again changes nothing) applied through the same one-transaction
path as every event, so the answer is the outcome: 200 with the run as it is now, or 409 with
why it was refused. Every command needs an operator token and is kept in the audit trail.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from typing import Any

import orjson
from aiohttp import web

from service.api.auth import operator
from service.api.responses import ProblemError, json_response
from service.clock import utc_now
from service.engine.triggers import Refusal, run_for_request
from service.events import CloudEvent, RunCommand, RunRequested, new_event
from service.orchestrator.batch import BatchApplier
from service.pipelines import PipelineRegistry
from service.store import Store
from service.store.records import AuditEntry

SOURCE = "urn:tributary:api"
MAX_BACKFILL_DAYS = 3660  # ten years of daily runs in one request at most
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        found = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise _bad(f"the body is not JSON: {exc}") from None
    if not isinstance(found, dict):
        raise _bad("the body must be a JSON object")
    return found


def _bad(detail: str, status: int = 400) -> ProblemError:
    return ProblemError(status, detail)


def _date(value: Any, what: str) -> date:
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise _bad(f"{what} must be a date such as 2026-11-21, got {value!r}") from None


class Commands:
    def __init__(self, store: Store, applier: BatchApplier, registry: PipelineRegistry) -> None:
        self._store = store
        self._applier = applier
        self._registry = registry

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/api/runs", self.trigger),
            web.post("/api/runs/{run_id}/cancel", self.run_command("cancel")),
            web.post("/api/runs/{run_id}/retry", self.run_command("retry")),
            web.post("/api/runs/{run_id}/resume", self.run_command("resume")),
            web.post("/api/runs/{run_id}/tasks/{task_id}/retry", self.run_command("retry_task")),
            web.post("/api/runs/{run_id}/tasks/{task_id}/mark", self.run_command("mark")),
            web.post("/api/pipelines/{pipeline_id}/backfill", self.backfill),
            web.post("/api/pipelines/{pipeline_id}/pause", self.pause(True)),
            web.post("/api/pipelines/{pipeline_id}/unpause", self.pause(False)),
        ]

    def run_command(self, command: str) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            who = operator(request)
            body = await _body(request)
            run_id = request.match_info["run_id"]
            task_id = request.match_info.get("task_id") or body.get("from")
            if command == "resume" and not task_id:
                raise _bad("resume needs from: the task to resume from")
            state = body.get("state")
            if command == "mark" and state not in ("success", "skipped"):
                raise _bad(f"mark needs state: success or skipped, got {state!r}")
            payload = RunCommand(
                run_id=run_id,
                command=command,
                requested_by=who,
                task_id=task_id,
                downstream=bool(body.get("downstream")) if command == "retry_task" else None,
                state=state,
                reason=str(body.get("reason") or "") or None,
                current_version=bool(body.get("current_version")) if command == "retry" else None,
            )
            event = self._event(request, payload, run_id)
            refused = await self._apply(event)
            if refused is not None:
                raise _bad(refused, 409)
            details = await self._store.run_details(run_id)
            return json_response(details.view() if details else {"run_id": run_id})

        return handle

    async def trigger(self, request: web.Request) -> web.StreamResponse:
        """Start a run by hand; the answer names it, or says why it was refused."""
        who = operator(request)
        body = await _body(request)
        pipeline_id = str(body.get("pipeline_id") or "")
        request_payload = RunRequested(
            pipeline_id=pipeline_id,
            batch_date=_date(body.get("batch_date"), "batch_date"),
            params=body.get("params") or {},
            requested_by=who,
            reason=body.get("reason"),
        )
        event = self._event(request, request_payload, pipeline_id)
        refused = await self._apply(event)
        if refused is not None:
            raise _bad(refused, 409)
        key = f"manual:{SOURCE}:{event.id}"
        made = await self._store.runs_for_triggers(pipeline_id, [key])
        return json_response({"run_id": made.get(key), "pipeline_id": pipeline_id}, status=201)

    async def backfill(self, request: web.Request) -> web.StreamResponse:
        """One run per batch date of the range, oldest first (admission keeps to the
        pipeline's max_active_runs); the same backfill again creates nothing new."""
        who = operator(request)
        body = await _body(request)
        pipeline_id = request.match_info["pipeline_id"]
        first, last = _date(body.get("from"), "from"), _date(body.get("to"), "to")
        if last < first:
            raise _bad(f"to ({last}) is before from ({first})")
        days = (last - first).days + 1
        if days > MAX_BACKFILL_DAYS:
            raise _bad(f"{days} days is more than {MAX_BACKFILL_DAYS} in one backfill: split it")
        params = body.get("params") or {}
        deployed = self._registry.current
        key = orjson.dumps(params, option=orjson.OPT_SORT_KEYS).decode()
        events = []
        for n in range(days):
            day = first + timedelta(days=n)
            start = run_for_request(
                deployed.get(pipeline_id),
                pipeline_id=pipeline_id,
                deployed=deployed,
                batch_date=day,
                params=params,
                requested_by=who,
                reason=None,
                trigger_key="",
            )
            if isinstance(start, Refusal):
                raise _bad(start.reason, 409)
            payload = RunRequested(pipeline_id, day, params, who, body.get("reason") or "backfill")
            event_id = f"backfill:{pipeline_id}:{day}:{key}"
            events.append(new_event(payload, SOURCE, pipeline_id, event_id=event_id))
        keys = {
            str(first + timedelta(days=n)): f"manual:{SOURCE}:{e.id}" for n, e in enumerate(events)
        }
        existing = await self._store.runs_for_triggers(pipeline_id, list(keys.values()))
        dates = [str(first + timedelta(days=n)) for n in range(days)]
        new = [
            d
            for d, e in zip(dates, events, strict=True)
            if f"manual:{SOURCE}:{e.id}" not in existing
        ]
        if body.get("dry_run"):
            return json_response({"would_create": new, "exist": sorted(set(dates) - set(new))})
        await self._applier.apply(events)
        made = await self._store.runs_for_triggers(pipeline_id, list(keys.values()))
        run_ids = [made[keys[d]] for d in dates if keys[d] in made]
        existed = sorted(set(dates) - set(new))
        return json_response({"created": new, "existed": existed, "run_ids": run_ids})

    def pause(self, paused: bool) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            who = operator(request)
            body = await _body(request)
            pipeline_id = request.match_info["pipeline_id"]
            if pipeline_id not in self._registry.current:
                raise _bad(f"no deployed pipeline {pipeline_id!r}", 404)
            why = str(body.get("reason") or "")
            async with self._store.transaction(who) as tx:
                was = await tx.set_paused(pipeline_id, paused, who, why)
                entry = AuditEntry(
                    event_id=secrets.token_hex(8),
                    actor=who,
                    command="pause" if paused else "unpause",
                    run_id=None,
                    task_id=None,
                    reason=why,
                    outcome="applied",
                    detail="" if was != paused else f"it was {'paused' if was else 'active'}",
                    pipeline_id=pipeline_id,
                )
                tx.add_audit(entry)
                tx.add_outbox([self._applier.outgoing.command_recorded(entry, utc_now())])
            if not paused:  # what waited starts now, oldest batch date first
                await self._applier.admission.admit([pipeline_id])
            return json_response({"pipeline_id": pipeline_id, "paused": paused, "was_paused": was})

        return handle

    def _event(
        self, request: web.Request, payload: RunCommand | RunRequested, subject: str
    ) -> CloudEvent:
        key = request.headers.get("Idempotency-Key")
        if key is not None and not (0 < len(key) <= 200 and key.isprintable()):
            raise _bad("Idempotency-Key must be 1 to 200 printable characters")
        return new_event(payload, SOURCE, subject, event_id=key or secrets.token_hex(16))

    async def _apply(self, event: CloudEvent) -> str | None:
        """Apply the event; why it was refused, or None. A repeat (same key) is no refusal."""
        outcome = await self._applier.apply([event])
        return outcome.refused.get(event.id)
