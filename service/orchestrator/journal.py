"""Every state change leaves two traces, written in the transaction that makes it: a row of
the append-only transition log, and a status event in the outbox."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from service.clock import utc_now
from service.engine.model import Transition
from service.orchestrator.outgoing import AttemptDetails, Outgoing
from service.spec.pipeline import Pipeline
from service.store import Transaction
from service.store.records import LockedRun, TransitionRow


def record_transitions(
    tx: Transaction,
    outgoing: Outgoing,
    run: LockedRun,
    pipeline: Pipeline,
    transitions: Sequence[Transition],
    details: Mapping[str, AttemptDetails] | None = None,
) -> None:
    """Log ``transitions`` of ``run`` and queue their status events (``details`` by task)."""
    now = utc_now()
    tx.add_transitions(
        [
            TransitionRow(
                run.run_id, t.task_id, t.attempt, t.from_state or None, t.to_state, t.reason
            )
            for t in transitions
        ]
    )
    found = details or {}
    tx.add_outbox(
        [
            outgoing.status(run, pipeline, t, now, found.get(t.task_id) if t.task_id else None)
            for t in transitions
        ]
    )
