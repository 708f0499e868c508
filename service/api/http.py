"""HTTP: liveness, readiness, metrics and read-only views of runs (the operator API grows here).

Reads come from PostgreSQL, live views from Redis first. The API never talks to Kafka.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict
from datetime import date, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from service import __version__, metrics
from service.api.auth import Tokens, authenticate
from service.api.commands import Commands
from service.api.logs import Logs
from service.api.openapi import document
from service.api.reads import Reads
from service.api.responses import TITLES, ProblemError, json_response, problem
from service.clock import utc_now
from service.engine.states import RunState
from service.errors import TributaryError
from service.live_state import LiveState
from service.orchestrator.batch import BatchApplier
from service.pipelines import PipelineRegistry
from service.spec.cron import batch_date_of, next_fire_times
from service.spec.pipeline import Pipeline
from service.spec.plan import NEXT_FIRES
from service.store import Store
from service.store.records import RunRecord, TaskRecord

LAST_RUNS = 10  # the newest runs a pipeline's view shows
MAX_LIST = 500
# What an id in a path or a query may be: plain text, bounded. Anything else is a 400 that
# says so, never a query the database would refuse (a NUL) or an unbounded one.
ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$")

ReadinessCheck = Callable[[], Awaitable[dict[str, Any]]]


def error(status: int, message: str) -> web.Response:
    return problem(status, TITLES.get(status, "Error"), message)


class BadRequest(Exception):
    """A request that cannot be answered as asked: 400 with the message."""


def checked_id(value: str, what: str) -> str:
    if not ID.match(value):
        shown = repr(value[:60]) + ("…" if len(value) > 60 else "")
        raise BadRequest(
            f"{what} must be 1 to 200 letters, digits, '_', '.', ':' or '-', got {shown}"
        )
    return value


@web.middleware
async def bad_requests(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except BadRequest as exc:
        return error(400, str(exc))
    except ProblemError as exc:
        return exc.response()


class Views:
    def __init__(
        self,
        store: Store,
        readiness: ReadinessCheck,
        live: LiveState | None = None,
        registry: PipelineRegistry | None = None,
    ) -> None:
        self._store = store
        self._readiness = readiness
        self._live = live
        self._registry = registry

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/healthz", self.healthz),
            web.get("/readyz", self.readyz),
            web.get("/metrics", self.prometheus),
            web.get("/api/runs", self.list_runs),
            web.get("/api/runs/{run_id}", self.get_run),
            web.get("/api/runs/{run_id}/state", self.run_state),
            web.get("/api/pipelines", self.list_pipelines),
            web.get("/api/pipelines/{pipeline_id}", self.get_pipeline),
            web.get("/api/openapi.json", self.openapi),
        ]

    async def list_pipelines(self, request: web.Request) -> web.Response:
        """The deployed pipelines: what they are for and who owns them, their params and
        tasks, triggers, run concurrency and next scheduled runs."""
        deployed = self._registry.current if self._registry is not None else {}
        return json_response({"pipelines": await self._pipeline_views(sorted(deployed))})

    async def get_pipeline(self, request: web.Request) -> web.Response:
        """One deployed pipeline, as the list shows it."""
        pipeline_id = checked_id(request.match_info["pipeline_id"], "a pipeline id")
        if self._registry is None or pipeline_id not in self._registry.current:
            return error(404, f"no deployed pipeline {pipeline_id!r}")
        [view] = await self._pipeline_views([pipeline_id])
        return json_response(view)

    async def _pipeline_views(self, pipeline_ids: list[str]) -> list[dict[str, Any]]:
        assert self._registry is not None
        now = utc_now()
        try:
            paused = await self._store.paused_pipelines()
            last = await self._store.last_runs(pipeline_ids, LAST_RUNS)
        except TributaryError as exc:
            raise ProblemError(503, str(exc)) from None
        return [
            {
                **pipeline_view(self._registry.current[p], now),
                "paused": p in paused,
                "last_runs": last[p],
            }
            for p in pipeline_ids
        ]

    async def healthz(self, request: web.Request) -> web.Response:
        return json_response({"status": "alive"})

    async def readyz(self, request: web.Request) -> web.Response:
        checks = await self._readiness()
        ready = all(v == "ok" for k, v in checks.items() if k != "redis")
        return json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)

    async def prometheus(self, request: web.Request) -> web.Response:
        return web.Response(
            body=metrics.exposition(),
            content_type="text/plain",
            charset="utf-8",
            headers={"X-Content-Type-Options": "nosniff"},
        )

    async def list_runs(self, request: web.Request) -> web.Response:
        """The newest runs; ``pipeline``, ``state``, ``from`` and ``to`` (batch dates) choose,
        ``limit`` and ``offset`` page (``next`` is the next page's address)."""
        query = request.query
        try:
            limit = int(query.get("limit", "50"))
            offset = int(query.get("offset", "0"))
        except ValueError:
            return error(400, "query parameters 'limit' and 'offset' must be integers")
        if not 1 <= limit <= MAX_LIST or offset < 0:
            return error(400, f"query parameter 'limit' must be between 1 and {MAX_LIST}")
        pipeline = query.get("pipeline")
        if pipeline is not None:
            checked_id(pipeline, "query parameter 'pipeline'")
        state = query.get("state")
        if state is not None and state not in RunState.__members__.values():
            return error(
                400, f"query parameter 'state' must be one of {[s.value for s in RunState]}"
            )
        dates = (_query_date(query, "from"), _query_date(query, "to"))
        try:
            runs = await self._store.list_runs(limit, pipeline, state, dates, offset)
        except TributaryError as exc:
            return error(503, str(exc))
        body: dict[str, Any] = {"runs": [asdict(run) for run in runs]}
        if len(runs) == limit:
            body["next"] = str(request.rel_url.update_query(offset=offset + limit))
        return json_response(body)

    async def openapi(self, request: web.Request) -> web.Response:
        return json_response(document(__version__))

    async def get_run(self, request: web.Request) -> web.Response:
        """The run, its tasks, and what each waiting task waits for since when."""
        run_id = checked_id(request.match_info["run_id"], "a run id")
        try:
            details = await self._store.run_details(run_id)
        except TributaryError as exc:
            return error(503, str(exc))
        if details is None:
            return error(404, f"no run {run_id!r}")
        return json_response(details.view())

    async def run_state(self, request: web.Request) -> web.Response:
        """Current states for live views: Redis first, PostgreSQL when Redis has nothing."""
        run_id = checked_id(request.match_info["run_id"], "a run id")
        state = await self._live.read(run_id) if self._live is not None else None
        if state is not None:
            return json_response({**state, "source": "redis"})
        found = await self._run_with_tasks(run_id)
        if isinstance(found, web.Response):
            return found
        run, tasks = found
        return json_response(
            {
                "run_id": run_id,
                "state": run.state,
                "source": "postgres",
                "tasks": {t.task_id: t.state for t in tasks},
            }
        )

    async def _run_with_tasks(
        self, run_id: str
    ) -> tuple[RunRecord, list[TaskRecord]] | web.Response:
        """The run and its tasks from PostgreSQL, or the error response to send."""
        try:
            run = await self._store.get_run(run_id)
            tasks = await self._store.list_task_instances(run_id) if run else []
        except TributaryError as exc:
            return error(503, str(exc))
        if run is None:
            return error(404, f"no run {run_id!r}")
        return run, tasks


def _query_date(query: Mapping[str, str], name: str) -> date | None:
    text = query.get(name)
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"query parameter {name!r} must be a date such as 2026-11-21") from None


