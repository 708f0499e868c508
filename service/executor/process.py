"""Running one command as a subprocess in its own process group, output to a log file.

Memory stays flat whatever the task prints: output is streamed to the attempt's log file in
chunks and only the last bytes of stderr are kept, for the error snippet and the stderr tail.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

CHUNK_SIZE = 64 * 1024  # bytes read from a pipe at a time
TAIL_BYTES = 16 * 1024  # stderr kept in memory for the snippet and the tail
ERROR_SNIPPET_CHARS = 200
STDERR_TAIL_LINES = 20
# Variables a task inherits from the service's environment; everything else must be declared.
INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER", "LOGNAME")


@dataclass(frozen=True, slots=True)
class ProcessExit:
    exit_code: int | None  # None when the process never started
    signal: str | None  # e.g. "SIGKILL" when a signal ended it
    error_snippet: str | None
    stderr_tail: str | None


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
    base: Mapping[str, str], declared: Mapping[str, str], context: Mapping[str, str]
) -> dict[str, str]:
    """What a task sees: a few inherited basics, what its spec declares, the run's context."""
    env = {name: base[name] for name in INHERITED_ENV if name in base}
    env.update(declared)
    env.update(context)
    return env


async def run_process(
    argv: Sequence[str], env: Mapping[str, str], cwd: str | None, log_path: Path
) -> ProcessExit:
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
        stderr_tail = _Tail()
        try:
            stdout, stderr = process.stdout, process.stderr
            assert stdout is not None
            assert stderr is not None
            await asyncio.gather(
                _pump(stdout, log_file, None), _pump(stderr, log_file, stderr_tail)
            )
            returncode = await process.wait()
        except BaseException:
            # Cancelled (shutdown) or broken: never leave the group running behind us.
            _kill_group(process.pid)
            with contextlib.suppress(BaseException):
                await asyncio.shield(process.wait())
            raise
    return _exit(returncode, stderr_tail.text())


async def _pump(stream: asyncio.StreamReader, log_file: BinaryIO, tail: _Tail | None) -> None:
    while chunk := await stream.read(CHUNK_SIZE):
        log_file.write(chunk)
        if tail is not None:
            tail.feed(chunk)


def _exit(returncode: int, stderr: str) -> ProcessExit:
    signal_name = None
    exit_code = returncode
    if returncode < 0:
        signal_name = signal.Signals(-returncode).name
        exit_code = 128 - returncode  # the shell's convention: 137 for SIGKILL
    stripped = stderr.rstrip()
    lines = stripped.splitlines()[-STDERR_TAIL_LINES:]
    return ProcessExit(
        exit_code=exit_code,
        signal=signal_name,
        error_snippet=stripped[-ERROR_SNIPPET_CHARS:] or None,
        stderr_tail="\n".join(lines) or None,
    )


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
