from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from service.engine.states import RunState, TaskState
from service.errors import MigrationError
from service.store.migrations import Migration, apply_migrations, discover_migrations


async def test_all_migrations_apply_once(empty_database_url: str) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        first = await apply_migrations(conn)
        again = await apply_migrations(conn)
        assert [m.version for m in first] == [m.version for m in discover_migrations()]
        assert again == []
    finally:
        await conn.close()


async def test_two_processes_starting_together_apply_each_migration_once(
    empty_database_url: str,
) -> None:
    conns = [await asyncpg.connect(empty_database_url) for _ in range(4)]
    try:
        results = await asyncio.gather(*(apply_migrations(c) for c in conns))
        applied = [m.version for result in results for m in result]
        assert sorted(applied) == [m.version for m in discover_migrations()]
        rows = await conns[0].fetch("SELECT version FROM schema_migrations")
        assert len(rows) == len(discover_migrations())
    finally:
        for conn in conns:
            await conn.close()


async def test_a_changed_migration_is_refused(empty_database_url: str) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        await apply_migrations(conn, [Migration(1, "first", "CREATE TABLE a (x int);")])
        with pytest.raises(
            MigrationError, match=r"0001_first.sql was changed after it was applied"
        ):
            await apply_migrations(conn, [Migration(1, "first", "CREATE TABLE a (y int);")])
    finally:
        await conn.close()


async def test_a_failing_migration_applies_nothing(empty_database_url: str) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        migrations = [Migration(1, "ok", "CREATE TABLE a (x int);"), Migration(2, "bad", "NOT SQL")]
        with pytest.raises(MigrationError, match=r"0002_bad.sql failed"):
            await apply_migrations(conn, migrations)
        assert await conn.fetchval("SELECT to_regclass('a')") is None
    finally:
        await conn.close()


async def test_a_database_from_a_newer_release_is_refused(empty_database_url: str) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        await apply_migrations(
            conn, [Migration(1, "a", "SELECT 1;"), Migration(2, "b", "SELECT 1;")]
        )
        with pytest.raises(MigrationError, match=r"migrations \[2\] that this code does not know"):
            await apply_migrations(conn, [Migration(1, "a", "SELECT 1;")])
    finally:
        await conn.close()


def test_badly_named_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "1_init.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"NNNN_description.sql"):
        discover_migrations(tmp_path)


async def test_the_database_enforces_the_state_names(pg: asyncpg.Connection) -> None:
    """The CHECK constraints list exactly the states defined in Python."""

    async def allowed(table: str) -> set[str]:
        definition = await pg.fetchval(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = $1::regclass AND contype = 'c' AND conname LIKE '%state%'",
            table,
        )
        return {part.split("'")[1] for part in definition.split("::text")[:-1] if "'" in part}

    assert await allowed("runs") == {s.value for s in RunState}
    assert await allowed("task_instances") == {s.value for s in TaskState}
