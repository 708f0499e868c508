"""The attempt keeper: a small process that runs a service's attempts and outlives the service.

``python -m service.execution.keeper DIR``, started by the service (``keeper_client.py``) when
none answers on ``DIR/keeper.sock``. It runs each attempt it is given (the same code as ever:
cleanup, command, rollback), records each process group and, at the end, the outcome on disk,
and tells the service. When the service dies, the attempts go on; a restarted service
connects, is told what ended meanwhile and what still runs, and takes them over.

At most one copy of an attempt runs at any moment: the service confirms each attempt's lease
after renewing it in PostgreSQL; an attempt whose lease goes a whole lease period without
confirmation (the service is gone, or has lost the database) is stopped here, before any
replica may judge its lease expired (a lease period later still) and retry it. A keeper that
starts and finds attempts of a keeper that died kills their groups before anything else.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from service.clock import parse_timestamp, utc_now
from service.engine.model import AttemptKey
from service.engine.states import TaskState
from service.execution.attempt import AttemptOutcome, run_attempt, unrunnable
from service.execution.keeping import (
    JOURNAL_SUFFIX,
    JOURNALS,
    KEEPER_LOCK,
    MAX_MESSAGE,
    PROTOCOL,
    SOCKET,
    Ended,
    Journal,
    decode,
    encode,
    journal_key,
    journal_path,
    kill_recorded_group,
    read_journal,
)
from service.execution.launch import Launch
from service.execution.process import Interruption, ProcessExit
from service.observability import configure_logging, get_logger

log = get_logger(__name__)

WATCH_INTERVAL = 0.2  # seconds between looks at lease deadlines
IDLE_EXIT = 30.0  # seconds without a client or a running attempt before the keeper exits
ORPHAN_GRACE_SHARE = 0.5  # of a lease: how long an orphaned attempt gets after SIGTERM


@dataclass
class Kept:
    key: AttemptKey
    journal: Path
    started_at: datetime
    deadline: float  # monotonic: stopped if its lease is not confirmed past this
    interruption: Interruption = field(default_factory=Interruption)
    task: asyncio.Task[None] | None = None
    ended: Ended | None = None
    writer: Journal | None = None  # open while the attempt runs


class Keeper:
    def __init__(self, directory: Path, idle_exit: float = IDLE_EXIT) -> None:
        self._dir = directory
        self._idle_exit = idle_exit
        self._kept: dict[AttemptKey, Kept] = {}
        self._client: asyncio.StreamWriter | None = None
        self._lease = 30.0  # seconds, as the client says
        self._idle_since = time.monotonic()
        self._stop = asyncio.Event()
        self._terminating = False

    async def serve(self) -> None:
        self._recover()
        path = self._dir / SOCKET
        path.unlink(missing_ok=True)  # a dead keeper's: we hold the keeper lock
        server = await asyncio.start_unix_server(self._connected, path, limit=MAX_MESSAGE)
        log.info("keeper.serving", directory=str(self._dir), pid=os.getpid())
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, self._terminate)
        watch = asyncio.create_task(self._watch())
        try:
            await self._stop.wait()
        finally:
            watch.cancel()
            server.close()
            path.unlink(missing_ok=True)
            log.info("keeper.stopped")

    def _terminate(self) -> None:
        """SIGTERM: stop every attempt (as the service does at shutdown), then exit."""
        for kept in self._kept.values():
            kept.interruption.stop("interrupted: its keeper was stopped")
        self._terminating = True

    def _recover(self) -> None:
        """Attempts of a keeper that died: report the ended, kill and report the rest."""
        for path in sorted((self._dir / JOURNALS).glob(f"*{JOURNAL_SUFFIX}")):
            found = read_journal(path)
            if found is None:  # died before its first line was whole: it never started
                path.unlink(missing_ok=True)
                continue
            key = journal_key(path)
            kept = Kept(key, path, _started_at(found.launch), time.monotonic())
            if found.ended is not None:
                kept.ended = Ended.from_json(found.ended)
            else:
                killed = kill_recorded_group(path)
                why = "lost: its supervisor (the attempt keeper) died"
                log.warning("keeper.orphan_killed", attempt=str(key), killed=killed)
                kept.writer = _reopened(path)
                self._end(kept, _lost(why))
            self._kept[key] = kept

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._client is not None:
            writer.write(encode({"op": "refused", "why": "the keeper has a client already"}))
            writer.close()
            return
        self._client = writer
        try:
            while line := await reader.readline():
                self._handle(decode(line))
        except (ValueError, ConnectionError, asyncio.LimitOverrunError) as exc:
            log.error("keeper.client_failed", error=repr(exc))
        finally:
            self._client = None
            self._idle_since = time.monotonic()
            writer.close()

    def _handle(self, message: dict[str, Any]) -> None:
        op = message["op"]
        if op == "hello":
            self._lease = float(message["lease_seconds"])
            welcome = {"op": "welcome", "protocol": PROTOCOL, "pid": os.getpid()}
            self._send({**welcome, **self._inventory()})
        elif op == "run":
            self._run(AttemptKey.parse(message["key"]), message)
        elif op == "confirm":
            deadline = time.monotonic() + float(message["seconds"])
            for text in message["keys"]:
                kept = self._kept.get(AttemptKey.parse(text))
                if kept is not None:
                    kept.deadline = max(kept.deadline, deadline)
        elif op == "interrupt":
            kept = self._kept.get(AttemptKey.parse(message["key"]))
            if kept is not None:
                kept.interruption.stop(message["reason"], rollback=bool(message.get("rollback")))
        elif op == "forget":
            self._forget(AttemptKey.parse(message["key"]))
        elif op == "exit":
            if not any(k.ended is None for k in self._kept.values()):
                self._stop.set()
        else:
            raise ValueError(f"unknown keeper operation {op!r}")

    def _inventory(self) -> dict[str, Any]:
        return {
            "running": [str(k.key) for k in self._kept.values() if k.ended is None],
            "ended": [k.ended.to_json() for k in self._kept.values() if k.ended is not None],
        }

    def _run(self, key: AttemptKey, message: dict[str, Any]) -> None:
        if key in self._kept:
            return  # asked again (a client that restarted): it runs, or ended, already
        started = utc_now()
        path = journal_path(self._dir, key)
        writer = Journal.start(path, {**message, "started_at": started.isoformat()})
        kept = Kept(key, path, started, time.monotonic() + self._lease, writer=writer)
        self._kept[key] = kept
        launch = Launch.from_json(message["launch"])
        kept.task = asyncio.create_task(self._attempt(kept, launch, Path(message["log_path"])))

    async def _attempt(self, kept: Kept, launch: Launch, log_path: Path) -> None:
        writer = kept.writer
        assert writer is not None
        try:
            done = await run_attempt(launch, log_path, kept.interruption, writer.group)
        except (OSError, ValueError) as exc:
            done = unrunnable(exc)
        self._end(kept, done)

    def _end(self, kept: Kept, done: AttemptOutcome) -> None:
        kept.ended = Ended(kept.key, done, kept.started_at, utc_now())
        if kept.writer is not None:
            kept.writer.end(kept.ended.to_json())
            kept.writer = None
        self._send({"op": "ended", **kept.ended.to_json()})

    def _forget(self, key: AttemptKey) -> None:
        kept = self._kept.get(key)
        if kept is None or kept.ended is None:
            return
        del self._kept[key]
        kept.journal.unlink(missing_ok=True)

    def _send(self, message: dict[str, Any]) -> None:
        if self._client is not None and not self._client.is_closing():
            self._client.write(encode(message))

    async def _watch(self) -> None:
        """Stop attempts whose lease went unconfirmed; exit when idle long enough."""
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            now = time.monotonic()
            for kept in self._kept.values():
                if kept.ended is None and now > kept.deadline:
                    why = (
                        f"lost: its lease went unconfirmed for {self._lease:g}s (the service "
                        f"stopped, or lost the database); stopped"
                    )
                    log.warning("keeper.orphaned", attempt=str(kept.key))
                    kept.interruption.stop(why, self._lease * ORPHAN_GRACE_SHARE)
            running = any(k.ended is None for k in self._kept.values())
            if self._terminating and not running:
                self._stop.set()
            if self._client is not None or running:
                self._idle_since = now
            elif now - self._idle_since > self._idle_exit:
                log.info("keeper.idle_exit", seconds=self._idle_exit)
                self._stop.set()


def _lost(why: str) -> AttemptOutcome:
    return AttemptOutcome(ProcessExit(None, None, why, why), TaskState.FAILED, True, why, lost=True)


def _started_at(launch: dict[str, Any]) -> datetime:
    with contextlib.suppress(ValueError, KeyError, TypeError):
        return parse_timestamp(launch["started_at"])
    return utc_now()


def _reopened(path: Path) -> Journal | None:
    """The journal of an attempt a dead keeper left, to append how it ended."""
    with contextlib.suppress(OSError):
        return Journal.reopen(path)
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run attempts for a Tributary service.")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--idle-exit", type=float, default=IDLE_EXIT)
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    configure_logging("INFO")
    args.directory.mkdir(parents=True, exist_ok=True)
    lock = (args.directory / KEEPER_LOCK).open("a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"a keeper already serves {args.directory}", file=sys.stderr)
        sys.exit(1)
    reap_through_pidfds()
    asyncio.run(Keeper(args.directory, args.idle_exit).serve())


def reap_through_pidfds() -> None:
    """On Python 3.11, reap children on the loop through pidfds (3.12 does so itself) rather
    than with a thread per child: a child is then never reaped before its runner opens a pidfd
    of its own (``execution/process.py``), so the pid it opens is still the child's. Where
    pidfds are refused (an old kernel, a strict seccomp profile), the thread stays."""
    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        return
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return
    asyncio.set_child_watcher(asyncio.PidfdChildWatcher())


if __name__ == "__main__":
    main()
