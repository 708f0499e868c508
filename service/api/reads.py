"""Reads beyond the run views: a run's history, a task's attempts, datasets' partitions, dead
letters — each bounded (``limit``), each a plain JSON document."""

from __future__ import annotations

from aiohttp import web

from service.api.responses import ProblemError, json_response
from service.errors import TributaryError
from service.store import Store

MAX_ROWS = 1000


def limit_of(request: web.Request, default: int = 100) -> int:
    """The ``limit`` query parameter, 1 to MAX_ROWS."""
    text = request.query.get("limit", str(default))
    try:
        limit = int(text)
    except ValueError:
        raise ProblemError(
            400, f"query parameter 'limit' must be an integer, got {text!r}"
        ) from None
    if not 1 <= limit <= MAX_ROWS:
        raise ProblemError(400, f"query parameter 'limit' must be between 1 and {MAX_ROWS}")
    return limit


class Reads:
    def __init__(self, store: Store) -> None:
        self._store = store

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/runs/{run_id}/history", self.history),
            web.get("/api/runs/{run_id}/tasks/{task_id}/attempts", self.attempts),
            web.get("/api/datasets", self.datasets),
            web.get("/api/dead-letters", self.dead_letters),
        ]

    async def history(self, request: web.Request) -> web.Response:
        """Every state change of the run and its tasks, oldest first: when, what, who, why."""
        run_id = request.match_info["run_id"]
        try:
            if await self._store.get_run(run_id) is None:
                raise ProblemError(404, f"no run {run_id!r}")
            return json_response(
                {"run_id": run_id, "history": await self._store.run_history(run_id)}
            )
        except TributaryError as exc:
            raise ProblemError(503, str(exc)) from None

    async def attempts(self, request: web.Request) -> web.Response:
        """Every ended attempt of the task: state, worker, times, exit code, stderr tail."""
        run_id, task_id = request.match_info["run_id"], request.match_info["task_id"]
        try:
            found = await self._store.task_attempts(run_id, task_id)
        except TributaryError as exc:
            raise ProblemError(503, str(exc)) from None
        return json_response({"run_id": run_id, "task_id": task_id, "attempts": found})

    async def datasets(self, request: web.Request) -> web.Response:
        """Announced partition versions, newest first (``dataset`` to choose one)."""
        try:
            found = await self._store.partitions(request.query.get("dataset"), limit_of(request))
        except TributaryError as exc:
            raise ProblemError(503, str(exc)) from None
        return json_response({"partitions": found})

    async def dead_letters(self, request: web.Request) -> web.Response:
        """The newest dead letters: why each was refused, where it came from, a preview."""
        try:
            found = await self._store.dead_letters(limit_of(request))
        except TributaryError as exc:
            raise ProblemError(503, str(exc)) from None
        return json_response({"dead_letters": found})
