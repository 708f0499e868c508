"""Running one command as a subprocess in its own process group, output to a log file.

The command is the leader of a new session and process group, so signals reach everything it
started. On timeout (or an interrupt at shutdown) the group gets SIGTERM, then, after the
grace period, SIGKILL. When the leader has exited, whatever is left in its group is killed:
a task's processes end with it, and none can hold the output pipes open.

Memory stays flat whatever the task prints: output is streamed to the attempt's log file in
chunks and only the last bytes of stderr are kept, for the error snippet and the stderr tail.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

CHUNK_SIZE = 64 * 1024  # bytes read from a pipe at a time
TAIL_BYTES = 16 * 1024  # stderr kept in memory for the snippet and the tail
ERROR_SNIPPET_CHARS = 200
STDERR_TAIL_LINES = 20
PIPE_DRAIN_SECONDS = 2.0  # after the group is gone, how long output may still be read
# Variables a task inherits from the service's environment; everything else must be declared.
INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER", "LOGNAME")


@dataclass(frozen=True, slots=True)
class ProcessExit:
    exit_code: int | None  # None when the process never started
    signal: str | None  # e.g. "SIGKILL" when a signal ended it
    error_snippet: str | None
    stderr_tail: str | None
    timed_out: bool = False
    interrupted: bool = False


@dataclass
class Interruption:
    """Stops running processes early, from outside (the service stopping, a lease no longer
    confirmed): SIGTERM to the group, then SIGKILL after the grace period."""

    event: asyncio.Event = field(default_factory=asyncio.Event)
    reason: str = "interrupted: the service stopped"
    grace: float | None = None  # seconds; None: the process's own grace period
    rollback: bool = False  # stopped for good (a cancel): run the attempt's rollback after

    def stop(self, reason: str, grace: float | None = None, rollback: bool = False) -> None:
        if not self.event.is_set():
            self.reason, self.grace, self.rollback = reason, grace, rollback
            self.event.set()

    @property
    def stopped(self) -> bool:
        return self.event.is_set()


class _Tail:
    """The last ``limit`` bytes of a stream."""

    def __init__(self, limit: int = TAIL_BYTES) -> None:
        self._limit = limit
        self._buffer = bytearray()

    def feed(self, chunk: bytes) -> None:
        self._buffer += chunk
        if len(self._buffer) > self._limit:
            del self._buffer[: len(self._buffer) - self._limit]

    def text(self) -> str:
        return self._buffer.decode("utf-8", errors="replace")


def task_environment(
    base: Mapping[str, str],
    declared: Mapping[str, str],
    context: Mapping[str, str],
    inherit: Sequence[str] = (),
) -> dict[str, str]:
    """What a task sees: a few basics and the variables its spec names from the service's
    environment, what its spec declares, and the run's context."""
    env = {name: base[name] for name in (*INHERITED_ENV, *inherit) if name in base}
    env.update(declared)
    env.update(context)
    return env


