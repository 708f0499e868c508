"""Task logs over HTTP: an attempt's output (stdout and stderr, as the executor wrote it), a
byte range or the last lines of it, or followed live as server-sent events until the attempt
ends.

Logs live on the disk of the process that ran the attempt (``task_log_dir``/run/task/attempt.log).
This service serves those of its own attempts, and of any process sharing that directory; for
an attempt whose log is elsewhere (another replica's or a remote worker's disk, not shared) it
answers 404 saying where the log is.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from aiohttp import web

from service.api.responses import ProblemError
from service.engine.model import AttemptKey
from service.engine.states import TaskState
from service.errors import TributaryError
from service.store import Store
from service.store.records import TaskRecord

MAX_BYTES = 1 << 20  # one answer carries at most 1 MiB of log
FOLLOW_POLL = 0.5  # seconds between looks at a followed log
TAIL_READ = 256 * 1024  # the bytes read from the end to find the last lines


def _int(request: web.Request, name: str, default: int | None) -> int | None:
    text = request.query.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ProblemError(400, f"query parameter {name!r} must be an integer") from None
    if value < 0:
        raise ProblemError(400, f"query parameter {name!r} must be 0 or more")
    return value


class Logs:
    def __init__(self, store: Store, log_dir: Path) -> None:
        self._store = store
        self._log_dir = log_dir

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/api/runs/{run_id}/tasks/{task_id}/log", self.log)]

    async def log(self, request: web.Request) -> web.StreamResponse:
        """``attempt`` (default: the latest), then ``offset``/``limit`` bytes, or ``tail``
        lines, or ``follow=1`` for server-sent events until the attempt ends."""
        run_id, task_id = request.match_info["run_id"], request.match_info["task_id"]
        task = await self._task(run_id, task_id)
        attempt = _int(request, "attempt", task.attempt) or task.attempt
        if attempt < 1 or attempt > task.attempt:
            why = f"task {task_id!r} has no attempt {attempt} (it has {task.attempt})"
            raise ProblemError(404, why)
        path = self._log_dir / run_id / task_id / f"{attempt}.log"
        running = task.state is TaskState.RUNNING and attempt == task.attempt
        following = request.query.get("follow") in ("1", "true")
        if following and running:  # its first line may not be written yet: wait for it
            return await self._follow(request, path, run_id, task_id, attempt, running)
        if not path.is_file():
            where = task.worker_id or "the process that ran it"
            raise ProblemError(
                404,
                f"the log of attempt {attempt} is not on this service's disk: it is in "
                f"{where}'s task_log_dir, {run_id}/{task_id}/{attempt}.log",
            )
        if following:
            return await self._follow(request, path, run_id, task_id, attempt, running)
        tail = _int(request, "tail", None)
        if tail is not None:
            return web.Response(text=_last_lines(path, tail), content_type="text/plain")
        offset = _int(request, "offset", 0) or 0
        limit = min(_int(request, "limit", MAX_BYTES) or MAX_BYTES, MAX_BYTES)
        chunk = _read(path, offset, limit)
        return web.Response(
            body=chunk,
            content_type="text/plain",
            charset="utf-8",
            headers={"X-Log-Next-Offset": str(offset + len(chunk))},
        )

    async def _task(self, run_id: str, task_id: str) -> TaskRecord:
        try:
            tasks = await self._store.list_task_instances(run_id)
        except TributaryError as exc:
            raise ProblemError(503, str(exc)) from None
        found = next((t for t in tasks if t.task_id == task_id), None)
        if found is None:
            raise ProblemError(404, f"no task {task_id!r} in run {run_id!r}")
        if found.attempt == 0:
            raise ProblemError(404, f"task {task_id!r} has not run yet (it is {found.state})")
        return found

    async def _follow(
        self,
        request: web.Request,
        path: Path,
        run_id: str,
        task_id: str,
        attempt: int,
        running: bool,
    ) -> web.StreamResponse:
        """What the log has, then what it gains, as ``data:`` events; ``event: end`` once the
        attempt has ended and everything written was sent."""
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        with contextlib.suppress(ConnectionResetError):  # the reader went away: nothing wrong
            await self._stream(response, path, AttemptKey(run_id, task_id, attempt), running)
        return response

    async def _stream(
        self, response: web.StreamResponse, path: Path, key: AttemptKey, running: bool
    ) -> None:
        offset = 0
        while True:
            chunk = _read(path, offset, MAX_BYTES)
            if chunk:
                offset += len(chunk)
                for line in chunk.decode(errors="replace").splitlines():
                    await response.write(f"data: {line}\n\n".encode())
                continue
            if not running:
                break
            await asyncio.sleep(FOLLOW_POLL)
            running = await self._still_running(key.run_id, key.task_id, key.attempt)
        await response.write(b"event: end\ndata: \n\n")

    async def _still_running(self, run_id: str, task_id: str, attempt: int) -> bool:
        try:
            tasks = await self._store.list_task_instances(run_id)
        except TributaryError:
            return True  # the database is away: keep following
        task = next((t for t in tasks if t.task_id == task_id), None)
        return task is not None and task.attempt == attempt and task.state is TaskState.RUNNING


def _read(path: Path, offset: int, limit: int) -> bytes:
    """Up to ``limit`` bytes from ``offset``; none from a log not written yet. A local file:
    quick enough to read on the event loop."""
    try:
        with path.open("rb") as log:
            log.seek(offset)
            return log.read(limit)
    except FileNotFoundError:
        return b""


def _last_lines(path: Path, count: int) -> str:
    with path.open("rb") as log:
        log.seek(0, 2)
        size = log.tell()
        log.seek(max(size - TAIL_READ, 0))
        text = log.read().decode(errors="replace")
    if count == 0:
        return ""
    return "".join(line + "\n" for line in text.splitlines()[-count:])
