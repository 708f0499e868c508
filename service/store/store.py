"""PostgreSQL access: a connection pool, and a unit of work per transaction.

The only module that runs the named queries. A :class:`Transaction` buffers the append-only
rows of a batch (transition log, outbox) and writes each kind with one statement just before
commit. Driver errors leave as :class:`InfrastructureError` (the server is unreachable) or
:class:`ConcurrencyError` (a deadlock, a lost race): both are worth retrying.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson

from service.errors import ConcurrencyError, InfrastructureError
from service.store.migrations import Migration, apply_migrations
from service.store.queries import q
from service.store.records import (
    ClaimedAttempt,
    LockedRun,
    OutboxMessage,
    RunRecord,
    TaskRecord,
    TransitionRow,
)

if TYPE_CHECKING:
    from service.store.migrations import Connection

# Transient server states: the connection dropped, the server is starting or shutting down.
_UNAVAILABLE = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
)
CLAIM_ROUNDS = 4  # choose-and-lock rounds per claim while other replicas take the head
# "trip" in ASCII: the key of the outbox relay's leadership lock.
RELAY_LOCK_KEY = 0x74726970


@dataclass(frozen=True, slots=True)
class OutboxRow:
    event_id: str
    topic: str
    key: str
    payload: bytes


async def _init_connection(conn: Connection) -> None:
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name,
            encoder=lambda v: orjson.dumps(v).decode(),
            decoder=orjson.loads,
            schema="pg_catalog",
        )


async def connect(url: str, pool_size: int = 10) -> Store:
    try:
        pool = await asyncpg.create_pool(
            url, min_size=1, max_size=pool_size, init=_init_connection, command_timeout=60
        )
    except (*_UNAVAILABLE, asyncpg.PostgresError) as exc:
        raise InfrastructureError(f"cannot connect to PostgreSQL at {_redact(url)}: {exc}") from exc
    return Store(pool)


async def create_database_if_missing(url: str) -> bool:
    """Create the database named in ``url`` (connecting to ``postgres`` to do it)."""
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if not name:
        raise InfrastructureError(f"the database URL {_redact(url)} names no database")
    maintenance = urlunsplit(parts._replace(path="/postgres"))
    try:
        conn = await asyncpg.connect(maintenance)
    except (*_UNAVAILABLE, asyncpg.PostgresError) as exc:
        raise InfrastructureError(f"cannot connect to PostgreSQL at {_redact(url)}: {exc}") from exc
    try:
        if await conn.fetchval(q("database_exists"), name):
            return False
        with contextlib.suppress(asyncpg.DuplicateDatabaseError):  # created meanwhile
            await conn.execute(f"CREATE DATABASE {_quote_ident(name)}")
        return True
    finally:
        await conn.close()


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class Store:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def close(self) -> None:
        await self._pool.close()

    async def migrate(self, migrations: list[Migration] | None = None) -> list[Migration]:
        async with _translated(), self._pool.acquire() as conn:
            return await apply_migrations(conn, migrations)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with _translated(), self._pool.acquire() as conn, conn.transaction():
            tx = Transaction(conn)
            yield tx
            await tx.flush()

    @asynccontextmanager
    async def relay_leadership(self) -> AsyncIterator[OutboxReader | None]:
        """An outbox reader if this process holds the relay lock, else None.

        The lock is tied to the session: it is released when the connection closes, so a
        crashed leader's lock goes with it and a standby takes over.
        """
        async with _translated(), self._pool.acquire() as conn:
            leader = await conn.fetchval(q("try_relay_leadership"), RELAY_LOCK_KEY)
            try:
                yield OutboxReader(conn) if leader else None
            finally:
                if leader:
                    await conn.execute(q("release_relay_leadership"), RELAY_LOCK_KEY)

    async def save_pipeline_version(self, pipeline_id: str, spec_hash: str, spec: Any) -> None:
        async with _translated():
            await self._pool.execute(q("save_pipeline_version"), pipeline_id, spec_hash, spec)

    async def pipeline_version_spec(self, pipeline_id: str, spec_hash: str) -> Any:
        async with _translated():
            return await self._pool.fetchval(q("pipeline_version_spec"), pipeline_id, spec_hash)

    async def list_runs(self, limit: int, pipeline_id: str | None = None) -> list[RunRecord]:
        async with _translated():
            rows = await self._pool.fetch(q("list_runs"), limit, pipeline_id)
        return [RunRecord.from_row(dict(row)) for row in rows]

    async def get_run(self, run_id: str) -> RunRecord | None:
        async with _translated():
            row = await self._pool.fetchrow(q("get_run"), run_id)
        return RunRecord.from_row(dict(row)) if row else None

    async def list_task_instances(self, run_id: str) -> list[TaskRecord]:
        async with _translated():
            rows = await self._pool.fetch(q("list_task_instances"), run_id)
        return [TaskRecord.from_row(dict(row)) for row in rows]

    async def input_versions(self, inputs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """(dataset, partition) -> latest recorded version, for those that exist."""
        if not inputs:
            return {}
        async with _translated():
            rows = await self._pool.fetch(
                q("input_versions"), [i[0] for i in inputs], [i[1] for i in inputs]
            )
        return {(r["dataset"], r["partition"]): r["version"] for r in rows}

    async def cached_success(self, cache_key: str) -> tuple[str, int] | None:
        async with _translated():
            row = await self._pool.fetchrow(q("cached_success"), cache_key)
        return (row["run_id"], row["attempt"]) if row else None

    async def renew_attempt_leases(
        self, beats: Sequence[tuple[str, str, int, str]], lease_seconds: float
    ) -> None:
        """(run id, task id, attempt, worker id) heartbeats of remote workers."""
        if not beats:
            return
        async with _translated():
            await self._pool.execute(
                q("renew_attempt_leases"),
                *([b[k] for b in beats] for k in range(4)),
                lease_seconds,
            )

    async def renew_leases(self, worker_id: str, lease_seconds: float) -> None:
        async with _translated():
            await self._pool.execute(q("renew_leases"), worker_id, lease_seconds)

    async def expired_leases(self, limit: int) -> list[tuple[str, str, int, str | None]]:
        async with _translated():
            rows = await self._pool.fetch(q("expired_leases"), limit)
        return [(r["run_id"], r["task_id"], r["attempt"], r["worker_id"]) for r in rows]

    async def due_retries(self, limit: int) -> list[tuple[str, str]]:
        async with _translated():
            rows = await self._pool.fetch(q("due_retries"), limit)
        return [(r["run_id"], r["task_id"]) for r in rows]

    async def next_retry_at(self) -> datetime | None:
        async with _translated():
            due: datetime | None = await self._pool.fetchval(q("next_retry_at"))
        return due

    async def ping(self) -> None:
        async with _translated():
            await self._pool.fetchval(q("ping"))


@dataclass(frozen=True, slots=True)
class Capacity:
    """What a worker can take on now: free slots, cores and memory, and pool sizes."""

    slots: int
    cpu_cores: float
    memory_mb: int
    pools: Mapping[str, int] = field(default_factory=dict)
    remote: bool = False  # claim tasks for remote workers instead of local ones


@dataclass(frozen=True, slots=True)
class TaskMove:
    run_id: str
    task_id: str
    from_state: str
    to_state: str
    retry_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AttemptResult:
    run_id: str
    task_id: str
    attempt: int
    exit_code: int | None
    error_snippet: str | None
    stderr_tail: str | None
    ended_at: datetime


@dataclass(frozen=True, slots=True)
class IgnoredEvent:
    source: str
    event_id: str
    event_type: str
    run_id: str | None
    task_id: str | None
    reason: str


@dataclass
class Transaction:
    """One open transaction. Reads and guarded moves take many rows per statement; the
    append-only rows (transition log, outbox, ignored events) are written at :meth:`flush`."""

    conn: Connection
    actor: str = "tributary"
    _transitions: list[TransitionRow] = field(default_factory=list)
    _outbox: list[OutboxRow] = field(default_factory=list)
    _ignored: list[IgnoredEvent] = field(default_factory=list)

    async def mark_events_processed(
        self, events: Sequence[tuple[str, str, str]]
    ) -> set[tuple[str, str]]:
        """Record (source, id, type) of each event; return those seen for the first time."""
        if not events:
            return set()
        rows = await self.conn.fetch(
            q("mark_events_processed"),
            [e[0] for e in events],
            [e[1] for e in events],
            [e[2] for e in events],
        )
        return {(row["source"], row["event_id"]) for row in rows}

    async def record_dataset_partition(
        self, dataset: str, partition: str, version: str, producer: str | None, event_id: str
    ) -> None:
        await self.conn.execute(
            q("record_dataset_partition"), dataset, partition, version, producer, event_id
        )

    async def ready_datasets(self, wanted: Sequence[tuple[str, str]]) -> set[str]:
        """Which of the (dataset, partition) pairs have been announced."""
        datasets, partitions = [d for d, _ in wanted], [p for _, p in wanted]
        rows = await self.conn.fetch(q("ready_datasets"), datasets, partitions)
        return {row["dataset"] for row in rows}

    async def insert_run(
        self,
        run_id: str,
        pipeline_id: str,
        spec_hash: str,
        batch_date: date,
        trigger_key: str,
        params: dict[str, Any],
        trace_id: str,
        deadline_at: datetime | None = None,
    ) -> bool:
        created = await self.conn.fetchval(
            q("insert_run"),
            run_id,
            pipeline_id,
            spec_hash,
            batch_date,
            trigger_key,
            params,
            trace_id,
            deadline_at,
        )
        return created is not None

    async def run_for_trigger(self, pipeline_id: str, trigger_key: str) -> str | None:
        run_id: str | None = await self.conn.fetchval(
            q("run_for_trigger"), pipeline_id, trigger_key
        )
        return run_id

    async def insert_task_instances(
        self, run_id: str, tasks: Sequence[tuple[str, float, int, str | None, int, bool]]
    ) -> None:
        """(task id, cpu cores, memory MB, pool, priority, remote) of every task of a run."""
        await self.conn.execute(
            q("insert_task_instances"), run_id, *([t[k] for t in tasks] for k in range(6))
        )

    async def insert_task_waits(self, waits: Sequence[tuple[str, str, str, str]]) -> None:
        """(run id, task id, dataset, partition) rows: what each task waits for."""
        if waits:
            await self.conn.execute(
                q("insert_task_waits"),
                [w[0] for w in waits],
                [w[1] for w in waits],
                [w[2] for w in waits],
                [w[3] for w in waits],
            )

    async def lock_runs(self, run_ids: Sequence[str]) -> dict[str, LockedRun]:
        """Lock the runs (in run id order); runs that do not exist are absent."""
        rows = await self.conn.fetch(q("lock_runs"), sorted(set(run_ids)))
        return {row["run_id"]: LockedRun.from_row(dict(row)) for row in rows}

    async def task_states(self, run_ids: Sequence[str]) -> dict[str, dict[str, tuple[str, int]]]:
        """run id -> task id -> (state, attempt)."""
        found: dict[str, dict[str, tuple[str, int]]] = {run_id: {} for run_id in run_ids}
        for row in await self.conn.fetch(q("task_states"), list(run_ids)):
            found[row["run_id"]][row["task_id"]] = (row["state"], row["attempt"])
        return found

    async def move_runs(self, moves: Sequence[tuple[str, str, str]]) -> None:
        """Apply (run id, expected state, new state) moves; all or none."""
        if not moves:
            return
        moved = await self.conn.fetch(
            q("move_runs"), [m[0] for m in moves], [m[1] for m in moves], [m[2] for m in moves]
        )
        if len(moved) != len(moves):
            missed = {m[0] for m in moves} - {row["run_id"] for row in moved}
            raise ConcurrencyError(f"runs {sorted(missed)} changed under us")

    async def move_tasks(self, moves: Sequence[TaskMove]) -> None:
        """Apply guarded task moves; all or none."""
        if not moves:
            return
        moved = await self.conn.fetch(
            q("move_tasks"),
            [m.run_id for m in moves],
            [m.task_id for m in moves],
            [m.from_state for m in moves],
            [m.to_state for m in moves],
            [m.retry_at for m in moves],
        )
        if len(moved) != len(moves):
            missed = {(m.run_id, m.task_id) for m in moves} - {
                (row["run_id"], row["task_id"]) for row in moved
            }
            raise ConcurrencyError(f"tasks {sorted(missed)} changed under us")

    async def record_cache_keys(self, keys: Sequence[tuple[str, str, str, str, int]]) -> None:
        """(cache key, pipeline, task, run, attempt) of successes of cached tasks."""
        if keys:
            await self.conn.execute(
                q("record_cache_keys"),
                [k[0] for k in keys],
                [k[1] for k in keys],
                [k[2] for k in keys],
                [k[3] for k in keys],
                [k[4] for k in keys],
            )

    async def record_attempt_results(self, results: Sequence[AttemptResult]) -> None:
        if not results:
            return
        await self.conn.execute(
            q("record_attempt_results"),
            [r.run_id for r in results],
            [r.task_id for r in results],
            [r.attempt for r in results],
            [r.exit_code for r in results],
            [r.error_snippet for r in results],
            [r.stderr_tail for r in results],
            [r.ended_at for r in results],
        )

    async def flag_missed_deadlines(self, limit: int) -> list[dict[str, Any]]:
        """Active runs past their deadline, now flagged (each once)."""
        return [dict(row) for row in await self.conn.fetch(q("flag_missed_deadlines"), limit)]

    async def claim_tasks(
        self, worker_id: str, capacity: Capacity, lease_seconds: float
    ) -> list[ClaimedAttempt]:
        """Move the queued tasks that fit ``capacity`` to running for this worker.

        Replicas claiming at once choose the same head of the queue; rows another one locked
        first are passed over and the next ones chosen, for a few rounds.
        """
        claimed: list[ClaimedAttempt] = []
        passed_over: list[tuple[str, str]] = []
        free = capacity
        for _ in range(CLAIM_ROUNDS):
            chosen = await self.conn.fetch(
                q("claimable_tasks"),
                free.slots,
                free.cpu_cores,
                free.memory_mb,
                list(free.pools),
                list(free.pools.values()),
                [p[0] for p in passed_over],
                [p[1] for p in passed_over],
                free.remote,
            )
            if not chosen:
                break
            # Wait (briefly) for the runs, in run-id order like every writer: skipping them
            # would leave the tasks of a busy run unclaimed until the next poll.
            await self.lock_runs([r["run_id"] for r in chosen])
            rows = await self.conn.fetch(
                q("claim_tasks"),
                worker_id,
                [r["run_id"] for r in chosen],
                [r["task_id"] for r in chosen],
                lease_seconds,
            )
            got = [ClaimedAttempt.from_row(dict(row)) for row in rows]
            claimed.extend(got)
            taken = {(c.run_id, c.task_id) for c in got}
            missed = [
                (r["run_id"], r["task_id"])
                for r in chosen
                if (r["run_id"], r["task_id"]) not in taken
            ]
            if not missed:
                break
            passed_over.extend(missed)
            free = Capacity(
                free.slots - len(got),
                free.cpu_cores - sum(c.cpu_cores for c in got),
                free.memory_mb - sum(c.memory_mb for c in got),
                free.pools,
                free.remote,
            )
        return claimed

    def add_transitions(self, rows: Sequence[TransitionRow]) -> None:
        self._transitions.extend(rows)

    def add_outbox(self, rows: Sequence[OutboxRow]) -> None:
        self._outbox.extend(rows)

    def add_ignored(self, event: IgnoredEvent) -> None:
        self._ignored.append(event)

    @property
    def outbox_written(self) -> int:
        return len(self._outbox)

    async def flush(self) -> None:
        if self._transitions:
            rows = self._transitions
            await self.conn.execute(
                q("insert_transitions"),
                [r.run_id for r in rows],
                [r.task_id for r in rows],
                [r.attempt for r in rows],
                [r.from_state for r in rows],
                [r.to_state for r in rows],
                [r.reason for r in rows],
                self.actor,
            )
        if self._outbox:
            out = self._outbox
            await self.conn.execute(
                q("insert_outbox"),
                [r.event_id for r in out],
                [r.topic for r in out],
                [r.key for r in out],
                [r.payload for r in out],
            )
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


@dataclass
class OutboxReader:
    """Reads and acknowledges outbox rows on the relay leader's connection."""

    conn: Connection

    async def unsent(self, limit: int) -> list[OutboxMessage]:
        async with _translated():
            rows = await self.conn.fetch(q("unsent_outbox"), limit)
        return [OutboxMessage(**row) for row in rows]

    async def mark_sent(self, ids: Sequence[int]) -> None:
        async with _translated():
            await self.conn.execute(q("mark_outbox_sent"), list(ids))


@asynccontextmanager
async def _translated() -> AsyncIterator[None]:
    try:
        yield
    except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError) as exc:
        raise ConcurrencyError(f"PostgreSQL aborted the transaction: {exc}") from exc
    except _UNAVAILABLE as exc:
        raise InfrastructureError(f"PostgreSQL is unavailable: {exc}") from exc


def _redact(url: str) -> str:
    """Hide the password of a connection URL for messages."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else url
