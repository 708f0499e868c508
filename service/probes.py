"""Readiness probes: is the data a waiting task needs there yet? One poke of one check.

A probe answers ready, not yet, or error (it could not tell). Kinds, as rendered for a run by
``spec/render.py``: a command (exit 0 ready, a not-ready code not yet, any other code, a
timeout or a failure to start an error), a path (exists; with a marker, that file inside it
too), a SQL query on a database named in the check_databases setting (a true first column is
ready), and a URL (2xx ready, 404 not yet, anything else an error). Every probe is bounded by a
timeout and runs off the event loop's thread where it would block (the file system).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

# What a command check inherits from the service: what a program needs to run, no secrets.
INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER", "LOGNAME")
OUTPUT_KEPT = 300  # characters of a failing check's output kept as its result


@dataclass(frozen=True, slots=True)
class Answer:
    ready: bool
    error: bool
    result: str  # for people: "ready", "not yet: …", "error: …"


READY = Answer(True, False, "ready")


def not_yet(why: str) -> Answer:
    return Answer(False, False, f"not yet: {why}")


def failed(why: str) -> Answer:
    return Answer(False, True, f"error: {why}"[:OUTPUT_KEPT])


async def poke(
    probe: Mapping[str, Any],
    *,
    seconds: float,
    databases: Mapping[str, str],
    session: aiohttp.ClientSession,
) -> Answer:
    """One poke; never raises for what the probe finds (that is its answer)."""
    kind = probe.get("kind")
    try:
        async with asyncio.timeout(seconds):
            if kind == "command":
                return await _command(probe["argv"], probe.get("not_ready_codes", [1]))
            if kind == "path":
                return await asyncio.to_thread(_path, probe["path"], probe.get("marker"))
            if kind == "sql":
                return await _sql(probe["database"], probe["sql"], databases)
            if kind == "url":
                return await _url(probe["url"], session)
    except TimeoutError:
        return failed(f"no answer within {seconds:g}s")
    return failed(f"unknown probe kind {kind!r}")


async def _command(argv: list[str], not_ready_codes: list[int]) -> Answer:
    env = {name: os.environ[name] for name in INHERITED if name in os.environ}
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own group: a timeout kills whatever it started
        )
    except OSError as exc:
        return failed(f"cannot start {argv[0]!r}: {exc.strerror}")
    try:
        output, _ = await process.communicate()
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        raise
    text = output.decode(errors="replace").strip()[-OUTPUT_KEPT:]
    if process.returncode == 0:
        return READY
    if process.returncode in not_ready_codes:
        return not_yet(f"exit {process.returncode}")
    return failed(f"exit {process.returncode}" + (f": {text}" if text else ""))


def _path(path: str, marker: str | None) -> Answer:
    where = Path(path.removeprefix("file://"))
    if not where.exists():
        return not_yet(f"{where} does not exist")
    if marker and not (where / marker).exists():
        return not_yet(f"{where / marker} does not exist")
    return READY


async def _sql(database: str, sql: str, databases: Mapping[str, str]) -> Answer:
    dsn = databases.get(database)
    if dsn is None:
        known = ", ".join(sorted(databases)) or "none"
        return failed(f"no database {database!r} in the check_databases setting (known: {known})")
    try:
        conn = await asyncpg.connect(dsn)
    except (OSError, ValueError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return failed(f"cannot connect to {database}: {exc}")
    try:
        value = await conn.fetchval(sql)
    except asyncpg.PostgresError as exc:
        return failed(f"the query failed on {database}: {exc}")
    finally:
        await conn.close()
    return READY if value else not_yet(f"the query answered {value!r}")


async def _url(url: str, session: aiohttp.ClientSession) -> Answer:
    try:
        async with session.get(url, allow_redirects=True) as response:
            status = response.status
    except aiohttp.ClientError as exc:
        return failed(f"{url}: {exc!r}")
    if 200 <= status < 300:
        return READY
    if status == 404:
        return not_yet(f"{url} answered 404")
    return failed(f"{url} answered {status}")
