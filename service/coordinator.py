"""Carries the engine's decisions out: one PostgreSQL transaction per batch of events.

Kafka triggers, Kafka completions and the local executor's completions all arrive here as
CloudEvents and take the same path: record the event ids (duplicates are no-ops), lock the
runs they touch, ask :func:`decide` for each event against the runs as they are at that point
of the batch, then write every move, result, log row and status event in bulk, and commit.
Only then may the caller acknowledge the input (commit Kafka offsets). Bad input is refused
before the transaction starts.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from datetime import time as dt_time
from typing import Any

import orjson

from service import metrics
from service.bus.envelope import (
    DATASET_PRODUCED,
    DATASET_READY,
    RUN_DEADLINE_MISSED,
    RUN_REQUESTED,
    RUN_STATUS,
    TASK_COMPLETED,
    TASK_HEARTBEAT,
    TASK_REQUESTED,
    TASK_STATUS,
    CloudEvent,
    new_event,
    utc_timestamp,
)
from service.engine.decide import (
    AttemptFinished,
    RetryDue,
    RunCreated,
    RunSnapshot,
    TaskSnapshot,
    Transition,
    decide,
    start_attempt,
)
from service.engine.states import RUN_TERMINAL, TASK_TERMINAL, RunState, TaskState
from service.errors import ConcurrencyError, EventError, SpecError, TributaryError
from service.executor.attempt import plan_claim
from service.observability import get_logger
from service.pipelines import PipelineRegistry
from service.spec.loader import Pipeline
from service.spec.params import ParamValue, resolve_params
from service.spec.render import template_values
from service.spec.validate import suggest
from service.store import (
    AttemptResult,
    Capacity,
    IgnoredEvent,
    OutboxRow,
    Store,
    TaskMove,
    Transaction,
)
from service.store.records import ClaimedAttempt, LockedRun, TransitionRow

log = get_logger(__name__)

LEASE_REAPER_SOURCE = "urn:tributary:lease-reaper"
RUN_ID_ATTEMPTS = 8  # fresh random suffixes tried when two runs are created in the same second
RETRY_FIRST_DELAY = 0.05  # seconds before the first retry of a batch the database could not take
RETRY_MAX_DELAY = 5.0  # seconds between retries while the database is unavailable


@dataclass(slots=True)
class BatchOutcome:
    """What one transaction did, for wake-ups, metrics and tests."""

    applied: int = 0
    duplicates: int = 0
    ignored: int = 0
    runs_created: int = 0
    tasks_queued: int = 0
    retries_scheduled: int = 0
    datasets_recorded: int = 0  # may unblock tasks waiting for data
    outbox_written: int = 0
    run_endings: dict[str, int] = field(default_factory=dict)  # terminal state -> count
    task_endings: dict[str, int] = field(default_factory=dict)
    scheduling_latencies: list[float] = field(default_factory=list)  # seconds

    def count_endings(self, transitions: Sequence[Transition]) -> None:
        for t in transitions:
            if t.task_id is None and t.to_state in RUN_TERMINAL:
                self.run_endings[t.to_state] = self.run_endings.get(t.to_state, 0) + 1
            elif t.task_id is not None and t.to_state in TASK_TERMINAL:
                self.task_endings[t.to_state] = self.task_endings.get(t.to_state, 0) + 1

    def observe(self) -> None:
        """Count what this batch committed (never before: a rollback changes nothing)."""
        for state, n in self.run_endings.items():
            metrics.RUNS_ENDED.labels(state).inc(n)
        for state, n in self.task_endings.items():
            metrics.TASKS_ENDED.labels(state).inc(n)
        if self.retries_scheduled:
            metrics.RETRIES_SCHEDULED.inc(self.retries_scheduled)
        for seconds in self.scheduling_latencies:
            metrics.SCHEDULING_LATENCY.observe(seconds)


@dataclass(frozen=True, slots=True)
class StatusTopic:
    name: str
    source: str


def new_run_id(now: datetime, suffix: str | None = None) -> str:
    """``20261121-142233-8a3f``: the UTC time of creation and 16 random bits."""
    return f"{now.astimezone(UTC):%Y%m%d-%H%M%S}-{suffix or secrets.token_hex(2)}"


def check_event(event: CloudEvent) -> None:
    """Refuse what no transaction could apply, before one starts."""
    if event.type not in (DATASET_READY, RUN_REQUESTED, TASK_COMPLETED, TASK_HEARTBEAT):
        raise EventError(f"event type {event.type!r} is not consumed by the orchestrator")


class _Work:
    """The runs one transaction changes: locked rows, task states as the batch has left them
    so far, and the moves and results to write in bulk at the end."""

    def __init__(self, tx: Transaction) -> None:
        self.tx = tx
        self.runs: dict[str, LockedRun] = {}
        self.run_states: dict[str, RunState] = {}
        self.tasks: dict[str, dict[str, TaskSnapshot]] = {}
        self.results: list[AttemptResult] = []
        self._task_moves: dict[tuple[str, str], TaskMove] = {}
        self._run_moves: dict[str, tuple[str, str]] = {}

    async def load(self, run_ids: Iterable[str]) -> None:
        wanted = sorted(set(run_ids) - set(self.runs))
        if not wanted:
            return
        locked = await self.tx.lock_runs(wanted)
        states = await self.tx.task_states(list(locked))
        for run_id, run in locked.items():
            self.runs[run_id] = run
            self.run_states[run_id] = run.state
            self.tasks[run_id] = {
                task_id: TaskSnapshot(task_id, TaskState(state), attempt)
                for task_id, (state, attempt) in states[run_id].items()
            }

    def add_new_run(self, run: LockedRun, task_ids: Sequence[str]) -> None:
        self.runs[run.run_id] = run
        self.run_states[run.run_id] = run.state
        self.tasks[run.run_id] = {t: TaskSnapshot(t, TaskState.PENDING, 0) for t in task_ids}

    def snapshot(self, run_id: str) -> RunSnapshot:
        return RunSnapshot(run_id, self.run_states[run_id], self.tasks[run_id])

    def apply(self, run_id: str, transitions: Sequence[Transition]) -> None:
        """Take the transitions into the batch's view; keep one net move per row."""
        for t in transitions:
            if t.task_id is None:
                first = self._run_moves.get(run_id, (t.from_state, t.to_state))[0]
                self._run_moves[run_id] = (first, t.to_state)
                self.run_states[run_id] = RunState(t.to_state)
                continue
            key = (run_id, t.task_id)
            earlier = self._task_moves.get(key)
            self._task_moves[key] = TaskMove(
                run_id,
                t.task_id,
                earlier.from_state if earlier else t.from_state,
                t.to_state,
                t.retry_at,
            )
            attempt = self.tasks[run_id][t.task_id].attempt
            self.tasks[run_id][t.task_id] = TaskSnapshot(t.task_id, TaskState(t.to_state), attempt)

    async def write(self) -> None:
        await self.tx.move_tasks(list(self._task_moves.values()))
        await self.tx.move_runs([(run, m[0], m[1]) for run, m in self._run_moves.items()])
        await self.tx.record_attempt_results(self.results)