async def run_process(
    argv: Sequence[str],
    env: Mapping[str, str],
    cwd: str | None,
    log_path: Path,
    time_limit: float | None = None,
    grace: float = 30.0,
    interrupt: Interruption | None = None,
    on_start: Callable[[int], None] | None = None,
) -> ProcessExit:
    """Run ``argv`` to its end, its ``time_limit`` (seconds) or ``interrupt``; never leave
    its group behind. ``on_start`` is told the group's id (the leader's pid) once it runs."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log_file:
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                env=dict(env),
                cwd=cwd,
                start_new_session=True,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            message = f"cannot start {argv[0]!r}: {exc.strerror or exc}"
            log_file.write(message.encode() + b"\n")
            return ProcessExit(None, None, message[-ERROR_SNIPPET_CHARS:], message)
        exited = leader_exit(process)
        if on_start is not None:
            on_start(process.pid)
        stderr_tail = _Tail()
        pumps = _pumps(process, log_file, stderr_tail)
        try:
            timed_out, interrupted = await _supervise(process, exited, time_limit, grace, interrupt)
            _signal_group(process.pid, signal.SIGKILL)  # leftovers of a finished task
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(PIPE_DRAIN_SECONDS):
                    await asyncio.shield(pumps)
            await process.wait()  # reaped, and its pipes closed
        except BaseException:
            # Cancelled or broken: never leave the group running behind us.
            _signal_group(process.pid, signal.SIGKILL)
            with contextlib.suppress(BaseException):
                await asyncio.shield(process.wait())
            raise
        finally:
            exited.cancel()  # its pidfd closed, if it was never readable
            pumps.cancel()
            with contextlib.suppress(BaseException):
                await pumps
        returncode = process.returncode
        assert returncode is not None
        if timed_out:
            log_file.write(f"\n[tributary] timed out after {time_limit:g}s\n".encode())
        if interrupted and interrupt is not None:
            log_file.write(f"\n[tributary] {interrupt.reason}\n".encode())
    return _exit(returncode, stderr_tail.text(), timed_out, interrupted)


async def _supervise(
    process: asyncio.subprocess.Process,
    waiter: asyncio.Future[None],
    time_limit: float | None,
    grace: float,
    interrupt: Interruption | None,
) -> tuple[bool, bool]:
    """Wait for the leader; on timeout or interrupt: SIGTERM the group, grace, SIGKILL."""
    watched: set[asyncio.Future[object]] = {waiter}  # type: ignore[arg-type]
    interrupted_by = asyncio.ensure_future(interrupt.event.wait()) if interrupt else None
    if interrupted_by is not None:
        watched.add(interrupted_by)  # type: ignore[arg-type]
    try:
        done, _ = await asyncio.wait(
            watched, timeout=time_limit, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        if interrupted_by is not None:
            interrupted_by.cancel()
    if waiter in done:
        return False, False
    interrupted = interrupt is not None and interrupt.stopped
    if interrupted and interrupt is not None and interrupt.grace is not None:
        grace = min(grace, interrupt.grace)
    _signal_group(process.pid, signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(grace):
            await asyncio.shield(waiter)
    if not waiter.done():
        _signal_group(process.pid, signal.SIGKILL)
        await waiter
    return not interrupted, interrupted


def leader_exit(process: asyncio.subprocess.Process) -> asyncio.Future[None]:
    """A future done when the group leader exits, whoever still holds its output pipes.

    ``Process.wait()`` waits for the pipes to close as well, which a background child can
    hold open; a pidfd (Linux) becomes readable at the exit itself, without reaping it. Called
    as soon as the process is started: a loop that reaps through pidfds (the keeper's) cannot
    have reaped it before, so the pid is still the child's.
    """
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()
    try:
        pidfd = os.pidfd_open(process.pid)
    except ProcessLookupError:
        # Reaped already (a child watcher thread waits for it): it has exited. A quick task
        # is often gone by now; polling for the returncode instead cost it 10 ms.
        exited.set_result(None)
        return exited
    except (AttributeError, OSError):
        # No pidfd (not Linux): the child watcher sets returncode at exit.
        return asyncio.ensure_future(_returncode_set(process))

    def readable() -> None:
        if not exited.done():
            exited.set_result(None)

    def close(_: asyncio.Future[None]) -> None:
        loop.remove_reader(pidfd)
        os.close(pidfd)

    loop.add_reader(pidfd, readable)
    exited.add_done_callback(close)  # exited or cancelled
    return exited


async def _returncode_set(process: asyncio.subprocess.Process) -> None:
    while process.returncode is None:  # noqa: ASYNC110
        await asyncio.sleep(0.01)


def _pumps(
    process: asyncio.subprocess.Process, log_file: BinaryIO, tail: _Tail
) -> asyncio.Future[tuple[None, None]]:
    """Both output streams copied to the log, the end of stderr kept in ``tail`` too."""
    assert process.stdout is not None
    assert process.stderr is not None
    return asyncio.gather(
        _pump(process.stdout, log_file, None), _pump(process.stderr, log_file, tail)
    )


async def _pump(stream: asyncio.StreamReader, log_file: BinaryIO, tail: _Tail | None) -> None:
    while chunk := await stream.read(CHUNK_SIZE):
        log_file.write(chunk)
        if tail is not None:
            tail.feed(chunk)


def _exit(returncode: int, stderr: str, timed_out: bool, interrupted: bool) -> ProcessExit:
    signal_name = None
    exit_code = returncode
    if returncode < 0:
        signal_name = signal.Signals(-returncode).name
        exit_code = 128 - returncode  # the shell's convention: 137 for SIGKILL
    stripped = stderr.rstrip()
    if timed_out:
        stripped += "\n[tributary] timed out"
    elif interrupted:
        stripped += "\n[tributary] interrupted: the service is shutting down"
    elif signal_name == "SIGKILL":
        stripped += "\n[tributary] killed by SIGKILL (possible out-of-memory)"
    lines = stripped.strip().splitlines()[-STDERR_TAIL_LINES:]
    return ProcessExit(
        exit_code=exit_code,
        signal=signal_name,
        error_snippet=stripped.strip()[-ERROR_SNIPPET_CHARS:] or None,
        stderr_tail="\n".join(lines) or None,
        timed_out=timed_out,
        interrupted=interrupted,
    )


def _signal_group(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)
