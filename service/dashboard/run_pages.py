"""The dashboard's run and attempt pages: a run's graph with live states, the Gantt of its
attempts, its params, what started it, what its tasks wait for, its commands and history,
and the buttons that act on it; an attempt's exit code, error, stderr and followed log."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aiohttp import web

from service.api.http import checked_id
from service.api.responses import ProblemError
from service.clock import utc_now
from service.dashboard import figures, layout
from service.dashboard.templates import Templates
from service.engine.states import TaskState
from service.errors import TributaryError
from service.pipelines import PipelineRegistry
from service.store import Store
from service.store.records import RunRecord, TaskRecord


class RunPages:
    def __init__(self, store: Store, registry: PipelineRegistry, templates: Templates) -> None:
        self._store = store
        self._registry = registry
        self._templates = templates

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/runs/{run_id}", self.run),
            web.get("/runs/{run_id}/tasks/{task_id}", self.attempt),
            web.get("/runs/{run_id}/tasks/", self.tasks),
        ]

    async def tasks(self, request: web.Request) -> web.Response:
        """A link to no task in particular (an alert about the whole run): the run's tasks."""
        run_id = checked_id(request.match_info["run_id"], "a run id")
        raise web.HTTPSeeOther(f"/runs/{run_id}#tasks")

    async def run(self, request: web.Request) -> web.Response:
        """A run: graph, tasks, attempts, params, trigger, waits, commands, history."""
        run_id = checked_id(request.match_info["run_id"], "a run id")
        try:
            details = await self._store.run_details(run_id)
            if details is None:
                raise ProblemError(404, f"no run {run_id!r}")
            history = await self._store.run_history(run_id)
            ended = await self._store.run_attempts(run_id)
            outputs = await self._store.run_outputs(run_id)
            pipeline = await self._registry.version(details.run.pipeline_id, details.run.spec_hash)
        except TributaryError as exc:
            raise ProblemError(503, str(exc)) from None
        graph = pipeline.graph
        view = details.view()
        tasks = {t.task_id: t for t in details.tasks}
        now = utc_now()
        bars, span = layout.gantt([*ended, *_running_attempts(details.tasks)], now)
        return self._templates.render(
            request,
            "run.html",
            section="runs",
            run=details.run,
            tasks=tasks,
            task_rows=[
                {**task, "duration": figures.seconds_between(task["started_at"], task["ended_at"])}
                for task in _in_graph_order(view["tasks"], graph.order)
            ],
            layout=layout.graph_layout(graph.waves(), graph.predecessors),
            node_width=layout.NODE_WIDTH,
            node_height=layout.NODE_HEIGHT,
            bars=bars,
            span=span,
            commands=view["commands"],
            history=history,
            outputs=outputs,
            triggered_by=triggered_by(details.run, history),
            duration=figures.seconds_between(details.run.started_at, details.run.ended_at),
            live_filter=f"run_id={run_id}",
        )

    async def attempt(self, request: web.Request) -> web.Response:
        """One attempt of a task (``attempt``, default the latest): its figures, error,
        stderr, its log (followed live while it runs) and the task's other attempts."""
        run_id = checked_id(request.match_info["run_id"], "a run id")
        task_id = checked_id(request.match_info["task_id"], "a task id")
        try:
            run = await self._store.get_run(run_id)
            tasks = await self._store.list_task_instances(run_id) if run else []
            attempts = await self._store.task_attempts(run_id, task_id)
        except TributaryError as exc:
            raise ProblemError(503, str(exc)) from None
        task = next((t for t in tasks if t.task_id == task_id), None)
        if run is None or task is None:
            raise ProblemError(404, f"no task {task_id!r} in run {run_id!r}")
        current = _current_attempt(task)
        if current is not None and all(a["attempt"] != task.attempt for a in attempts):
            attempts = [*attempts, current]
        wanted = request.query.get("attempt")
        shown = next((a for a in attempts if str(a["attempt"]) == wanted), None)
        if wanted is not None and shown is None:
            raise ProblemError(404, f"task {task_id!r} has no attempt {wanted}")
        shown = shown or (attempts[-1] if attempts else _not_started(task))
        shown = {
            **shown,
            "duration": figures.seconds_between(shown["started_at"], shown["ended_at"]),
        }
        return self._templates.render(
            request,
            "attempt.html",
            section="runs",
            run=run,
            task=task,
            shown=shown,
            current=shown["attempt"] == task.attempt,
            following=task.state is TaskState.RUNNING and shown["attempt"] == task.attempt,
            attempts=attempts,
            live_filter=f"run_id={run_id}",
        )


def triggered_by(run: RunRecord, history: list[dict[str, Any]]) -> str:
    """What started the run, in words: the reason and actor of its first transition, and
    its trigger key (the event, the schedule's fire, or the person's request)."""
    first = next((h for h in history if h["task_id"] is None), None)
    said = f"{first['reason']} (by {first['actor']})" if first else ""
    return f"{said} · {run.trigger_key}" if said else run.trigger_key


def _running_attempts(tasks: Any) -> list[dict[str, Any]]:
    return [
        {
            "task_id": t.task_id,
            "attempt": t.attempt,
            "state": t.state.value,
            "started_at": t.started_at,
            "ended_at": None,
        }
        for t in tasks
        if t.state is TaskState.RUNNING and t.started_at is not None
    ]


def _current_attempt(task: TaskRecord) -> dict[str, Any] | None:
    """The task's current attempt while it has not ended (ended ones are in the archive)."""
    if task.attempt == 0 or task.state is not TaskState.RUNNING:
        return None
    return {
        "attempt": task.attempt,
        "state": task.state.value,
        "worker_id": task.worker_id,
        "started_at": task.started_at,
        "ended_at": None,
        "exit_code": None,
        "error_snippet": None,
        "stderr_tail": None,
    }


def _not_started(task: TaskRecord) -> dict[str, Any]:
    return {**asdict(task), "state": task.state.value, "attempt": task.attempt}


def _in_graph_order(tasks: list[dict[str, Any]], order: tuple[str, ...]) -> list[dict[str, Any]]:
    rank = {task_id: number for number, task_id in enumerate(order)}
    return sorted(tasks, key=lambda t: (rank.get(t["task_id"], len(rank)), t["task_id"]))
