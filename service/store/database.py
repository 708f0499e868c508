"""PostgreSQL access: the connection pool, the queries that need no transaction of their own,
and the doors to a :class:`Transaction` and to the outbox relay's leadership.

Together with ``transaction.py`` and ``outbox.py`` the only code that runs the named queries.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson

from service.engine.model import AttemptKey
from service.engine.states import TaskState
from service.errors import InfrastructureError
from service.store.errors import REFUSED, UNAVAILABLE, redact, translated
from service.store.migrations import Migration, apply_migrations
from service.store.outbox import OutboxReader
from service.store.queries import q
from service.store.reads import ReadQueries
from service.store.records import (
    ArchivedLetter,
    CacheHit,
    ClaimedAttempt,
    DueCheck,
    DueRetry,
    ExpiredLease,
    Heartbeat,
    Poke,
    RunRecord,
    TaskRecord,
)
from service.store.run_views import RunDetails, WaitingFor
from service.store.transaction import Transaction

if TYPE_CHECKING:
    from service.store.migrations import Connection

# The logs history_retention_days applies to, and the query that prunes each.
PRUNING = {
    "transitions": "prune_transitions",
    "processed_events": "prune_processed_events",
    "outbox": "prune_outbox",
    "ignored_events": "prune_ignored_events",
}
# "trip" in ASCII: the key of the outbox relay's leadership lock.
RELAY_LOCK_KEY = 0x74726970
COMMAND_TIMEOUT = 60.0  # seconds a statement may take before it is cancelled


async def _init_connection(conn: Connection) -> None:
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name,
            encoder=lambda v: orjson.dumps(v).decode(),
            decoder=orjson.loads,
            schema="pg_catalog",
        )


class PooledConnection(asyncpg.Connection):
    """A connection of the store's pool, which knows whether it took session state.

    Only the relay's leadership lock outlives a transaction here (every setting is ``SET
    LOCAL``, every lock but that one a transaction's, no LISTEN, no cursor outside a
    transaction): a connection that never took it goes back to the pool without the reset
    statement, a round trip after every transaction of the hot path.
    """

    session_state = False

    def take_session_state(self) -> None:
        """Say this connection is about to hold session state: it is reset on release."""
        self.session_state = True


async def reset_connection(conn: asyncpg.Connection) -> None:
    """The pool's reset on release: the full one only for a connection that took session state."""
    # asyncpg has rolled back an open transaction already; the rest only if it may be needed.
    if not isinstance(conn, PooledConnection) or conn.session_state:
        await conn.execute(conn.get_reset_query())
        if isinstance(conn, PooledConnection):
            conn.session_state = False


async def connect(url: str, pool_size: int = 10) -> Store:
    try:
        pool = await asyncpg.create_pool(
            url,
            min_size=1,
            max_size=pool_size,
            init=_init_connection,
            reset=reset_connection,
            connection_class=PooledConnection,
            command_timeout=COMMAND_TIMEOUT,
        )
    except (*UNAVAILABLE, asyncpg.PostgresError) as exc:
        raise InfrastructureError(f"cannot connect to PostgreSQL at {redact(url)}: {exc}") from exc
    return Store(pool)


async def create_database_if_missing(url: str) -> bool:
    """Create the database named in ``url`` (connecting to ``postgres`` to do it)."""
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if not name:
        raise InfrastructureError(f"the database URL {redact(url)} names no database")
    maintenance = urlunsplit(parts._replace(path="/postgres"))
    try:
        conn = await asyncpg.connect(maintenance)
    except (*UNAVAILABLE, asyncpg.PostgresError) as exc:
        raise InfrastructureError(f"cannot connect to PostgreSQL at {redact(url)}: {exc}") from exc
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


