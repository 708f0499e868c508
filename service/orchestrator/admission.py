"""Admission: queued runs start while their pipeline has room (``max_active_runs``) and no
other run of the same batch date is running (``engine/admission.py`` decides which).

Runs are created queued (a paused pipeline's stay queued until it is unpaused); admission
runs in a transaction of its own right after the one that created or ended runs committed,
under a per-pipeline advisory lock, so replicas never admit past the limit together. A sweep
(the timer loop) admits what a crash between the two transactions left queued.
"""

from __future__ import annotations

from collections.abc import Iterable

from service.engine.admission import runs_to_admit
from service.engine.decide import decide
from service.engine.model import RunCreated
from service.engine.states import RunState
from service.orchestrator.outcome import BatchOutcome
from service.orchestrator.writing import Writing
from service.store import Transaction


class Admission:
    def __init__(self, writing: Writing) -> None:
        self._writing = writing
        self._store, self._registry = writing.store, writing.registry

    async def admit(self, pipeline_ids: Iterable[str]) -> BatchOutcome:
        """Start the queued runs of these pipelines that may start now."""
        outcome = BatchOutcome()
        if not (wanted := sorted(set(pipeline_ids))):
            return outcome
        # Most runs end with none queued behind them: one read instead of a locked round.
        # A run queued after this read is admitted by the transaction that queued it.
        if not (wanted := sorted(await self._store.pipelines_waiting_among(wanted))):
            return outcome
        async with self._writing.working(outcome) as ws:
            chosen: list[str] = []
            for pipeline_id in wanted:  # in id order, as every taker of these locks
                chosen += await self._choose(ws.tx, pipeline_id)
            await ws.load(chosen)
            for run_id in sorted(chosen):
                if ws.run_state(run_id) is not RunState.QUEUED:
                    continue
                graph = ws.pipelines[run_id].graph
                ws.apply(run_id, decide(graph, ws.snapshot(run_id), RunCreated()).transitions)
        return outcome

    async def sweep(self) -> BatchOutcome:
        """Admit whatever may start in every pipeline that has queued runs."""
        return await self.admit(await self._store.pipelines_with_waiting_runs())

    async def _choose(self, tx: Transaction, pipeline_id: str) -> list[str]:
        await tx.lock_admission(pipeline_id)
        if await tx.is_paused(pipeline_id):
            return []  # its runs wait, queued, until it is unpaused
        limit = await self._max_active_runs(tx, pipeline_id)
        # One candidate per batch date: at most `limit` are needed even if every running
        # date is among them.
        waiting = await tx.waiting_runs(pipeline_id, limit) if limit > 0 else []
        if not waiting:
            return []  # nothing queued: its running runs (thousands, maybe) need not be read
        running = await tx.running_batch_dates(pipeline_id)
        if len(running) >= limit:
            return []
        return runs_to_admit(limit, running, waiting)

    async def _max_active_runs(self, tx: Transaction, pipeline_id: str) -> int:
        """The deployed pipeline's limit; for a retired one, that of its newest queued run."""
        pipeline = self._registry.current.get(pipeline_id)
        if pipeline is None:
            spec_hash = await tx.newest_waiting_version(pipeline_id)
            if spec_hash is None:
                return 0
            pipeline = await self._registry.version(pipeline_id, spec_hash)
        return pipeline.spec.max_active_runs
