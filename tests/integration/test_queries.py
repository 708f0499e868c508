"""Every named query parses against the real schema, and every one is used by the code."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from service.store.claiming import claim_statement
from service.store.queries import parse_queries, queries

STORE = Path(__file__).resolve().parents[2] / "service" / "store"


async def test_every_query_prepares(pg: asyncpg.Connection) -> None:
    for name, sql in queries().items():
        if name == "create_migrations_table":
            continue  # DDL cannot be prepared; the migration tests run it
        try:
            await pg.prepare(sql)
        except asyncpg.PostgresError as exc:
            raise AssertionError(f"query {name!r} does not prepare: {exc}") from exc
    await pg.prepare(claim_statement(wait_for_runs=False))  # the variant the store derives


def test_every_query_is_used_by_the_store() -> None:
    code = "\n".join(p.read_text() for p in STORE.glob("*.py"))
    unused = [name for name in queries() if f'"{name}"' not in code]
    assert unused == []


def test_query_files_parse_names_and_comments() -> None:
    parsed = parse_queries("-- name: a\n-- about a\nSELECT 1;\n\n-- name: b\nSELECT 2;\n")
    assert parsed == {"a": "SELECT 1", "b": "SELECT 2"}
