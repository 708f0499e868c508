"""The in-process executor: claims queued tasks that fit this node, runs each as an attempt,
and submits its completion.

Claiming goes through the database (``FOR UPDATE SKIP LOCKED``), so any number of replicas
run executors against one database. Each running attempt reserves its task's cores and memory
on the node; the claim asks only for what is still free. Completions are applied in batches
(``loops/completions.py``) through the same path as completions from Kafka.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime
from pathlib import Path

from service import metrics
from service.clock import utc_now
from service.engine.states import TaskState
from service.errors import TributaryError
from service.events import CloudEvent, new_event
from service.execution.attempt import AttemptOutcome, completion, run_attempt, unrunnable
from service.execution.cache import cache_key
from service.execution.process import ProcessExit
from service.loops.completions import CompletionBatcher
from service.observability import bound, get_logger
from service.orchestrator.claims import Claimer, launch_for
from service.orchestrator.work_hub import Work, WorkHub
from service.pipelines import PipelineRegistry
from service.store import Store
from service.store.records import ClaimBudget, ClaimedAttempt
from service.supervision import Loop, persistently

log = get_logger(__name__)

# What may go wrong preparing one attempt (rendering, files): the attempt fails, retryable.
UNRUNNABLE = (TributaryError, OSError, ValueError, OverflowError)


class LocalExecutor(Loop):
    name = "executor"

    def __init__(
        self,
        *,
        claimer: Claimer,
        registry: PipelineRegistry,
        store: Store,
        completions: CompletionBatcher,
        hub: WorkHub,
        worker_id: str,
        event_source: str,
        log_dir: Path,
        node: ClaimBudget,
        lease_seconds: float,
        poll_interval: float,
    ) -> None:
        super().__init__(idle_wait=poll_interval)
        self._claimer = claimer
        self._registry = registry
        self._store = store
        self._completions = completions
        self._worker_id = worker_id
        self._source = f"{event_source}/worker/{worker_id}"
        self._log_dir = log_dir
        self._node = node  # what this node offers: slots, cores, memory, pool sizes
        self._lease_seconds = lease_seconds
        self._running: dict[asyncio.Task[None], ClaimedAttempt] = {}
        self._interrupt = asyncio.Event()  # set at shutdown, after the drain timeout
        self._accepting = True
        hub.subscribe(Work.TASKS, self.wake)

    @property
    def running(self) -> int:
        return len(self._running)

    def free(self) -> ClaimBudget:
        """What running attempts leave of the node."""
        return self._node.less(list(self._running.values()))

    async def step(self) -> bool:
        free = self.free()
        if not self._accepting or free.slots <= 0:
            return False
        claims = await self._claimer.claim(self._worker_id, free, self._lease_seconds)
        for claim in claims:
            if claim.queued_at is not None:
                wait = (claim.started_at - claim.queued_at).total_seconds()
                metrics.QUEUE_WAIT.observe(max(wait, 0.0))
            task = asyncio.create_task(
                self._execute(claim),
                name=f"attempt {claim.run_id}/{claim.task_id}/{claim.attempt}",
            )
            self._running[task] = claim
            task.add_done_callback(self._finished)
        metrics.TASKS_RUNNING.set(len(self._running))
        metrics.FREE_SLOTS.set(self._node.slots - len(self._running))
        return bool(claims) and len(claims) == free.slots

    async def drain(self, drain_timeout: float) -> None:
        """Stop claiming; let running attempts finish for ``drain_timeout`` seconds, then
        interrupt the rest (SIGTERM, grace, SIGKILL) and report them as interrupted: failed,
        retryable, applied before the service exits."""
        self._accepting = False
        if not self._running:
            return
        log.info("executor.draining", running=len(self._running), timeout=drain_timeout)
        _, still_running = await asyncio.wait(set(self._running), timeout=drain_timeout)
        if still_running:
            log.warning("executor.interrupting", running=len(still_running))
            self._interrupt.set()
            await asyncio.wait(still_running)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("attempt.crashed", task=task.get_name(), error=repr(task.exception()))
        self.wake()

    async def _execute(self, claim: ClaimedAttempt) -> None:
        with bound(**claim.log_context()):
            started = utc_now()
            try:
                done = await self._run_attempt(claim)
            except UNRUNNABLE as exc:
                done = unrunnable(exc)
            seconds = (utc_now() - started).total_seconds()
            metrics.TASK_DURATION.labels(str(done.outcome)).observe(seconds)
            log.info(
                "attempt.ended",
                outcome=done.outcome,
                exit_code=done.result.exit_code,
                signal=done.result.signal,
                reason=done.reason,
                seconds=seconds,
            )
            self._completions.submit(self._report(claim, done, started))

    def _report(self, claim: ClaimedAttempt, done: AttemptOutcome, started: datetime) -> CloudEvent:
        payload = completion(
            claim.run_id, claim.task_id, claim.attempt, done, self._worker_id, started
        )
        subject = f"{claim.run_id}/{claim.task_id}"
        return new_event(payload, self._source, subject, claim.trace_id)

    async def _run_attempt(self, claim: ClaimedAttempt) -> AttemptOutcome:
        pipeline = await persistently(
            lambda: self._registry.version(claim.pipeline_id, claim.spec_hash), self.name
        )
        launch = launch_for(pipeline, claim)
        log_path = self._log_dir / claim.run_id / claim.task_id / f"{claim.attempt}.log"
        if not pipeline.tasks[claim.task_id].cache:
            return await run_attempt(launch, log_path, self._interrupt)
        versions = await persistently(lambda: self._store.input_versions(launch.inputs), self.name)
        key = cache_key(pipeline.spec_hash, claim.task_id, launch, versions)
        earlier = await persistently(lambda: self._store.cached_success(key), self.name)
        if earlier is not None:
            why = f"cache_hit: same spec, command and inputs as run {earlier.run_id} "
            why += f"attempt {earlier.attempt}"
            return AttemptOutcome(
                ProcessExit(None, None, None, None), TaskState.SKIPPED, False, why
            )
        done = await run_attempt(launch, log_path, self._interrupt)
        return dataclasses.replace(done, cache_key=key)
