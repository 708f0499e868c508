"""Retention: the logs kept for history_retention_days lose what is older, in small batches;
what is newer, and an outbox row not yet sent however old, stays."""

from __future__ import annotations

from datetime import timedelta

import asyncpg

from service.loops.retention import Retention
from service.metrics import HISTORY_PRUNED
from service.store import Store

OLD, NEW = "now() - interval '40 days'", "now() - interval '1 day'"


async def seed(pg: asyncpg.Connection, when: str, rows: int, sent: bool = True) -> None:
    await pg.execute(
        f"""
        INSERT INTO transitions (at, run_id, task_id, to_state, reason, actor)
        SELECT {when}, 'r' || i, 't', 'queued', '', 'test' FROM generate_series(1, $1) AS i;
        """.replace("$1", str(rows))
    )
    await pg.execute(
        f"""
        INSERT INTO processed_events (source, event_id, event_type, processed_at)
        SELECT 'urn:test', md5(random()::text), 'x', {when} FROM generate_series(1, {rows});
        INSERT INTO outbox (event_id, topic, key, payload, created_at, sent_at)
        SELECT md5(random()::text), 's', 'k', '\\x00', {when},
               CASE WHEN {sent} THEN {when} END
        FROM generate_series(1, {rows});
        INSERT INTO ignored_events (at, source, event_id, event_type, reason)
        SELECT {when}, 'urn:test', md5(random()::text), 'x', 'late' FROM generate_series(1, {rows});
        """
    )


async def counts(pg: asyncpg.Connection) -> dict[str, int]:
    tables = ("transitions", "processed_events", "outbox", "ignored_events")
    return {t: await pg.fetchval(f"SELECT count(*) FROM {t}") for t in tables}


async def test_rows_older_than_the_retention_are_pruned_in_batches(
    store: Store, pg: asyncpg.Connection
) -> None:
    await seed(pg, OLD, 2_500)
    await seed(pg, OLD, 7, sent=False)  # never sent: the relay still owes them
    await seed(pg, NEW, 40)
    before = HISTORY_PRUNED.labels("transitions")._value.get()
    retention = Retention(store=store, keep=timedelta(days=30), batch=1_000)

    assert await retention.step()  # a full batch: more may be waiting
    assert await counts(pg) == {
        "transitions": 2_547 - 1_000,
        "processed_events": 2_547 - 1_000,
        "outbox": 2_547 - 1_000,
        "ignored_events": 2_547 - 1_000,
    }
    await retention.run_burst()

    assert await counts(pg) == {
        "transitions": 40,
        "processed_events": 40,
        "outbox": 40 + 7,
        "ignored_events": 40,
    }
    assert await pg.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL") == 7
    assert HISTORY_PRUNED.labels("transitions")._value.get() - before == 2_507
    assert not await retention.step()  # nothing old left: it waits its interval
