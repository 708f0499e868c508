"""Starting runs: when data is ready (``dataset.ready``, or another run's output), and by hand
(``run.requested``). The engine says which runs to start (``engine/triggers.py``); this module
records the data and inserts each new run once, queued; admission starts it."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from service.clock import utc_now
from service.engine.states import RunState
from service.engine.triggers import (
    BatchDates,
    NewTask,
    Refusal,
    RunToStart,
    deadline_for,
    new_run_id,
    new_tasks,
    ready_to_start,
    run_for_request,
    runs_for_partition,
    stored_params,
    task_waits,
)
from service.errors import ConcurrencyError
from service.events import CloudEvent, DatasetProduced, DatasetReady, RunRequested, TaskCompleted
from service.observability import get_logger
from service.orchestrator.outgoing import Outgoing
from service.orchestrator.working_set import WorkingSet
from service.pipelines import PipelineRegistry
from service.spec.params import resolve_params
from service.spec.render import template_values
from service.store.records import DatasetPartition, LockedRun, NewRun, OutputRecord, RunCreation

log = get_logger(__name__)

RUN_ID_TRIES = 8  # fresh random suffixes tried when two runs are created in the same second
RUN_ID_SUFFIX_BYTES = 2


def new_trace_id() -> str:
    return secrets.token_hex(16)


class RunStarter:
    def __init__(
        self,
        *,
        registry: PipelineRegistry,
        outgoing: Outgoing,
        remote_by_default: bool,
        dates: BatchDates,
        default_timeout: timedelta | None = None,
    ) -> None:
        self._registry = registry
        self._outgoing = outgoing
        self._remote_by_default = remote_by_default
        self._dates = dates
        self._default_timeout = default_timeout

    async def dataset_ready(self, ws: WorkingSet, event: CloudEvent, ready: DatasetReady) -> None:
        """Record the announced partition; start the runs it completes."""
        version = ready.version or event.id
        ws.tx.add_partition(
            DatasetPartition(ready.dataset, ready.partition, version, ready.producer, event.id)
        )
        ws.outcome.datasets_recorded += 1
        trace_id = event.trace_id or new_trace_id()
        await self.start_triggered(ws, ready.dataset, ready.partition, version, trace_id, event.id)
        ws.outcome.applied += 1

    async def run_requested(self, ws: WorkingSet, event: CloudEvent, request: RunRequested) -> None:
        """A run by hand; each request event creates at most one run."""
        deployed = self._registry.current
        start = run_for_request(
            deployed.get(request.pipeline_id),
            pipeline_id=request.pipeline_id,
            deployed=deployed,
            batch_date=request.batch_date,
            params=request.params or {},
            requested_by=request.requested_by or event.source,
            reason=request.reason,
            trigger_key=f"manual:{event.source}:{event.id}",
            dates=self._dates,
        )
        if isinstance(start, Refusal):
            ws.ignore(event, start.reason)
            return
        self.plan(ws, start, event.trace_id or new_trace_id())
        ws.outcome.applied += 1

    async def start_triggered(
        self,
        ws: WorkingSet,
        dataset: str,
        partition: str,
        version: str,
        trace_id: str,
        cause: str,
    ) -> None:
        """Start a run of each pipeline whose dataset triggers are now all ready."""
        triggered = self._registry.triggered_by(dataset)
        starts, refusals = runs_for_partition(triggered, dataset, partition, version, self._dates)
        for refusal in refusals:
            log.error(
                f"trigger.{refusal.kind}",
                pipeline_id=refusal.pipeline_id,
                event_id=cause,
                reason=refusal.reason,
            )
        for start in starts:
            announced = await ws.tx.ready_datasets(start.needs) if start.needs else set()
            if not ready_to_start(start, announced):
                continue
            self.plan(ws, start, trace_id)

    async def announce_outputs(
        self, ws: WorkingSet, run_id: str, task_id: str, attempt: int, done: TaskCompleted
    ) -> None:
        """Record each declared output of a successful task as a dataset partition, with what
        produced it (``done``: the attempt), publish it, and start what it triggers: pipelines
        chain through data, not through calls."""
        run, pipeline = ws.runs[run_id], ws.pipelines[run_id]
        outputs = pipeline.tasks[task_id].outputs
        if not outputs:
            return
        params = resolve_params(pipeline.spec.params, run.params)
        values = template_values(
            batch_date=run.batch_date,
            run_id=run.run_id,
            attempt=attempt,
            task_id=task_id,
            pipeline_id=run.pipeline_id,
            params=params,
        )
        inputs = tuple(
            (ref.name, partition.render(values))
            for ref, (_, partition) in zip(
                pipeline.tasks[task_id].inputs, pipeline.templates[task_id].inputs, strict=True
            )
        )
        version = f"{run.run_id}/{attempt}"
        for ref, (uri, partition) in zip(outputs, pipeline.templates[task_id].outputs, strict=True):
            produced = DatasetProduced(
                dataset=ref.name,
                partition=partition.render(values),
                version=version,
                uri=uri.render(values),
                run_id=run.run_id,
                pipeline_id=run.pipeline_id,
                task_id=task_id,
                trace_id=run.trace_id,
                at=utc_now(),
            )
            row = self._outgoing.dataset_produced(run, produced)
            producer = f"{run.pipeline_id}/{task_id}"
            ws.tx.add_partition(
                DatasetPartition(ref.name, produced.partition, version, producer, row.event_id)
            )
            await ws.tx.record_output(_output_record(produced, attempt, inputs, params, done))
            ws.tx.add_outbox([row])
            ws.outcome.datasets_recorded += 1
            await self.start_triggered(
                ws, ref.name, produced.partition, version, run.trace_id, row.event_id
            )

    def plan(self, ws: WorkingSet, start: RunToStart, trace_id: str) -> None:
        """Have the run for the start's trigger key created, queued, unless it exists: with
        every run the transaction starts, in one statement before its moves are written."""
        key = (start.pipeline.id, start.trigger_key)
        if key in ws.planned_runs:
            log.info("run.exists", pipeline_id=key[0], trigger_key=key[1])
            return
        ws.planned_runs[key] = (start, trace_id)
        ws.before_write(self.create_planned)

    async def create(self, ws: WorkingSet, start: RunToStart, trace_id: str) -> str | None:
        """Create the run for the start's trigger key now, queued, unless it exists; its id."""
        self.plan(ws, start, trace_id)
        created = await self.create_planned(ws)
        return created.get((start.pipeline.id, start.trigger_key))

    async def create_planned(self, ws: WorkingSet) -> dict[tuple[str, str], str]:
        """Insert the planned runs not there yet; the id of each created, by (pipeline,
        trigger key)."""
        planned, ws.planned_runs = ws.planned_runs, {}
        if not planned:
            return {}
        todo = dict(planned)
        tasks: dict[tuple[str, str], list[NewTask]] = {}  # runs of a pipeline version share them
        for start, _ in todo.values():
            version = (start.pipeline.id, start.pipeline.spec_hash)
            if version not in tasks:
                tasks[version] = new_tasks(
                    start.pipeline, self._remote_by_default, self._default_timeout
                )
        created: dict[tuple[str, str], NewRun] = {}
        for _ in range(RUN_ID_TRIES):
            taken: set[str] = set()  # one statement may not give two runs one id
            creations = {
                key: self._creation(
                    start, trace_id, tasks[start.pipeline.id, start.pipeline.spec_hash], taken
                )
                for key, (start, trace_id) in todo.items()
            }
            inserted = await ws.tx.create_runs(list(creations.values()))
            for key, creation in creations.items():
                if creation.run.run_id in inserted:
                    created[key] = creation.run
                    del todo[key]
            for key in await ws.tx.existing_trigger_keys(list(todo)) if todo else ():
                log.info("run.exists", pipeline_id=key[0], trigger_key=key[1])
                del todo[key]
            if not todo:
                break
        else:
            raise ConcurrencyError(f"no free run id after {RUN_ID_TRIES} tries")
        for key, run in created.items():
            self._created(ws, planned[key][0], run)
        return {key: run.run_id for key, run in created.items()}

    def _creation(
        self, start: RunToStart, trace_id: str, tasks: list[NewTask], taken: set[str]
    ) -> RunCreation:
        """The rows of a new run for ``start``, under a fresh run id not in ``taken``."""
        pipeline = start.pipeline
        run_id = new_run_id(utc_now(), secrets.token_hex(RUN_ID_SUFFIX_BYTES))
        while run_id in taken:
            run_id = new_run_id(utc_now(), secrets.token_hex(RUN_ID_SUFFIX_BYTES))
        taken.add(run_id)
        run = NewRun(
            run_id=run_id,
            pipeline_id=pipeline.id,
            spec_hash=pipeline.spec_hash,
            batch_date=start.batch_date,
            trigger_key=start.trigger_key,
            params=stored_params(start.params),
            trace_id=trace_id,
            deadline_at=deadline_for(pipeline, start.batch_date),
        )
        waits, checks = task_waits(pipeline, run.run_id, start.batch_date, start.params)
        return RunCreation(run, tasks, waits, checks)

    @staticmethod
    def _created(ws: WorkingSet, start: RunToStart, run: NewRun) -> None:
        """A run created: in the working set, logged, admitted once committed."""
        pipeline = start.pipeline
        locked = LockedRun(
            run.run_id,
            pipeline.id,
            pipeline.spec_hash,
            start.batch_date,
            RunState.QUEUED,
            run.trace_id,
            run.params,
        )
        ws.add_new_run(locked, pipeline)
        ws.created(run.run_id, start.reason)  # admitted once committed (orchestrator/admission.py)
        ws.outcome.created.append(  # logged once committed: a rollback creates nothing
            {
                "run_id": run.run_id,
                "pipeline_id": pipeline.id,
                "batch_date": str(start.batch_date),
                "trace_id": run.trace_id,
            }
        )


def _output_record(
    produced: DatasetProduced,
    attempt: int,
    inputs: tuple[tuple[str, str], ...],
    params: Mapping[str, Any],
    done: TaskCompleted,
) -> OutputRecord:
    took = None
    if done.started_at is not None and done.ended_at is not None:
        took = round(max((done.ended_at - done.started_at).total_seconds(), 0.0), 3)
    return OutputRecord(
        produced.run_id,
        produced.task_id,
        attempt,
        produced.dataset,
        produced.partition,
        produced.version,
        produced.uri,
        inputs,
        params,
        took,
        done.exit_code,
        done.result,
    )