def pipeline_view(pipeline: Pipeline, now: datetime) -> dict[str, Any]:
    spec = pipeline.spec
    schedule = spec.triggers.schedule
    view: dict[str, Any] = {
        "pipeline_id": pipeline.id,
        "version": spec.version,
        "spec_hash": pipeline.spec_hash,
        "domain": spec.domain,
        "owner": spec.owner,
        "description": spec.description,
        "max_active_runs": spec.max_active_runs,
        "params": {name: param.model_dump(mode="json") for name, param in spec.params.items()},
        "tasks": [
            {"task_id": task.id, "description": task.description, "tags": task.tags}
            for task in spec.tasks
        ],
        "triggers": {
            "datasets": [t.dataset for t in spec.triggers.datasets],
            "manual": spec.triggers.manual,
            "schedule": None,
        },
    }
    if schedule is not None:
        fires = next_fire_times(schedule.cron, schedule.timezone, now, NEXT_FIRES)
        view["triggers"]["schedule"] = {
            "cron": schedule.cron,
            "timezone": schedule.timezone,
            "catchup": schedule.catchup,
            "next_fires": [
                {
                    "at": at,
                    "batch_date": batch_date_of(at, schedule.timezone, schedule.batch_date_offset),
                }
                for at in fires
            ],
        }
    return view


def make_app(
    store: Store,
    readiness: ReadinessCheck,
    live: LiveState | None = None,
    registry: PipelineRegistry | None = None,
    applier: BatchApplier | None = None,
    tokens: Tokens | None = None,
    log_dir: Path | None = None,
) -> web.Application:
    """The HTTP app: health, metrics, reads, and (given an applier) operators' commands."""
    app = web.Application(middlewares=[authenticate(tokens or Tokens({})), bad_requests])
    app.add_routes(Views(store, readiness, live, registry).routes())
    app.add_routes(Reads(store, registry).routes())
    if log_dir is not None:
        app.add_routes(Logs(store, log_dir).routes())
    if applier is not None and registry is not None:
        app.add_routes(Commands(store, applier, registry).routes())
    return app
