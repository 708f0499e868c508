"""One open transaction: the unit of work of a batch of events, a claim, or a timer round.

Reads and guarded moves take many rows per statement (``unnest`` arrays). The append-only rows
are buffered and written by :meth:`Transaction.flush` just before commit: the transition log
and the outbox together in one statement, ignored events and audit rows in one each; announced
partitions in one too, written earlier when something reads them first. A guarded move that
finds a row in another state than expected raises :class:`ConcurrencyError`: a lost race,
never a success.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import orjson

from service.engine.model import TaskSnapshot
from service.engine.states import TaskState
from service.errors import ConcurrencyError
from service.store.claiming import ClaimQueries
from service.store.queries import q
from service.store.records import (
    AttemptResult,
    AuditEntry,
    CacheEntry,
    DatasetPartition,
    IgnoredEvent,
    LockedRun,
    MissedDeadline,
    OutboxRow,
    OutputRecord,
    ReceivedEvent,
    RunCreation,
    RunMove,
    TaskMove,
    TransitionRow,
)
from service.store.scheduling import SchedulingQueries

if TYPE_CHECKING:
    from service.store.migrations import Connection


_EVENT = ("source", "event_id")  # mark_events_and_lock_runs's columns of an event row


@dataclass
class Transaction(ClaimQueries, SchedulingQueries):
    conn: Connection
    actor: str  # who makes the changes: an instance id, a worker, an operator
    _transitions: list[TransitionRow] = field(default_factory=list)
    _outbox: list[OutboxRow] = field(default_factory=list)
    _ignored: list[IgnoredEvent] = field(default_factory=list)
    _audit: list[AuditEntry] = field(default_factory=list)
    _partitions: list[DatasetPartition] = field(default_factory=list)
    passed_over: int = 0  # queued tasks its claims chose but left (taken by another, or held)
    planned_generically: bool = False  # see plan_generically

    async def lock_runs(self, run_ids: Sequence[str]) -> dict[str, LockedRun]:
        """Lock the runs (in run id order); runs that do not exist are absent."""
        rows = await self.conn.fetch(q("lock_runs"), sorted(set(run_ids)))
        return {row["run_id"]: LockedRun.from_row(dict(row)) for row in rows}

    async def mark_events_and_lock_runs(
        self, events: Sequence[ReceivedEvent], run_ids: Sequence[str]
    ) -> tuple[set[tuple[str, str]], dict[str, LockedRun]]:
        """Record each event, then lock the runs (in run id order) in the same statement: the
        (source, id) of the events seen for the first time, and the runs locked (those that
        do not exist are absent)."""
        rows = await self.conn.fetch(
            q("mark_events_and_lock_runs"),
            [e.source for e in events],
            [e.event_id for e in events],
            [e.event_type for e in events],
            sorted(set(run_ids)),
        )
        fresh = {(row["source"], row["event_id"]) for row in rows if row["run_id"] is None}
        locked = {
            row["run_id"]: LockedRun.from_row({k: v for k, v in row.items() if k not in _EVENT})
            for row in rows
            if row["run_id"] is not None
        }
        return fresh, locked

    def add_partition(self, partition: DatasetPartition) -> None:
        """Record an announced partition version (written before anything reads them)."""
        self._partitions.append(partition)

    async def write_partitions(self) -> None:
        """The partitions recorded so far, in one statement."""
        if not self._partitions:
            return
        rows, self._partitions = self._partitions, []
        await self.conn.execute(
            q("record_dataset_partitions"),
            [p.dataset for p in rows],
            [p.partition for p in rows],
            [p.version for p in rows],
            [p.producer for p in rows],
            [p.event_id for p in rows],
        )

    async def record_output(self, output: OutputRecord) -> None:
        await self.conn.execute(
            q("record_output"),
            output.run_id,
            output.task_id,
            output.attempt,
            output.dataset,
            output.partition,
            output.version,
            output.uri,
            [dataset for dataset, _ in output.inputs],
            [partition for _, partition in output.inputs],
            dict(output.params),  # jsonb: encoded by the pool's codec
            output.duration_seconds,
            output.exit_code,
            None if output.result is None else dict(output.result),
        )

    async def ready_datasets(self, wanted: Sequence[tuple[str, str]]) -> set[str]:
        """Which of the (dataset, partition) pairs have been announced."""
        await self.write_partitions()
        datasets, partitions = [d for d, _ in wanted], [p for _, p in wanted]
        rows = await self.conn.fetch(q("ready_datasets"), datasets, partitions)
        return {row["dataset"] for row in rows}

    async def create_runs(self, creations: Sequence[RunCreation]) -> set[str]:
        """The runs, queued, with their tasks pending, in one statement; the ids of those
        created. One not created was not written at all: its run id, or a run for the same
        (pipeline, trigger key), exists."""
        if not creations:
            return set()
        runs = [c.run for c in creations]
        tasks = [(c.run.run_id, t, g) for c in creations for g in (c.gated(),) for t in c.tasks]
        waits = [(c.run.run_id, w) for c in creations for w in c.waits]
        checks = [(c.run.run_id, k) for c in creations for k in c.checks]
        rows = await self.conn.fetch(
            q("create_runs"),
            [r.run_id for r in runs],
            [r.pipeline_id for r in runs],
            [r.spec_hash for r in runs],
            [r.batch_date for r in runs],
            [r.trigger_key for r in runs],
            [r.params for r in runs],
            [r.trace_id for r in runs],
            [r.deadline_at for r in runs],
            [run_id for run_id, _, _ in tasks],
            [t.task_id for _, t, _ in tasks],
            [t.cpu_cores for _, t, _ in tasks],
            [t.memory_mb for _, t, _ in tasks],
            [t.pool for _, t, _ in tasks],
            [t.priority for _, t, _ in tasks],
            [t.remote for _, t, _ in tasks],
            [t.time_limit_seconds for _, t, _ in tasks],
            [t.hold_seconds for _, t, _ in tasks],
            [t.task_id in gated for _, t, gated in tasks],
            [run_id for run_id, _ in waits],
            [w.task_id for _, w in waits],
            [w.dataset for _, w in waits],
            [w.partition for _, w in waits],
            [w.timeout_seconds for _, w in waits],
            [run_id for run_id, _ in checks],
            [k.task_id for _, k in checks],
            [k.position for _, k in checks],
            [k.probe for _, k in checks],
            [k.poke_seconds for _, k in checks],
            [k.poke_backoff for _, k in checks],
            [k.max_poke_seconds for _, k in checks],
            [k.timeout_seconds for _, k in checks],
        )
        return {row["run_id"] for row in rows}

    async def existing_trigger_keys(self, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which (pipeline, trigger key) pairs a run exists for."""
        rows = await self.conn.fetch(
            q("runs_for_triggers"), [k[0] for k in keys], [k[1] for k in keys]
        )
        return {(row["pipeline_id"], row["trigger_key"]) for row in rows}

    async def task_states(self, run_ids: Sequence[str]) -> dict[str, dict[str, TaskSnapshot]]:
        """run id -> task id -> its state and current attempt."""
        found: dict[str, dict[str, TaskSnapshot]] = {run_id: {} for run_id in run_ids}
        for row in await self.conn.fetch(q("task_states"), list(run_ids)):
            found[row["run_id"]][row["task_id"]] = TaskSnapshot(
                row["task_id"],
                TaskState(row["state"]),
                row["attempt"],
                row["lost_attempts"],
                row["attempt_base"],
                row["result"],
            )
        return found

    async def move_runs(self, moves: Sequence[RunMove]) -> None:
        """Apply guarded run moves; all or none."""
        if not moves:
            return
        moved = await self.conn.fetch(
            q("move_runs"),
            [m.run_id for m in moves],
            [m.from_state for m in moves],
            [m.to_state for m in moves],
        )
        if len(moved) != len(moves):
            missed = {m.run_id for m in moves} - {row["run_id"] for row in moved}
            raise ConcurrencyError(f"runs {sorted(missed)} changed under us")

    async def write_task_changes(
        self, moves: Sequence[TaskMove], outcomes: Sequence[AttemptResult]
    ) -> None:
        """Apply guarded task moves, all or none, and store (and archive) each attempt's
        outcome on its task, if it is still the task's current attempt: one statement."""
        if not moves and not outcomes:
            return
        # One outcome per attempt; of a task's attempts only its current one's is kept (SQL).
        ended = list({(o.run_id, o.task_id, o.attempt): o for o in outcomes}.values())
        moved = await self.conn.fetch(
            q("write_task_changes"),
            [m.run_id for m in moves],
            [m.task_id for m in moves],
            [m.from_state for m in moves],
            [m.to_state for m in moves],
            [m.retry_at for m in moves],
            [m.lost for m in moves],
            [m.reset for m in moves],
            [o.run_id for o in ended],
            [o.task_id for o in ended],
            [o.attempt for o in ended],
            [o.exit_code for o in ended],
            [o.error_snippet for o in ended],
            [o.stderr_tail for o in ended],
            [o.ended_at for o in ended],
            [None if o.result is None else orjson.dumps(o.result).decode() for o in ended],
            [o.started_at for o in ended],
        )
        if len(moved) != len(moves):
            missed = {(m.run_id, m.task_id) for m in moves} - {
                (row["run_id"], row["task_id"]) for row in moved
            }
            raise ConcurrencyError(f"tasks {sorted(missed)} changed under us")

    async def record_cache_keys(self, entries: Sequence[CacheEntry]) -> None:
        if entries:
            await self.conn.execute(
                q("record_cache_keys"),
                [e.cache_key for e in entries],
                [e.pipeline_id for e in entries],
                [e.task_id for e in entries],
                [e.run_id for e in entries],
                [e.attempt for e in entries],
            )

    async def flag_missed_deadlines(self, limit: int) -> list[MissedDeadline]:
        """Active runs past their deadline, now flagged (each once)."""
        rows = await self.conn.fetch(q("flag_missed_deadlines"), limit)
        return [MissedDeadline.from_row(dict(row)) for row in rows]

    def add_transitions(self, rows: Sequence[TransitionRow]) -> None:
        self._transitions.extend(rows)

    def add_outbox(self, rows: Sequence[OutboxRow]) -> None:
        self._outbox.extend(rows)

    def add_ignored(self, event: IgnoredEvent) -> None:
        self._ignored.append(event)

    def add_audit(self, entry: AuditEntry) -> None:
        self._audit.append(entry)

    @property
    def outbox_written(self) -> int:
        return len(self._outbox)

    async def flush(self) -> None:
        await self.write_partitions()
        await self._flush_journal()
        await self._flush_audit()
        if self._ignored:
            ign = self._ignored
            await self.conn.execute(
                q("record_ignored_events"),
                [e.source for e in ign],
                [e.event_id for e in ign],
                [e.event_type for e in ign],
                [e.run_id for e in ign],
                [e.task_id for e in ign],
                [e.reason for e in ign],
            )

    async def _flush_audit(self) -> None:
        if not self._audit:
            return
        rows = self._audit
        await self.conn.execute(
            q("insert_audit"),
            [a.event_id for a in rows],
            [a.actor for a in rows],
            [a.command for a in rows],
            [a.run_id for a in rows],
            [a.task_id for a in rows],
            [a.pipeline_id for a in rows],
            [a.reason for a in rows],
            [a.outcome for a in rows],
            [a.detail for a in rows],
        )

    async def _flush_journal(self) -> None:
        """The transition log and the outbox, in one statement."""
        if not self._transitions and not self._outbox:
            return
        rows, out = self._transitions, self._outbox
        await self.conn.execute(
            q("insert_journal"),
            [r.run_id for r in rows],
            [r.task_id for r in rows],
            [r.attempt for r in rows],
            [r.from_state for r in rows],
            [r.to_state for r in rows],
            [r.reason for r in rows],
            self.actor,
            [r.event_id for r in out],
            [r.topic for r in out],
            [r.key for r in out],
            [r.payload for r in out],
        )