class Coordinator:
    def __init__(
        self,
        store: Store,
        registry: PipelineRegistry,
        status: StatusTopic,
        actor: str,
        on_commit: Callable[[BatchOutcome], None] = lambda outcome: None,
        requests_topic: str = "tributary.requests",
        remote_by_default: bool = False,
    ) -> None:
        self._store = store
        self._registry = registry
        self._status = status
        self._actor = actor
        self._on_commit = on_commit
        self._requests_topic = requests_topic  # where task.requested goes, for remote workers
        self._remote_by_default = remote_by_default

    async def apply(self, events: Sequence[CloudEvent]) -> BatchOutcome:
        """Apply a batch in one transaction. Events must have passed :func:`check_event`."""
        counts = BatchOutcome()
        unique = list({(e.source, e.id): e for e in reversed(events)}.values())[::-1]
        counts.duplicates = len(events) - len(unique)
        async with self._store.transaction() as tx:
            tx.actor = self._actor
            fresh = await tx.mark_events_processed([(e.source, e.id, e.type) for e in unique])
            work = _Work(tx)
            todo = [e for e in unique if (e.source, e.id) in fresh]
            counts.duplicates += len(unique) - len(todo)
            await work.load(e.data["run_id"] for e in todo if e.type == TASK_COMPLETED)
            for event in todo:
                if event.type == DATASET_READY:
                    await self._dataset_ready(work, event, counts)
                elif event.type == RUN_REQUESTED:
                    await self._run_requested(work, event, counts)
                else:
                    await self._task_completed(work, event, counts)
            await work.write()
            counts.outbox_written = tx.outbox_written
        counts.observe()
        self._on_commit(counts)
        return counts

    async def claim(
        self, worker_id: str, capacity: Capacity | int, lease_seconds: float
    ) -> list[ClaimedAttempt]:
        """Move the queued tasks that fit ``capacity`` (or a number of slots) to running for
        this worker, under a lease."""
        if isinstance(capacity, int):
            capacity = Capacity(capacity, float("inf"), 2**31 - 1)
        async with self._store.transaction() as tx:
            claims = await self._claim_in(tx, worker_id, capacity, lease_seconds)
            outbox_written = tx.outbox_written
        if claims:
            self._on_commit(BatchOutcome(outbox_written=outbox_written))
        return claims

    async def _claim_in(
        self, tx: Transaction, worker_id: str, capacity: Capacity, lease_seconds: float
    ) -> list[ClaimedAttempt]:
        """Claim in ``tx`` and record each task's move to running (log and status event)."""
        tx.actor = worker_id
        claims = await tx.claim_tasks(worker_id, capacity, lease_seconds)
        for claim in claims:
            transition = start_attempt(
                TaskSnapshot(claim.task_id, TaskState.QUEUED, claim.attempt - 1)
            )
            run = LockedRun(
                claim.run_id,
                claim.pipeline_id,
                claim.spec_hash,
                claim.batch_date,
                RunState.RUNNING,
                claim.trace_id,
                claim.params,
            )
            self._record(tx, run, [transition])
        return claims

    async def fire_due_retries(self, limit: int) -> int:
        """Queue again the tasks whose retry time has come; return how many were due."""
        due = await self._store.due_retries(limit)
        if not due:
            return 0
        counts = BatchOutcome()
        async with self._store.transaction() as tx:
            tx.actor = self._actor
            work = _Work(tx)
            await work.load(run_id for run_id, _ in due)
            for run_id, task_id in due:
                if run_id not in work.runs or work.run_states[run_id] in RUN_TERMINAL:
                    continue
                run = work.runs[run_id]
                graph = (await self._registry.version(run.pipeline_id, run.spec_hash)).graph
                decision = decide(graph, work.snapshot(run_id), RetryDue(task_id))
                if decision.ignored:
                    continue  # another replica fired it first
                work.apply(run_id, decision.transitions)
                self._record(tx, run, decision.transitions)
                counts.tasks_queued += 1
            await work.write()
            counts.outbox_written = tx.outbox_written
        self._on_commit(counts)
        return len(due)

    async def cache_key(
        self,
        pipeline: Pipeline,
        task_id: str,
        argv: Sequence[str],
        inputs: Sequence[tuple[str, str]],
    ) -> str:
        """sha256 of the spec version, the rendered command and the inputs' versions."""
        versions = await self._store.input_versions(inputs)
        material = orjson.dumps(
            [
                pipeline.spec_hash,
                task_id,
                list(argv),
                [[d, p, versions.get((d, p))] for d, p in inputs],
            ]
        )
        return hashlib.sha256(material).hexdigest()

    async def cached_success(self, cache_key: str) -> tuple[str, int] | None:
        """The run and attempt of an earlier success with this key, if any."""
        return await self._store.cached_success(cache_key)

    async def renew_leases(self, worker_id: str, lease_seconds: float) -> None:
        await self._store.renew_leases(worker_id, lease_seconds)

    async def renew_attempt_leases(
        self, beats: Sequence[tuple[str, str, int, str]], lease_seconds: float
    ) -> None:
        """Heartbeats of remote workers: (run id, task id, attempt, worker id)."""
        await self._store.renew_attempt_leases(beats, lease_seconds)

    async def dispatch_remote(self, dispatcher_id: str, limit: int, lease_seconds: float) -> int:
        """Claim queued remote tasks and request them from the workers, in one transaction:
        the task.requested events go through the outbox like every other event."""
        capacity = Capacity(limit, float("inf"), 2**31 - 1, remote=True)
        async with self._store.transaction() as tx:
            claims = await self._claim_in(tx, dispatcher_id, capacity, lease_seconds)
            for claim in claims:
                pipeline = await self._registry.version(claim.pipeline_id, claim.spec_hash)
                request = new_event(
                    TASK_REQUESTED,
                    self._status.source,
                    {
                        "run_id": claim.run_id,
                        "task_id": claim.task_id,
                        "attempt": claim.attempt,
                        "pipeline_id": claim.pipeline_id,
                        "batch_date": claim.batch_date.isoformat(),
                        "trace_id": claim.trace_id,
                        "lease_seconds": lease_seconds,
                        "plan": plan_claim(pipeline, claim).to_json(),
                    },
                    subject=f"{claim.run_id}/{claim.task_id}",
                    trace_id=claim.trace_id,
                )
                tx.add_outbox(
                    [OutboxRow(request.id, self._requests_topic, claim.run_id, request.to_bytes())]
                )
            outbox_written = tx.outbox_written
        if claims:
            self._on_commit(BatchOutcome(outbox_written=outbox_written))
        return len(claims)

    async def flag_missed_deadlines(self, limit: int) -> int:
        """Announce, once each, the active runs past their SLA deadline (run.deadline_missed)."""
        async with self._store.transaction() as tx:
            tx.actor = self._actor
            late = await tx.flag_missed_deadlines(limit)
            for row in late:
                log.warning(
                    "run.deadline_missed",
                    run_id=row["run_id"],
                    pipeline_id=row["pipeline_id"],
                    deadline_at=str(row["deadline_at"]),
                )
                event = new_event(
                    RUN_DEADLINE_MISSED,
                    self._status.source,
                    {
                        "run_id": row["run_id"],
                        "pipeline_id": row["pipeline_id"],
                        "batch_date": row["batch_date"].isoformat(),
                        "state": row["state"],
                        "deadline_at": utc_timestamp(row["deadline_at"]),
                        "trace_id": row["trace_id"],
                        "at": utc_timestamp(),
                    },
                    subject=row["run_id"],
                    trace_id=row["trace_id"],
                )
                tx.add_outbox(
                    [OutboxRow(event.id, self._status.name, row["run_id"], event.to_bytes())]
                )
            written = tx.outbox_written
        if late:
            self._on_commit(BatchOutcome(outbox_written=written))
        return len(late)

    async def reap_expired_leases(self, limit: int) -> int:
        """Report attempts whose worker stopped renewing its lease as lost (failed, retryable).

        The completion's id is derived from the attempt, so replicas reaping the same lease
        produce the same event and only one applies.
        """
        expired = await self._store.expired_leases(limit)
        metrics.ATTEMPTS_LOST.inc(len(expired))
        events = []
        for run_id, task_id, attempt, worker_id in expired:
            log.warning(
                "attempt.lost", run_id=run_id, task_id=task_id, attempt=attempt, worker_id=worker_id
            )
            reason = f"attempt lost: worker {worker_id} stopped renewing its lease"
            events.append(
                CloudEvent(
                    id=f"lost:{run_id}:{task_id}:{attempt}",
                    source=LEASE_REAPER_SOURCE,
                    type=TASK_COMPLETED,
                    data={
                        "run_id": run_id,
                        "task_id": task_id,
                        "attempt": attempt,
                        "outcome": "failed",
                        "retryable": True,
                        "error_snippet": reason,
                        "reason": reason,
                    },
                    time=utc_timestamp(),
                )
            )
        if events:
            await self.apply(events)
        return len(expired)

    # --- triggers ------------------------------------------------------------------------

    async def _dataset_ready(self, work: _Work, event: CloudEvent, counts: BatchOutcome) -> None:
        data = event.data
        version = data.get("version") or event.id
        await work.tx.record_dataset_partition(
            data["dataset"], data["partition"], version, data.get("producer"), event.id
        )
        counts.datasets_recorded += 1
        await self._trigger(
            work,
            data["dataset"],
            data["partition"],
            version,
            event.trace_id or secrets.token_hex(16),
            event.id,
            counts,
        )
        counts.applied += 1

    async def _trigger(
        self,
        work: _Work,
        dataset: str,
        partition: str,
        version: str,
        trace_id: str,
        cause: str,
        counts: BatchOutcome,
    ) -> None:
        """Start a run of each pipeline whose dataset triggers are now all ready."""
        for pipeline in self._registry.triggered_by(dataset):
            triggers = pipeline.spec.triggers
            trigger = next(t for t in triggers.datasets if t.dataset == dataset)
            try:
                batch_date = trigger.batch_date_for(partition)
            except ValueError as exc:
                log.error(
                    "trigger.partition_mismatch",
                    pipeline_id=pipeline.id,
                    event_id=cause,
                    reason=str(exc),
                )
                continue
            others = [
                (t.dataset, t.partition_for(batch_date))
                for t in triggers.datasets
                if t is not trigger
            ]
            if others and await work.tx.ready_datasets(others) != {d for d, _ in others}:
                continue
            key = f"batch_date:{batch_date.isoformat()}"
            if triggers.on_new_version == "rerun":
                key += f"|{dataset}@{version}"  # a new version of the input: a new run
            created = await self._create_run(
                work, pipeline, batch_date, trace_id, f"{dataset} {partition} is ready", key, {}
            )
            if created:
                counts.runs_created += 1
                counts.tasks_queued += len(pipeline.graph.roots)

    async def _run_requested(self, work: _Work, event: CloudEvent, counts: BatchOutcome) -> None:
        data = event.data
        pipeline = self._registry.current.get(data["pipeline_id"])
        if pipeline is None:
            why = f"no pipeline {data['pipeline_id']!r}" + suggest(
                data["pipeline_id"], self._registry.current
            )
            self._ignore(work.tx, event, why, counts)
            return
        if not pipeline.spec.triggers.manual:
            self._ignore(work.tx, event, f"{pipeline.id} does not allow manual runs", counts)
            return
        try:
            params = resolve_params(pipeline.spec.params, data.get("params") or {})
        except SpecError as exc:
            self._ignore(work.tx, event, "; ".join(str(p) for p in exc.problems), counts)
            return
        who = data.get("requested_by") or event.source
        reason = f"requested by {who}" + (f": {data['reason']}" if data.get("reason") else "")
        created = await self._create_run(
            work,
            pipeline,
            date.fromisoformat(data["batch_date"]),
            event.trace_id or secrets.token_hex(16),
            reason,
            f"manual:{event.source}:{event.id}",
            params,
        )
        if created:
            counts.runs_created += 1
            counts.tasks_queued += len(pipeline.graph.roots)
        counts.applied += 1

    async def _create_run(
        self,
        work: _Work,
        pipeline: Pipeline,
        batch_date: date,
        trace_id: str,
        reason: str,
        trigger_key: str,
        params: Mapping[str, ParamValue],
    ) -> bool:
        """Create the run for ``trigger_key`` unless it exists; queue its first tasks."""
        tx = work.tx
        resolved = resolve_params(pipeline.spec.params, params)
        sla = pipeline.spec.sla
        deadline_at = (
            datetime.combine(batch_date, dt_time(0), tzinfo=UTC) + sla.deadline if sla else None
        )
        stored = {name: _jsonable(value) for name, value in resolved.items()}
        for _ in range(RUN_ID_ATTEMPTS):
            run_id = new_run_id(datetime.now(UTC))
            if await tx.insert_run(
                run_id,
                pipeline.id,
                pipeline.spec_hash,
                batch_date,
                trigger_key,
                stored,
                trace_id,
                deadline_at,
            ):
                break
            if await tx.run_for_trigger(pipeline.id, trigger_key) is not None:
                log.info("run.exists", pipeline_id=pipeline.id, trigger_key=trigger_key)
                return False
        else:
            raise ConcurrencyError(f"no free run id after {RUN_ID_ATTEMPTS} tries")
        await tx.insert_task_instances(
            run_id,
            [
                (
                    task_id,
                    task.resources.cpu_cores,
                    task.resources.memory_mb,
                    task.resources.pool,
                    task.priority,
                    task.executor == "remote" or self._remote_by_default,
                )
                for task_id in pipeline.graph.order
                for task in (pipeline.tasks[task_id],)
            ],
        )
        await tx.insert_task_waits(_waits(pipeline, run_id, batch_date, resolved))
        run = LockedRun(
            run_id, pipeline.id, pipeline.spec_hash, batch_date, RunState.QUEUED, trace_id, stored
        )
        work.add_new_run(run, pipeline.graph.order)
        decision = decide(pipeline.graph, work.snapshot(run_id), RunCreated())
        work.apply(run_id, decision.transitions)
        created = Transition(None, "", RunState.QUEUED, None, reason)
        self._record(tx, run, [created, *decision.transitions])
        log.info(
            "run.created",
            run_id=run_id,
            pipeline_id=pipeline.id,
            batch_date=str(batch_date),
            trace_id=trace_id,
        )
        return True

    # --- completions ---------------------------------------------------------------------

    async def _task_completed(self, work: _Work, event: CloudEvent, counts: BatchOutcome) -> None:
        data = event.data
        run = work.runs.get(data["run_id"])
        if run is None or work.run_states[run.run_id] in RUN_TERMINAL:
            why = "unknown run" if run is None else f"run is {work.run_states[run.run_id]}"
            self._ignore(work.tx, event, why, counts)
            return
        pipeline = await self._registry.version(run.pipeline_id, run.spec_hash)
        finished = AttemptFinished(
            data["task_id"],
            data["attempt"],
            TaskState(data["outcome"]),
            exit_code=data.get("exit_code"),
            retryable=data.get("retryable", True),
            at=datetime.now(UTC),
            jitter_sample=random.uniform(-1.0, 1.0),
            reason=data.get("reason") or "",
        )
        decision = decide(pipeline.graph, work.snapshot(run.run_id), finished)
        if decision.ignored:
            self._ignore(work.tx, event, decision.ignored, counts)
            return
        work.apply(run.run_id, decision.transitions)
        succeeded = any(
            t.task_id == finished.task_id and t.to_state == TaskState.SUCCESS
            for t in decision.transitions
        )
        if succeeded and data.get("cache_key"):
            await work.tx.record_cache_keys(
                [
                    (
                        data["cache_key"],
                        run.pipeline_id,
                        finished.task_id,
                        run.run_id,
                        finished.attempt,
                    )
                ]
            )
        work.results.append(
            AttemptResult(
                run.run_id,
                finished.task_id,
                finished.attempt,
                data.get("exit_code"),
                data.get("error_snippet"),
                data.get("stderr_tail"),
                _parse_time(data.get("ended_at")) or datetime.now(UTC),
            )
        )
        details: dict[str, Any] = {
            key: data.get(key) for key in ("exit_code", "signal", "error_snippet")
        }
        started, ended = _parse_time(data.get("started_at")), _parse_time(data.get("ended_at"))
        if started and ended:
            details["duration_seconds"] = round((ended - started).total_seconds(), 3)
        self._record(work.tx, run, decision.transitions, {finished.task_id: details})
        if succeeded:
            await self._announce_outputs(
                work, run, pipeline, finished.task_id, finished.attempt, counts
            )
        counts.applied += 1
        queued = sum(t.to_state == TaskState.QUEUED for t in decision.transitions)
        counts.tasks_queued += queued
        counts.retries_scheduled += sum(t.retry_at is not None for t in decision.transitions)
        counts.count_endings(decision.transitions)
        ended_at = _parse_time(data.get("ended_at"))
        if queued and ended_at is not None:
            counts.scheduling_latencies.append((datetime.now(UTC) - ended_at).total_seconds())

    async def _announce_outputs(
        self,
        work: _Work,
        run: LockedRun,
        pipeline: Pipeline,
        task_id: str,
        attempt: int,
        counts: BatchOutcome,
    ) -> None:
        """Record each output of a successful task as a dataset partition, announce it, and
        start what it triggers: pipelines chain through data, not through calls."""
        outputs = pipeline.tasks[task_id].outputs
        if not outputs:
            return
        values = template_values(
            batch_date=run.batch_date,
            run_id=run.run_id,
            attempt=attempt,
            task_id=task_id,
            pipeline_id=run.pipeline_id,
            params=resolve_params(pipeline.spec.params, run.params),
        )
        version = f"{run.run_id}/{attempt}"
        for ref, (uri, partition) in zip(outputs, pipeline.templates[task_id].outputs, strict=True):
            event = new_event(
                DATASET_PRODUCED,
                self._status.source,
                {
                    "dataset": ref.name,
                    "partition": partition.render(values),
                    "version": version,
                    "uri": uri.render(values),
                    "run_id": run.run_id,
                    "pipeline_id": run.pipeline_id,
                    "task_id": task_id,
                    "trace_id": run.trace_id,
                    "at": utc_timestamp(),
                },
                subject=ref.name,
                trace_id=run.trace_id,
            )
            data = event.data
            await work.tx.record_dataset_partition(
                ref.name, data["partition"], version, f"{run.pipeline_id}/{task_id}", event.id
            )
            work.tx.add_outbox(
                [OutboxRow(event.id, self._status.name, run.run_id, event.to_bytes())]
            )
            counts.datasets_recorded += 1
            await self._trigger(
                work, ref.name, data["partition"], version, run.trace_id, event.id, counts
            )

    # --- records -------------------------------------------------------------------------

    def _record(
        self,
        tx: Transaction,
        run: LockedRun,
        transitions: Sequence[Transition],
        details: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        """Append the transition log and one status event per transition."""
        now = datetime.now(UTC)
        tx.add_transitions(
            [
                TransitionRow(
                    run.run_id, t.task_id, t.attempt, t.from_state or None, t.to_state, t.reason
                )
                for t in transitions
            ]
        )
        events = [
            self._status_event(run, t, now, (details or {}).get(t.task_id or "", {}))
            for t in transitions
        ]
        tx.add_outbox(
            [
                OutboxRow(event.id, self._status.name, run.run_id, event.to_bytes())
                for event in events
            ]
        )

    def _status_event(
        self, run: LockedRun, t: Transition, now: datetime, details: Mapping[str, Any]
    ) -> CloudEvent:
        data: dict[str, Any] = {
            "run_id": run.run_id,
            "pipeline_id": run.pipeline_id,
            "batch_date": run.batch_date.isoformat(),
            "state": str(t.to_state),
            "previous_state": str(t.from_state) if t.from_state else None,
            "reason": t.reason,
            "trace_id": run.trace_id,
            "at": utc_timestamp(now),
        }
        if t.task_id is None:
            data["spec_hash"] = run.spec_hash
            return new_event(
                RUN_STATUS, self._status.source, data, subject=run.run_id, trace_id=run.trace_id
            )
        data.update(task_id=t.task_id, attempt=t.attempt or 0, **details)
        if t.retry_at is not None:
            data["retry_at"] = utc_timestamp(t.retry_at)
        return new_event(
            TASK_STATUS,
            self._status.source,
            data,
            subject=f"{run.run_id}/{t.task_id}",
            trace_id=run.trace_id,
        )

    @staticmethod
    def _ignore(tx: Transaction, event: CloudEvent, why: str, counts: BatchOutcome) -> None:
        run_id, task_id = event.data.get("run_id"), event.data.get("task_id")
        log.warning(
            "event.ignored",
            event_id=event.id,
            event_type=event.type,
            reason=why,
            run_id=run_id,
            task_id=task_id,
        )
        tx.add_ignored(IgnoredEvent(event.source, event.id, event.type, run_id, task_id, why))
        counts.ignored += 1


async def apply_reliably(
    coordinator: Coordinator, events: Sequence[CloudEvent]
) -> list[tuple[CloudEvent, str]]:
    """Apply ``events``, whatever happens; return the ones refused, with the reason.

    A transient failure (the database away, a lost race) is retried with backoff until it
    passes: nothing is acknowledged meanwhile. Any other failure splits the batch, so that
    only the event the database refuses is rejected and the rest apply.
    """
    delay = RETRY_FIRST_DELAY
    failure: Exception
    while True:
        try:
            await coordinator.apply(events)
            return []
        except TributaryError as exc:
            if not exc.retriable:
                failure = exc
                break
            log.warning("apply.retry", error=str(exc), events=len(events), delay=delay)
        except Exception as exc:
            failure = exc
            break
        await asyncio.sleep(delay)
        delay = min(delay * 2, RETRY_MAX_DELAY)
    if len(events) > 1:
        log.error("apply.batch_failed", error=repr(failure), events=len(events))
        rejected: list[tuple[CloudEvent, str]] = []
        for event in events:
            rejected.extend(await apply_reliably(coordinator, [event]))
        return rejected
    event = events[0]
    reason = f"the database refused to apply it: {failure!r}"
    log.error(
        "event.rejected",
        event_id=event.id,
        event_type=event.type,
        source=event.source,
        reason=reason,
    )
    return [(event, reason)]


def _jsonable(value: ParamValue) -> str | int | float | bool:
    return value.isoformat() if isinstance(value, date) else value


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _waits(
    pipeline: Pipeline, run_id: str, batch_date: date, params: Mapping[str, ParamValue]
) -> list[tuple[str, str, str, str]]:
    """The dataset partitions each task of a new run waits for."""
    found = []
    for task_id, task in pipeline.tasks.items():
        templates = pipeline.templates[task_id].waits
        for wait, compiled in zip(task.wait_for, templates, strict=True):
            dataset = getattr(wait, "dataset", None)
            if dataset is None:
                continue  # a polled check: run by the executor (not yet)
            values = template_values(
                batch_date=batch_date,
                run_id=run_id,
                attempt=1,
                task_id=task_id,
                pipeline_id=pipeline.id,
                params=params,
            )
            found.append((run_id, task_id, dataset, compiled[0].render(values)))
    return found
