"""The in-process executor: claims queued tasks that fit this node, has the attempt keeper run
each one, and submits its completion.

Claiming goes through the database (``FOR UPDATE SKIP LOCKED``), so any number of replicas
run executors against one database. Each running attempt reserves its task's cores and memory
on the node; the claim asks only for what is still free. The attempts run in the attempt
keeper (``execution/keeper.py``), which outlives this process: at start the executor takes
over what its predecessor left there (attempts still running, outcomes not yet reported).
Completions are applied in batches (``loops/completions.py``) through the same path as
completions from Kafka, each with an id derived from its attempt.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from service import metrics
from service.clock import utc_now
from service.engine.model import AttemptKey
from service.engine.states import TaskState
from service.errors import InfrastructureError, TributaryError
from service.events import CloudEvent, new_event
from service.execution.attempt import AttemptOutcome, completion, unrunnable
from service.execution.cache import cache_key
from service.execution.keeper_client import KeeperClient, lost_outcome
from service.execution.keeping import Ended
from service.execution.launch import Launch
from service.execution.process import ProcessExit
from service.loops.completions import CompletionBatcher
from service.observability import bound, get_logger
from service.orchestrator.claims import UNRENDERABLE, Claimer
from service.orchestrator.outcome import BatchOutcome
from service.orchestrator.work_hub import Work, WorkHub
from service.pipelines import PipelineRegistry
from service.spec.pipeline import Pipeline
from service.store import Store, Transaction
from service.store.records import CacheHit, ClaimBudget, ClaimedAttempt
from service.supervision import Loop, persistently

log = get_logger(__name__)

# What may go wrong preparing one attempt (files, the keeper): the attempt fails, retryable.
UNRUNNABLE = (TributaryError, OSError, ValueError, OverflowError)
STOPPING = "interrupted: the service stopped"


def key_of(claim: ClaimedAttempt) -> AttemptKey:
    return AttemptKey(claim.run_id, claim.task_id, claim.attempt)


class LocalExecutor(Loop):
    name = "executor"

    def __init__(
        self,
        *,
        claimer: Claimer,
        registry: PipelineRegistry,
        store: Store,
        keeper: KeeperClient,
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
        self._keeper = keeper
        self._completions = completions
        self._worker_id = worker_id
        # Stable across restarts, so a completion reported twice is the same event.
        self._source = f"{event_source}/executor"
        self._log_dir = log_dir
        self._node = node  # what this node offers: slots, cores, memory, pool sizes
        self._lease_seconds = lease_seconds
        self._running: dict[asyncio.Task[None], ClaimedAttempt] = {}
        self._taken_over = False
        self._unsettled: set[AttemptKey] = set()  # claimed here, completion not yet applied
        self._claims_unknown = False  # a round failed: a claim may have committed unseen
        self._superseded: set[asyncio.Task[None]] = set()  # superseded attempts being stopped
        self._accepting = True
        self.adopted = 0  # attempts taken over from a predecessor, since start
        # One claim at a time: this loop's own, or one in a batch of its completions.
        self._claiming = asyncio.Lock()
        self._claimed_within: list[ClaimedAttempt] | None = None  # None: not holding the lock
        self._wake_after_batch = False
        completions.follow_up = self  # the batches of its completions claim its free room
        hub.subscribe(Work.TASKS, self.wake)

    @property
    def running(self) -> int:
        return len(self._running)

    def free(self) -> ClaimBudget:
        """What running attempts leave of the node."""
        return self._node.less(list(self._running.values()))

    def held(self) -> list[AttemptKey]:
        """The attempts this executor runs now."""
        return [key_of(claim) for claim in self._running.values()]

    async def step(self) -> bool:
        if not self._taken_over:
            await self._take_over()
            self._taken_over = True
        if self._claims_unknown:
            await self._find_unseen_claims()
            self._claims_unknown = False
        async with self._claiming:
            free = self.free()
            if not self._accepting or free.slots <= 0:
                return False
            claims = await self._claimer.claim(self._worker_id, free, self._lease_seconds)
            self._start(claims)
        return bool(claims) and len(claims) == free.slots

    def _start(self, claims: list[ClaimedAttempt]) -> None:
        for claim in claims:
            self._track(claim, self._execute(claim))
        metrics.TASKS_RUNNING.set(len(self._running))
        metrics.FREE_SLOTS.set(self._node.slots - len(self._running))

    # A batch of this executor's completions claims what they queued in its own transaction
    # (orchestrator/writing.py's FollowUp): one transaction per hop from a task to the next.

    async def within(self, tx: Transaction, outcome: BatchOutcome) -> None:
        """Claim for the room the completed attempts left, unless a claim of this loop's is
        under way (it may have counted that room as taken: it runs again after the commit)."""
        self._wake_after_batch = False
        if self._claiming.locked():
            self._wake_after_batch = True
            return
        await self._claiming.acquire()
        self._claimed_within = []
        free = self.free()
        if not self._accepting or free.slots <= 0:
            return
        claims = await self._claimer.claim_within(tx, self._worker_id, free, self._lease_seconds)
        self._claimed_within = claims
        # What it took need wake no one; room left over and tasks passed over may need a look.
        outcome.tasks_queued = max(0, outcome.tasks_queued - len(claims))
        self._wake_after_batch = len(claims) == free.slots or tx.passed_over > 0

    def committed(self) -> None:
        claims = self._release_claiming()
        if claims:
            self._claimer.claimed(claims)
            self._start(claims)
        if self._wake_after_batch:
            self.wake()

    def abandoned(self) -> None:
        """The batch failed: if it claimed, the claim may have committed all the same."""
        if self._release_claiming():
            self._claims_unknown = True
        self.wake()

    def _release_claiming(self) -> list[ClaimedAttempt]:
        claims, self._claimed_within = self._claimed_within, None
        if claims is None:
            return []
        self._claiming.release()
        return claims

    async def recover(self) -> None:
        self._claims_unknown = True

    async def _find_unseen_claims(self) -> None:
        """A claim's connection broke before its answer came: it may have committed. The
        database says what this executor holds; what it does not know of, it runs now."""
        held = await self._store.attempts_held_by(self._worker_id)
        for claim in held:
            if key_of(claim) not in self._unsettled:
                log.warning("attempt.claim_found", **claim.log_context())
                self._track(claim, self._execute(claim))

    async def _take_over(self) -> None:
        """What a predecessor left in the keeper: report what ended, adopt what still runs as
        the same attempt, stop what was judged lost meanwhile."""
        inventory = await self._keeper.open()
        for ended in inventory.ended:
            self._report(ended, ended.key)
        running = list(inventory.running)
        asked = time.monotonic()  # the lease counts from before the statement
        adopted = await self._store.adopt_attempts(self._worker_id, running, self._lease_seconds)
        kept = {key_of(claim): claim for claim in adopted}
        # Renewed: say so now, not at the next heartbeat, which may come after the keeper's
        # deadline (set by the predecessor's last word) when restarts follow each other.
        await self._keeper.confirm(kept, self._lease_seconds - (time.monotonic() - asked))
        for key, waiting in inventory.running.items():
            claim = kept.get(key)
            if claim is None:
                await self._keeper.interrupt(key, "stopped: its run no longer expects it")
                self._track_superseded(key, waiting)
                continue
            log.info("attempt.adopted", **claim.log_context())
            self._track(claim, self._adopted(claim, waiting))
        self.adopted += len(kept)
        if inventory.ended or inventory.running:
            log.info(
                "attempts.taken_over",
                ended_meanwhile=len(inventory.ended),
                still_running=len(kept),
                stopped=len(inventory.running) - len(kept),
            )

    def _track(self, claim: ClaimedAttempt, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(
            work, name=f"attempt {claim.run_id}/{claim.task_id}/{claim.attempt}"
        )
        self._running[task] = claim
        self._unsettled.add(key_of(claim))
        task.add_done_callback(self._finished)

    def _track_superseded(self, key: AttemptKey, waiting: asyncio.Future[Ended]) -> None:
        async def forget_when_stopped() -> None:
            await waiting
            await self._keeper.forget(key)

        task = asyncio.create_task(forget_when_stopped(), name=f"stop {key}")
        self._superseded.add(task)
        task.add_done_callback(self._superseded.discard)

    async def drain(self, drain_timeout: float) -> None:
        """Stop claiming; let running attempts finish for ``drain_timeout`` seconds, then
        interrupt the rest (SIGTERM, grace, SIGKILL) and report them lost (not the tasks'
        fault), applied before the service exits."""
        self._accepting = False
        if not self._running:
            return
        log.info("executor.draining", running=len(self._running), timeout=drain_timeout)
        _, still_running = await asyncio.wait(set(self._running), timeout=drain_timeout)
        if still_running:
            log.warning("executor.interrupting", running=len(still_running))
            for task in still_running:
                claim = self._running.get(task)
                if claim is not None:
                    await self._keeper.interrupt(key_of(claim), STOPPING)
            await asyncio.wait(still_running)

    def _finished(self, task: asyncio.Task[None]) -> None:
        """Its room is free: the batch that applies its completion claims for it."""
        self._running.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("attempt.crashed", task=task.get_name(), error=repr(task.exception()))
            self.wake()

    async def _execute(self, claim: ClaimedAttempt) -> None:
        with bound(**claim.log_context()):
            started = utc_now()
            try:
                ended = await self._run_attempt(claim)
            except InfrastructureError as exc:  # the keeper would not start: not the task's
                ended = Ended(key_of(claim), lost_outcome(f"lost: {exc}"), started, utc_now())
            except UNRUNNABLE as exc:
                ended = Ended(key_of(claim), unrunnable(exc), started, utc_now())
            self._report(ended, key_of(claim))

    async def _adopted(self, claim: ClaimedAttempt, waiting: asyncio.Future[Ended]) -> None:
        with bound(**claim.log_context()):
            self._report(await waiting, key_of(claim))

    def _report(self, ended: Ended, key: AttemptKey) -> None:
        done = ended.outcome
        seconds = (ended.ended_at - ended.started_at).total_seconds()
        log.info(
            "attempt.ended",
            outcome=done.outcome,
            exit_code=done.result.exit_code,
            signal=done.result.signal,
            reason=done.reason,
            seconds=seconds,
        )
        self._completions.submit(self._event(ended), after=lambda: self._settled(key))

    async def _settled(self, key: AttemptKey) -> None:
        """Its completion is applied: the database no longer counts it as held here."""
        self._unsettled.discard(key)
        await self._keeper.forget(key)

    def _event(self, ended: Ended) -> CloudEvent:
        key = ended.key
        payload = completion(
            key.run_id,
            key.task_id,
            key.attempt,
            ended.outcome,
            self._worker_id,
            ended.started_at,
            ended.ended_at,
        )
        event_id = f"completed:{key}"
        return new_event(payload, self._source, f"{key.run_id}/{key.task_id}", event_id=event_id)

    async def _run_attempt(self, claim: ClaimedAttempt) -> Ended:
        pipeline = await persistently(
            lambda: self._registry.version(claim.pipeline_id, claim.spec_hash), self.name
        )
        try:
            launch = self._claimer.launch(pipeline, claim)
        except UNRENDERABLE as exc:  # will not render next time either: not retried
            now = utc_now()
            return Ended(key_of(claim), unrunnable(exc, retryable=False), now, now)
        log_path = self._log_dir / claim.run_id / claim.task_id / f"{claim.attempt}.log"
        if not pipeline.tasks[claim.task_id].cache:
            return await self._keeper.run(key_of(claim), launch, log_path)
        versions = await persistently(lambda: self._store.input_versions(launch.inputs), self.name)
        key = cache_key(pipeline.spec_hash, claim.task_id, launch, versions)
        earlier = await persistently(lambda: self._store.cached_success(key), self.name)
        if earlier is not None:
            refusal = await persistently(
                lambda: self._cache_refusal(pipeline, claim, launch, earlier), self.name
            )
            if refusal is None:
                return _cache_hit(claim, earlier.run_id, earlier.attempt)
            log.info("cache.not_reused", **claim.log_context(), reason=refusal)
        ended = await self._keeper.run(key_of(claim), launch, log_path)
        return dataclasses.replace(ended, outcome=dataclasses.replace(ended.outcome, cache_key=key))

    async def _cache_refusal(
        self, pipeline: Pipeline, claim: ClaimedAttempt, launch: Launch, earlier: CacheHit
    ) -> str | None:
        """Why an earlier success with the same key may not be reused, or None: every
        upstream task of this run must have been skipped too (one that ran may have changed
        what this task reads beyond its declared inputs), and the outputs it would reuse
        must still be the current versions."""
        upstream = pipeline.graph.predecessors[claim.task_id]
        if upstream:
            states = await self._store.task_states_of(claim.run_id)
            ran = [t for t in upstream if states.get(t) is not TaskState.SKIPPED]
            if ran:
                return f"upstream {', '.join(sorted(ran))} ran in this run"
        reused = f"{earlier.run_id}/{earlier.attempt}"
        current = await self._store.input_versions(launch.outputs)
        for output in launch.outputs:
            if current.get(output) != reused:
                return (
                    f"output {output[0]} {output[1]} is at version {current.get(output)}, "
                    f"not {reused}'s"
                )
        return None


def _cache_hit(claim: ClaimedAttempt, run_id: str, attempt: int) -> Ended:
    why = f"cache_hit: same spec, command and inputs as run {run_id} attempt {attempt}"
    nothing_ran = ProcessExit(None, None, None, None)
    outcome = AttemptOutcome(nothing_ran, TaskState.SKIPPED, False, why)
    now = utc_now()
    return Ended(key_of(claim), outcome, now, now)
