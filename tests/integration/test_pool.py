"""The store's pool resets a connection on release only when it took session state."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from service.store.database import PooledConnection, connect, reset_connection

KEY = 0x706F6F6C  # an advisory lock key of this test's own


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(
        database_url,
        min_size=1,
        max_size=1,  # every acquire gets the same session back
        reset=reset_connection,
        connection_class=PooledConnection,
    )
    yield pool
    await pool.close()


async def holds_lock(pg: asyncpg.Connection) -> bool:
    held = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = $1 AND granted"
    return bool(await pg.fetchval(held, KEY))


async def test_a_connection_that_took_session_state_is_reset(
    pool: asyncpg.Pool, pg: asyncpg.Connection
) -> None:
    async with pool.acquire() as conn:
        conn.take_session_state()
        await conn.execute("SELECT pg_advisory_lock($1)", KEY)
        await conn.execute("SET application_name = 'changed'")
    assert not await holds_lock(pg)  # released with the session state, though never unlocked
    async with pool.acquire() as conn:
        assert await conn.fetchval("SHOW application_name") != "changed"
        assert not conn.session_state


async def test_other_connections_go_back_without_a_reset_round_trip(
    pool: asyncpg.Pool, pg: asyncpg.Connection
) -> None:
    async with pool.acquire() as conn:
        async with conn.transaction():
            await conn.execute("SET LOCAL application_name = 'in a transaction'")
        await conn.execute("SELECT pg_advisory_lock($1)", KEY)  # what no store code does
    assert await holds_lock(pg)  # no reset statement ran
    async with pool.acquire() as conn:
        assert await conn.fetchval("SHOW application_name") != "in a transaction"
        await conn.execute("SELECT pg_advisory_unlock($1)", KEY)


async def test_an_open_transaction_is_rolled_back_on_release(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await conn.execute("BEGIN")
        await conn.execute("CREATE TABLE left_open (x int)")
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT to_regclass('left_open')") is None


async def test_the_relay_leader_marks_without_waiting_for_a_flush_and_only_it(
    database_url: str,
) -> None:
    store = await connect(database_url, 1)  # one connection: the relay's, then a writer's
    try:
        async with store.relay_leadership() as reader:
            assert reader is not None
            assert await reader.conn.fetchval("SHOW synchronous_commit") == "off"
        async with store.transaction("test") as tx:
            assert await tx.conn.fetchval("SHOW synchronous_commit") == "on"
            assert not await tx.conn.fetchval(
                "SELECT count(*) FROM pg_locks"
                " WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
            )
    finally:
        await store.close()
