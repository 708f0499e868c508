"""The in-process executor: claims queued tasks, runs them, reports their completions.

Claiming goes through the database (``FOR UPDATE SKIP LOCKED``), so any number of replicas
can run executors against one database. Completions are reported as ``task.completed`` events
and applied in batches through the same coordinator path as completions from Kafka.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from pathlib import Path

from service import metrics
from service.bus.dead_letter import DeadLetter, DeadLetters
from service.bus.envelope import TASK_COMPLETED, CloudEvent, new_event
from service.coordinator import Coordinator, apply_reliably
from service.engine.states import TaskState
from service.errors import TributaryError
from service.executor.attempt import (
    AttemptOutcome,
    completion_data,
    plan_claim,
    run_attempt,
    unrunnable,
)
from service.executor.process import ProcessExit
from service.observability import bound, get_logger
from service.pipelines import PipelineRegistry
from service.spec.params import resolve_params
from service.spec.render import template_values
from service.store import Capacity
from service.store.records import ClaimedAttempt

log = get_logger(__name__)


class CompletionBatcher:
    """Applies local completions in batches: one transaction for all that arrived together."""

    def __init__(
        self,
        coordinator: Coordinator,
        dead_letters: DeadLetters,
        topic: str,
        max_batch: int = 500,
    ) -> None:
        self._coordinator = coordinator
        self._dead_letters = dead_letters
        self._topic = topic  # named as their origin in dead letters
        # None marks the end: everything before it is applied, then run() returns.
        self._queue: asyncio.Queue[CloudEvent | None] = asyncio.Queue()
        self._max_batch = max_batch

    def submit(self, event: CloudEvent) -> None:
        self._queue.put_nowait(event)

    def close(self) -> None:
        """Let run() return once every completion submitted so far is applied."""
        self._queue.put_nowait(None)

    async def run(self) -> None:
        closing = False
        while not closing:
            batch: list[CloudEvent] = []
            item = await self._queue.get()
            while True:
                if item is None:
                    closing = True
                    break
                batch.append(item)
                if len(batch) >= self._max_batch or self._queue.empty():
                    break
                item = self._queue.get_nowait()
            if batch:
                refused = await apply_reliably(self._coordinator, batch)
                if refused:
                    await self._dead_letters.send(
                        [
                            DeadLetter(
                                event.data["run_id"].encode(), event.to_bytes(), reason, self._topic
                            )
                            for event, reason in refused
                        ]
                    )


class LocalExecutor:
    def __init__(
        self,
        coordinator: Coordinator,
        registry: PipelineRegistry,
        completions: CompletionBatcher,
        worker_id: str,
        event_source: str,
        log_dir: Path,
        max_parallel: int,
        poll_interval: float,
        lease_seconds: float,
        node: Capacity | None = None,
    ) -> None:
        self._coordinator = coordinator
        self._registry = registry
        self._completions = completions
        self._worker_id = worker_id
        self._source = f"{event_source}/worker/{worker_id}"
        self._log_dir = log_dir
        self._max_parallel = max_parallel
        self._poll_interval = poll_interval
        self._lease_seconds = lease_seconds
        # What this node offers; each running attempt reserves its task's resources.
        self._node = node or Capacity(max_parallel, float("inf"), 2**31 - 1)
        self._running: dict[asyncio.Task[None], tuple[float, int]] = {}
        self._interrupt = asyncio.Event()  # set at shutdown, after the drain timeout
        self._wakeup = asyncio.Event()
        self._accepting = True

    def wake(self) -> None:
        self._wakeup.set()

    @property
    def running(self) -> int:
        return len(self._running)

    def free(self) -> Capacity:
        """Slots, cores and memory not reserved by running attempts."""
        cpu = sum(c for c, _ in self._running.values())
        memory = sum(m for _, m in self._running.values())
        return Capacity(
            self._max_parallel - len(self._running),
            self._node.cpu_cores - cpu,
            self._node.memory_mb - memory,
            self._node.pools,
        )

    async def run(self) -> None:
        while self._accepting:
            free = self.free()
            claims = []
            if free.slots > 0:
                claims = await self._coordinator.claim(self._worker_id, free, self._lease_seconds)
            for claim in claims:
                if claim.queued_at is not None:
                    wait = (claim.started_at - claim.queued_at).total_seconds()
                    metrics.QUEUE_WAIT.observe(max(wait, 0.0))
                task = asyncio.create_task(
                    self._execute(claim),
                    name=f"attempt {claim.run_id}/{claim.task_id}/{claim.attempt}",
                )
                self._running[task] = (claim.cpu_cores, claim.memory_mb)
                task.add_done_callback(self._finished)
            metrics.TASKS_RUNNING.set(len(self._running))
            metrics.FREE_SLOTS.set(self._max_parallel - len(self._running))
            if claims and len(claims) == free.slots:
                continue  # there may be more: claim again once a slot frees
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self._poll_interval)
            self._wakeup.clear()

    async def heartbeat(self) -> None:
        """Renew the leases of this worker's running attempts, three times per lease."""
        while True:
            await asyncio.sleep(self._lease_seconds / 3)
            if self._running:
                await self._coordinator.renew_leases(self._worker_id, self._lease_seconds)

    async def stop(self, drain_timeout: float) -> None:
        """Stop claiming; let running attempts finish for ``drain_timeout`` seconds, then
        interrupt the rest (SIGTERM, grace, SIGKILL) and report them as interrupted: failed,
        retryable, applied before the service exits."""
        self._accepting = False
        self.wake()
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
            started = datetime.now(UTC)
            try:
                done = await self._run_attempt(claim)
            except (TributaryError, OSError, KeyError) as exc:
                done = unrunnable(exc)
            metrics.TASK_DURATION.labels(str(done.outcome)).observe(
                (datetime.now(UTC) - started).total_seconds()
            )
            log.info(
                "attempt.ended",
                outcome=done.outcome,
                exit_code=done.result.exit_code,
                signal=done.result.signal,
                reason=done.reason,
                seconds=(datetime.now(UTC) - started).total_seconds(),
            )
            data = completion_data(
                claim.run_id, claim.task_id, claim.attempt, done, self._worker_id, started
            )
            self._completions.submit(
                new_event(
                    TASK_COMPLETED,
                    self._source,
                    data,
                    subject=f"{claim.run_id}/{claim.task_id}",
                    trace_id=claim.trace_id,
                )
            )

    async def _run_attempt(self, claim: ClaimedAttempt) -> AttemptOutcome:
        pipeline = await self._registry.version(claim.pipeline_id, claim.spec_hash)
        spec = pipeline.tasks[claim.task_id]
        plan = plan_claim(pipeline, claim)
        log_path = self._log_dir / claim.run_id / claim.task_id / f"{claim.attempt}.log"
        if not spec.cache:
            return await run_attempt(plan, log_path, self._interrupt)
        params = resolve_params(pipeline.spec.params, claim.params)
        values = template_values(
            batch_date=claim.batch_date,
            run_id=claim.run_id,
            attempt=claim.attempt,
            task_id=claim.task_id,
            pipeline_id=claim.pipeline_id,
            params=params,
        )
        inputs = [
            (ref.name, partition.render(values))
            for ref, (_, partition) in zip(
                spec.inputs, pipeline.templates[claim.task_id].inputs, strict=True
            )
        ]
        cache_key = await self._coordinator.cache_key(pipeline, claim.task_id, plan.argv, inputs)
        earlier = await self._coordinator.cached_success(cache_key)
        if earlier is not None:
            why = (
                f"cache_hit: same spec, command and inputs as run {earlier[0]} attempt {earlier[1]}"
            )
            return AttemptOutcome(
                ProcessExit(None, None, None, None), TaskState.SKIPPED, False, why
            )
        done = await run_attempt(plan, log_path, self._interrupt)
        return AttemptOutcome(done.result, done.outcome, done.retryable, done.reason, cache_key)
