"""A throwaway database on the local PostgreSQL for one benchmark run, dropped afterwards."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def create_database(prefix: str = "tributary_bench") -> str:
    """Create an empty database and return its URL."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    await _admin(f'CREATE DATABASE "{name}"')
    return POSTGRES_URL.rsplit("/", 1)[0] + "/" + name


async def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@asynccontextmanager
async def scratch_database(prefix: str = "tributary_bench") -> AsyncIterator[str]:
    url = await create_database(prefix)
    try:
        yield url
    finally:
        await drop_database(url)