class Store(ReadQueries):
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def close(self) -> None:
        await self._pool.close()

    async def migrate(self, migrations: list[Migration] | None = None) -> list[Migration]:
        with translated():
            async with self._pool.acquire() as conn:
                return await apply_migrations(conn, migrations)

    @asynccontextmanager
    async def transaction(self, actor: str) -> AsyncIterator[Transaction]:
        """A unit of work; its buffered rows are written just before it commits."""
        with translated():
            async with self._pool.acquire() as conn, conn.transaction():
                tx = Transaction(conn, actor)
                yield tx
                await tx.flush()

    @asynccontextmanager
    async def relay_leadership(self) -> AsyncIterator[OutboxReader | None]:
        """An outbox reader if this process holds the relay lock, else None.

        The lock is tied to the session: it is released when the connection closes, so a
        crashed leader's lock goes with it and a standby takes over.
        """
        with translated():
            async with self._pool.acquire() as conn:
                # The lock is the session's: reset on release (the pool's proxy passes it on).
                cast(PooledConnection, conn).take_session_state()
                leader = await conn.fetchval(q("try_relay_leadership"), RELAY_LOCK_KEY)
                if leader:
                    await conn.execute(q("relay_marks_without_flush"))
                try:
                    yield OutboxReader(conn) if leader else None
                finally:
                    if leader:
                        with contextlib.suppress(*UNAVAILABLE, *REFUSED):
                            await conn.execute(q("release_relay_leadership"), RELAY_LOCK_KEY)

    async def _fetch(self, name: str, *args: Any) -> list[asyncpg.Record]:
        with translated():
            return await self._pool.fetch(q(name), *args)

    async def _fetchval(self, name: str, *args: Any) -> Any:
        with translated():
            return await self._pool.fetchval(q(name), *args)

    async def _execute(self, name: str, *args: Any) -> None:
        with translated():
            await self._pool.execute(q(name), *args)

    async def prune_history(self, cutoff: datetime, batch: int) -> dict[str, int]:
        """Delete up to ``batch`` rows older than ``cutoff`` from each log kept for a while
        (each statement its own short transaction); how many went, by table."""
        return {
            table: int(await self._fetchval(query, cutoff, batch))
            for table, query in PRUNING.items()
        }

    async def save_pipeline_version(self, pipeline_id: str, spec_hash: str, spec: Any) -> None:
        await self._execute("save_pipeline_version", pipeline_id, spec_hash, spec)

    async def pipeline_version_spec(self, pipeline_id: str, spec_hash: str) -> Any:
        return await self._fetchval("pipeline_version_spec", pipeline_id, spec_hash)

    async def list_runs(
        self,
        limit: int,
        pipeline_id: str | None = None,
        state: str | None = None,
        dates: tuple[date | None, date | None] = (None, None),
        offset: int = 0,
    ) -> list[RunRecord]:
        """The newest runs that match, ``offset`` of them passed over."""
        rows = await self._fetch("list_runs", limit, pipeline_id, state, *dates, offset)
        return [RunRecord.from_row(dict(row)) for row in rows]

    async def get_run(self, run_id: str) -> RunRecord | None:
        rows = await self._fetch("get_run", run_id)
        return RunRecord.from_row(dict(rows[0])) if rows else None

    async def task_states_of(self, run_id: str) -> dict[str, TaskState]:
        """Each task of the run, and its state."""
        rows = await self._fetch("task_states", [run_id])
        return {row["task_id"]: TaskState(row["state"]) for row in rows}

    async def run_details(self, run_id: str) -> RunDetails | None:
        """The run, its tasks and what they wait for; None if there is no such run."""
        run = await self.get_run(run_id)
        if run is None:
            return None
        tasks = await self.list_task_instances(run_id)
        commands = [dict(row) for row in await self._fetch("run_audit", run_id)]
        return RunDetails(run, tasks, await self.run_waits(run_id), commands)

    async def list_task_instances(self, run_id: str) -> list[TaskRecord]:
        rows = await self._fetch("list_task_instances", run_id)
        return [TaskRecord.from_row(dict(row)) for row in rows]

    async def input_versions(self, inputs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """(dataset, partition) -> latest recorded version, for those that exist."""
        if not inputs:
            return {}
        rows = await self._fetch(
            "input_versions", [dataset for dataset, _ in inputs], [part for _, part in inputs]
        )
        return {(r["dataset"], r["partition"]): r["version"] for r in rows}

    async def cached_success(self, cache_key: str) -> CacheHit | None:
        rows = await self._fetch("cached_success", cache_key)
        return CacheHit(rows[0]["run_id"], rows[0]["attempt"]) if rows else None

    async def renew_attempt_leases(self, beats: Sequence[Heartbeat], lease_seconds: float) -> None:
        """Heartbeats of remote workers; the worker is recorded as the attempt's."""
        if beats:
            await self._execute(
                "renew_attempt_leases",
                [b.run_id for b in beats],
                [b.task_id for b in beats],
                [b.attempt for b in beats],
                [b.worker_id for b in beats],
                lease_seconds,
            )

    async def renew_leases(self, worker_id: str, lease_seconds: float) -> list[AttemptKey]:
        """Renew the leases of every attempt ``worker_id`` runs; return those renewed."""
        rows = await self._fetch("renew_leases", worker_id, lease_seconds)
        return [AttemptKey(**dict(row)) for row in rows]

    async def runs_for_triggers(self, pipeline_id: str, keys: Sequence[str]) -> dict[str, str]:
        """trigger key -> run id, for the keys that made a run."""
        rows = await self._fetch("runs_for_triggers", [pipeline_id] * len(keys), list(keys))
        return {row["trigger_key"]: row["run_id"] for row in rows}

    async def cancelled_attempts(self, keys: Sequence[AttemptKey]) -> list[AttemptKey]:
        """Those of these attempts whose task an operator cancelled."""
        rows = await self._fetch(
            "cancelled_attempts",
            [k.run_id for k in keys],
            [k.task_id for k in keys],
            [k.attempt for k in keys],
        )
        return [AttemptKey(**dict(row)) for row in rows]

    async def attempts_held_by(self, worker_id: str) -> list[ClaimedAttempt]:
        rows = await self._fetch("attempts_held_by", worker_id)
        return [ClaimedAttempt.from_row(dict(row)) for row in rows]

    async def adopt_attempts(
        self, worker_id: str, attempts: Sequence[AttemptKey], lease_seconds: float
    ) -> list[ClaimedAttempt]:
        """Take over running attempts a predecessor left to the keeper; return those that are
        still running as that attempt."""
        if not attempts:
            return []
        rows = await self._fetch(
            "adopt_attempts",
            worker_id,
            [a.run_id for a in attempts],
            [a.task_id for a in attempts],
            [a.attempt for a in attempts],
            lease_seconds,
        )
        return [ClaimedAttempt.from_row(dict(row)) for row in rows]

    async def expired_leases(self, limit: int, grace_seconds: float) -> list[ExpiredLease]:
        rows = await self._fetch("expired_leases", limit, grace_seconds)
        return [ExpiredLease(**dict(row)) for row in rows]

    async def due_retries(self, limit: int) -> list[DueRetry]:
        rows = await self._fetch("due_retries", limit)
        return [DueRetry(**dict(row)) for row in rows]

    async def next_retry_at(self) -> datetime | None:
        due: datetime | None = await self._fetchval("next_retry_at")
        return due

    async def archive_dead_letters(self, letters: Sequence[ArchivedLetter]) -> None:
        if letters:
            await self._execute(
                "archive_dead_letters",
                [x.topic for x in letters],
                [x.partition for x in letters],
                [x.offset for x in letters],
                [x.key for x in letters],
                [x.reason for x in letters],
                [x.size for x in letters],
                [x.sha256 for x in letters],
                [x.head for x in letters],
                [x.traceback for x in letters],
            )

    async def due_checks(self, limit: int, poke_seconds: float) -> list[DueCheck]:
        """Take up to ``limit`` checks whose poke is due, for ``poke_seconds`` at most."""
        rows = await self._fetch("due_checks", limit, poke_seconds)
        return [DueCheck.from_row(dict(row)) for row in rows]

    async def record_pokes(self, pokes: Sequence[Poke]) -> None:
        await self._execute(
            "record_pokes",
            [p.check.run_id for p in pokes],
            [p.check.task_id for p in pokes],
            [p.check.position for p in pokes],
            [p.ready for p in pokes],
            [p.error for p in pokes],
            [p.result for p in pokes],
            [p.check.next_wait() for p in pokes],
        )

    async def failed_waits(self, limit: int, max_errors: int) -> list[WaitingFor]:
        """Queued tasks whose wait timed out, or whose check erred ``max_errors`` in a row."""
        rows = await self._fetch("failed_waits", limit, max_errors)
        return [WaitingFor.from_row(dict(row)) for row in rows]

    async def run_waits(self, run_id: str) -> list[WaitingFor]:
        """What the run's queued tasks still wait for."""
        return [WaitingFor.from_row(dict(row)) for row in await self._fetch("run_waits", run_id)]

    async def paused_pipelines(self) -> set[str]:
        return {row["pipeline_id"] for row in await self._fetch("paused_pipelines")}

    async def pipelines_with_waiting_runs(self) -> list[str]:
        return [row["pipeline_id"] for row in await self._fetch("pipelines_with_waiting_runs")]

    async def remote_tasks_queued(self) -> bool:
        return bool(await self._fetchval("remote_tasks_queued"))

    async def pipelines_waiting_among(self, pipeline_ids: Sequence[str]) -> list[str]:
        """Those of the pipelines that have queued runs."""
        rows = await self._fetch("pipelines_waiting_among", list(pipeline_ids))
        return [row["pipeline_id"] for row in rows]

    async def ping(self) -> None:
        await self._fetchval("ping")
