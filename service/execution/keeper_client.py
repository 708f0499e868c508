"""The service's side of the attempt keeper (``keeper.py``): start it or find it, hand it
attempts, confirm their leases, hear how they ended.

One service owns a keeper directory at a time (an exclusive lock on ``owner.lock``, released
by the kernel when the service dies, however it dies), so a restarted service takes its
predecessor's attempts over and a second service on the same directory is refused. If the
keeper itself dies, the attempts it ran are killed (whole groups, as recorded on disk) and
reported lost before anything else runs; the next attempt starts a new keeper.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from service.clock import utc_now
from service.engine.model import AttemptKey
from service.engine.states import TaskState
from service.errors import ConfigError, InfrastructureError
from service.execution.attempt import AttemptOutcome
from service.execution.keeping import (
    LOG,
    MAX_MESSAGE,
    OWNER_LOCK,
    PROTOCOL,
    SOCKET,
    Ended,
    decode,
    encode,
    journal_path,
    kill_recorded_group,
)
from service.execution.launch import Launch
from service.execution.process import ProcessExit
from service.observability import get_logger

log = get_logger(__name__)

START_TIMEOUT = 20.0  # seconds for a new keeper to answer


@dataclass(frozen=True, slots=True)
class Inventory:
    """What the keeper holds when a service connects: attempts still running (each with the
    future of its end), and attempts that ended while no service listened."""

    running: dict[AttemptKey, asyncio.Future[Ended]]
    ended: list[Ended]


class KeeperClient:
    def __init__(self, directory: Path, lease_seconds: float) -> None:
        self._dir = directory
        self._lease = lease_seconds
        self._owner: IO[str] | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._waiting: dict[AttemptKey, asyncio.Future[Ended]] = {}
        self._connecting = asyncio.Lock()

    async def open(self) -> Inventory:
        """Own the directory, find or start the keeper, and learn what it holds."""
        self.own()
        async with self._connecting:
            return await self._connect()

    def own(self) -> None:
        """Take the directory for this process; ConfigError if a live one has it."""
        if self._owner is not None:
            return
        self._dir.mkdir(parents=True, exist_ok=True)
        owner = (self._dir / OWNER_LOCK).open("a")
        try:
            fcntl.flock(owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner.close()
            raise ConfigError(
                f"attempt_state_dir {self._dir} is in use by another live service process: "
                f"give each process on a host its own"
            ) from None
        self._owner = owner

    async def _connect(self) -> Inventory:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            reader, writer = await self._reach_keeper(deadline)
            try:
                writer.write(encode({"op": "hello", "lease_seconds": self._lease}))
                welcome = decode(await reader.readline())
            except (ConnectionError, ValueError) as exc:
                # A keeper dying as we connect (its socket still there), or busy with a
                # connection of ours it has not seen close yet: try again.
                writer.close()
                if time.monotonic() > deadline:
                    raise InfrastructureError(
                        f"the attempt keeper in {self._dir}: {exc!r}"
                    ) from exc
                await asyncio.sleep(0.05)
                continue
            except BaseException:  # cancelled half way: the connection is nobody's
                writer.close()
                raise
            if welcome.get("op") == "welcome" and welcome.get("protocol") == PROTOCOL:
                break
            writer.close()
            if time.monotonic() > deadline:
                raise InfrastructureError(f"the attempt keeper in {self._dir} answered {welcome}")
            await asyncio.sleep(0.05)
        self._writer = writer
        self.keeper_pid: int = welcome["pid"]
        running = {key: self._await(key) for key in map(AttemptKey.parse, welcome["running"])}
        self._reader_task = asyncio.create_task(self._read(reader), name="keeper-client")
        return Inventory(running, [Ended.from_json(e) for e in welcome["ended"]])

    async def _reach_keeper(
        self, deadline: float
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Connect to the keeper; start one when none answers (again, if one was still
        dying and held the keeper lock)."""
        path = str(self._dir / SOCKET)
        process: subprocess.Popen[bytes] | None = None
        while True:
            try:
                return await asyncio.open_unix_connection(path, limit=MAX_MESSAGE)
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise InfrastructureError(
                        f"the attempt keeper for {self._dir} did not start: see "
                        f"{self._dir / LOG} ({exc!r})"
                    ) from exc
            if process is None or process.poll() is not None:
                process = self._start_keeper()
            await asyncio.sleep(0.02)

    def _start_keeper(self) -> subprocess.Popen[bytes]:
        with (self._dir / LOG).open("ab") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "service.execution.keeper", str(self._dir)],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives us, and our signals
                close_fds=True,
            )
        # Reap it when it exits while we live; if we die first, init does.
        threading.Thread(target=process.wait, name="keeper-reaper", daemon=True).start()
        log.info("keeper.started", pid=process.pid, directory=str(self._dir))
        return process

    async def run(self, key: AttemptKey, launch: Launch, log_path: Path) -> Ended:
        """Have the keeper run the attempt; return once it ended."""
        return await (await self.start(key, launch, log_path))

    async def start(self, key: AttemptKey, launch: Launch, log_path: Path) -> asyncio.Future[Ended]:
        """Hand the attempt to the keeper; return once it has it, with the future of its end."""
        waiting = self._await(key)
        message = {"op": "run", "key": str(key), "launch": launch.to_json()}
        try:
            await self._send({**message, "log_path": str(log_path)})
        except BaseException:
            self._waiting.pop(key, None)
            raise
        return waiting

    def _await(self, key: AttemptKey) -> asyncio.Future[Ended]:
        waiting = self._waiting.get(key)
        if waiting is None:
            waiting = self._waiting[key] = asyncio.get_running_loop().create_future()
        return waiting

    async def confirm(self, keys: Iterable[AttemptKey], seconds: float) -> None:
        """Their leases were renewed: the keeper lets them run ``seconds`` more."""
        await self._send({"op": "confirm", "keys": [str(k) for k in keys], "seconds": seconds})

    async def interrupt(self, key: AttemptKey, reason: str, rollback: bool = False) -> None:
        """Stop the attempt (SIGTERM, grace, SIGKILL); with ``rollback``, then roll it back."""
        await self._send(
            {"op": "interrupt", "key": str(key), "reason": reason, "rollback": rollback}
        )

    async def forget(self, key: AttemptKey) -> None:
        """Its outcome is durable elsewhere now: the keeper may drop it."""
        await self._send({"op": "forget", "key": str(key)})

    async def close(self) -> None:
        """Disconnect; the keeper exits if nothing of ours runs there."""
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(encode({"op": "exit"}))
            self._writer.close()
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader_task
        if self._owner is not None:
            self._owner.close()  # the lock goes with it
            self._owner = None

    async def _send(self, message: dict[str, Any]) -> None:
        async with self._connecting:
            if self._writer is None or self._writer.is_closing():
                inventory = await self._connect()
                self._take_back(inventory)
            assert self._writer is not None
            self._writer.write(encode(message))

    def _take_back(self, inventory: Inventory) -> None:
        """After a keeper restart: the new keeper reports what the dead one left behind."""
        for ended in inventory.ended:
            self._resolve(ended)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while line := await reader.readline():
                message = decode(line)
                if message["op"] == "ended":
                    self._resolve(Ended.from_json(message))
        except (ValueError, ConnectionError) as exc:
            log.error("keeper.unreadable", error=repr(exc))
        self._keeper_gone()

    def _resolve(self, ended: Ended) -> None:
        waiting = self._waiting.pop(ended.key, None)
        if waiting is not None and not waiting.done():
            waiting.set_result(ended)

    def _keeper_gone(self) -> None:
        """The keeper died: what it ran is killed and lost; the next attempt starts another."""
        if self._writer is not None:
            self._writer.close()
        self._writer = None
        if self._waiting:
            log.error("keeper.died", attempts=len(self._waiting), directory=str(self._dir))
        why = "lost: its supervisor (the attempt keeper) died"
        for key in list(self._waiting):
            kill_recorded_group(journal_path(self._dir, key))
            self._resolve(Ended(key, lost_outcome(why), utc_now(), utc_now()))


def lost_outcome(why: str) -> AttemptOutcome:
    return AttemptOutcome(ProcessExit(None, None, why, why), TaskState.FAILED, True, why, lost=True)
