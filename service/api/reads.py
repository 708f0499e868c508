"""Reads beyond the run views: a run's history, a task's attempts, datasets' partitions, dead
letters, a pipeline's heat map — each bounded (``limit``, ``dates``), each a plain JSON
document."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiohttp import web

from service.api.responses import ProblemError, json_response
from service.clock import utc_now
from service.errors import TributaryError
from service.pipelines import PipelineRegistry
from service.spec.durations import parse_duration
from service.store import Store

MAX_ROWS = 1000
HEAT_MAP_DATES = 30  # batch dates a heat map shows unless asked
MAX_HEAT_MAP_DATES = 366


def limit_of(request: web.Request, default: int = 100) -> int:
    """The ``limit`` query parameter, 1 to MAX_ROWS."""
    return count_of(request, "limit", default, MAX_ROWS)


def count_of(request: web.Request, name: str, default: int, most: int, least: int = 1) -> int:
    """The integer query parameter ``name``, ``least`` to ``most``."""
    text = request.query.get(name, str(default))
    try:
        value = int(text)
    except ValueError:
        raise ProblemError(
            400, f"query parameter {name!r} must be an integer, got {text!r}"
        ) from None
    if not least <= value <= most:
        raise ProblemError(400, f"query parameter {name!r} must be between {least} and {most}")
    return value


def heat_map_view(
    pipeline_id: str, tasks: Sequence[str], rows: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """Rows of the heat_map query as a grid: its dates (oldest first), its tasks (the
    pipeline's order, then any only older versions had), and a cell per task and date run."""
    dates = sorted({row["batch_date"] for row in rows})
    known = set(tasks)
    extra = sorted({row["task_id"] for row in rows} - known)
    return {
        "pipeline_id": pipeline_id,
        "dates": dates,
        "tasks": [*tasks, *extra],
        "cells": [
            {
                "task_id": row["task_id"],
                "batch_date": row["batch_date"],
                "run_id": row["run_id"],
                "state": row["state"],
                "attempts": row["attempt"],
                "duration_seconds": row["duration_seconds"],
                "queue_wait_seconds": row["queue_wait_seconds"],
            }
            for row in rows
        ],
    }


class Reads:
    def __init__(self, store: Store, registry: PipelineRegistry | None = None) -> None:
        self._store = store
        self._registry = registry

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/runs/{run_id}/history", self.history),
            web.get("/api/runs/{run_id}/tasks/{task_id}/attempts", self.attempts),
            web.get("/api/datasets", self.datasets),
            web.get("/api/dead-letters", self.dead_letters),
            web.get("/api/pipelines/{pipeline_id}/heatmap", self.heat_map),
            web.get("/api/runs/{run_id}/outputs", self.outputs),
            web.get("/api/tasks/failed", self.failed),
        ]

    async def outputs(self, request: web.Request) -> web.Response:
        """What the run's tasks produced: each output with the attempt, input versions,
        params, duration, exit code and result behind it."""
        run_id = request.match_info["run_id"]
        try:
            found = await self._store.run_outputs(run_id)
        except TributaryError as exc:
            raise ProblemError(503, str(exc)) from None
        return json_response({"run_id": run_id, "outputs": found})

    async def failed(self, request: web.Request) -> web.Response:
        """Tasks that failed for good ``since`` ago (``1d``, ``12h``, ``30m``; default 1d),
        newest first, each with why, its error snippet and the command that retries it."""
        text = request.query.get("since", "1d")
        try:
            since = utc_now() - parse_duration(text)
        except ValueError:
            raise ProblemError(
                400,
                f"query parameter 'since' must be a duration such as 1d, 12h or 30m, got {text!r}",
            ) from None
        try:
            found = await self._store.failed_tasks(since, limit_of(request))
        except TributaryError as exc:
            raise ProblemError(503, str(exc)) from None
        for task in found:
            task["retry"] = f"tributary runs retry {task['run_id']} --task {task['task_id']}"
        return json_response({"since": since, "failed": found})

    async def heat_map(self, request: web.Request) -> web.Response:
        """Each task's duration, queue wait, state and attempts on the newest ``dates`` batch
        dates (the newest run of each)."""
        found = await self.heat_map_of(
            request.match_info["pipeline_id"],
            count_of(request, "dates", HEAT_MAP_DATES, MAX_HEAT_MAP_DATES),
        )
        return json_response(found)

    async def heat_map_of(self, pipeline_id: str, dates: int) -> dict[str, Any]:
        """The heat map of a deployed pipeline (404 for another), as the API answers it."""
        deployed = self._registry.current if self._registry is not None else {}
        if pipeline_id not in deployed:
            raise ProblemError(404, f"no deployed pipeline {pipeline_id!r}")
        try:
            rows = await self._store.heat_map(pipeline_id, dates)
        except TributaryError as exc:
            raise ProblemError(503, str(exc)) from None
        return heat_map_view(pipeline_id, deployed[pipeline_id].graph.order, rows)

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
