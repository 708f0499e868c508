"""The dashboard's overview pages: pipelines (state, last runs, success, durations, SLA,
filters), one pipeline with its latency heat map, runs, datasets and dead letters. Every
figure comes from the same store reads the API serves."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict
from datetime import datetime
from typing import Any

from aiohttp import web
from markupsafe import Markup, escape

from service.api.http import LAST_RUNS, checked_id, pipeline_view
from service.api.reads import HEAT_MAP_DATES, MAX_HEAT_MAP_DATES, Reads, count_of
from service.api.responses import ProblemError
from service.clock import utc_now
from service.dashboard import figures
from service.dashboard.templates import Templates
from service.engine.states import RunState
from service.errors import TributaryError
from service.pipelines import PipelineRegistry
from service.spec.pipeline import Pipeline
from service.spec.tasks import DatasetWait
from service.store import Store

FIGURES_WINDOW = 30  # success rate and durations over each pipeline's newest ended runs
RUNS_PAGE = 50
FILTERS = ("domain", "tag", "owner")
PLAIN = re.compile(r"^[A-Za-z0-9_.:-]*$")  # needs no escaping in HTML
METRICS = {"duration": "duration", "queue_wait": "queue wait"}


class Pages:
    def __init__(self, store: Store, registry: PipelineRegistry, templates: Templates) -> None:
        self._store = store
        self._registry = registry
        self._templates = templates
        self._reads = Reads(store, registry)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/", self.pipelines),
            web.get("/pipelines/{pipeline_id}", self.pipeline),
            web.get("/runs", self.runs),
            web.get("/datasets", self.datasets),
            web.get("/dead-letters", self.dead_letters),
        ]

    async def pipelines(self, request: web.Request) -> web.Response:
        """Every deployed pipeline, one row each; filtered by domain, tag, owner, words."""
        deployed = self._registry.current
        chosen = {name: request.query.get(name, "") for name in (*FILTERS, "q")}
        shown = sorted(p for p in deployed if _matches(deployed[p], chosen))
        rows = await self._rows(shown)
        every = [_facets(deployed[p]) for p in deployed]
        choices = {
            name: sorted({value for facet in every for value in facet[name]}) for name in FILTERS
        }
        return self._templates.render(
            request,
            "pipelines.html",
            section="pipelines",
            rows=rows,
            total=len(deployed),
            filters=chosen,
            choices=choices,
            window=FIGURES_WINDOW,
            last=LAST_RUNS,
        )

    async def pipeline(self, request: web.Request) -> web.Response:
        """One pipeline: its facts and its latency heat map."""
        pipeline_id = checked_id(request.match_info["pipeline_id"], "a pipeline id")
        if pipeline_id not in self._registry.current:
            raise ProblemError(404, f"no deployed pipeline {pipeline_id!r}")
        metric = request.query.get("metric", "duration")
        if metric not in METRICS:
            raise ProblemError(400, f"metric must be one of {sorted(METRICS)}")
        dates = count_of(request, "dates", HEAT_MAP_DATES, MAX_HEAT_MAP_DATES)
        [row] = await self._rows([pipeline_id])
        heat = heat_grid(await self._reads.heat_map_of(pipeline_id, dates), metric)
        return self._templates.render(
            request,
            "pipeline.html",
            section="pipelines",
            p=row,
            heat={**heat, "shown_dates": dates},
            metric=metric,
            metric_label=METRICS[metric],
            live_filter=f"pipeline_id={pipeline_id}",
        )

    async def _rows(self, pipeline_ids: list[str]) -> list[dict[str, Any]]:
        now = utc_now()
        try:
            paused = await self._store.paused_pipelines()
            last = await self._store.last_runs(pipeline_ids, LAST_RUNS)
            found = await self._store.pipeline_figures(pipeline_ids, FIGURES_WINDOW)
            with_sla = [p for p in pipeline_ids if self._registry.current[p].spec.sla]
            deadlines = await self._store.newest_deadlines(with_sla) if with_sla else {}
        except TributaryError as exc:
            raise ProblemError(503, str(exc)) from None
        return [
            pipeline_row(
                self._registry.current[p], now, p in paused, last[p], found[p], deadlines.get(p)
            )
            for p in pipeline_ids
        ]

    async def runs(self, request: web.Request) -> web.Response:
        """The newest runs, by pipeline and state, paged."""
        pipeline = request.query.get("pipeline") or None
        state = request.query.get("state") or None
        if pipeline is not None:
            checked_id(pipeline, "query parameter 'pipeline'")
        if state is not None and state not in RunState.__members__.values():
            raise ProblemError(400, f"state must be one of {[s.value for s in RunState]}")
        offset = count_of(request, "offset", 0, 10**9, least=0)
        try:
            found = await self._store.list_runs(RUNS_PAGE, pipeline, state, (None, None), offset)
        except TributaryError as exc:
            raise ProblemError(503, str(exc)) from None
        runs = [
            {**asdict(run), "duration": figures.seconds_between(run.started_at, run.ended_at)}
            for run in found
        ]
        here = request.rel_url
        return self._templates.render(
            request,
            "runs.html",
            section="runs",
            runs=runs,
            pipelines=sorted(self._registry.current),
            states=[s.value for s in RunState],
            filters={"pipeline": pipeline or "", "state": state or ""},
            next=str(here.update_query(offset=offset + RUNS_PAGE))
            if len(runs) == RUNS_PAGE
            else None,
            previous=str(here.update_query(offset=max(0, offset - RUNS_PAGE))) if offset else None,
        )

    async def datasets(self, request: web.Request) -> web.Response:
        """Datasets: who triggers on, waits for or produces each; the newest partitions."""
        chosen = request.query.get("dataset") or None
        roles = dataset_roles(self._registry.current.values())
        try:
            partitions = await self._store.partitions(chosen, 200)
            names = sorted(set(roles) | {p["dataset"] for p in partitions})
            newest = await self._store.newest_partitions(names)
        except TributaryError as exc:
            raise ProblemError(503, str(exc)) from None
        rows = [{"name": n, **_roles_of(roles, n), "newest": newest.get(n)} for n in names]
        return self._templates.render(
            request,
            "datasets.html",
            section="datasets",
            datasets=rows,
            partitions=partitions,
            chosen=chosen,
        )

    async def dead_letters(self, request: web.Request) -> web.Response:
        """The newest dead letters: why, from where, what."""
        try:
            letters = await self._store.dead_letters(200)
        except TributaryError as exc:
            raise ProblemError(503, str(exc)) from None
        return self._templates.render(
            request, "dead_letters.html", section="dead-letters", letters=letters
        )


def pipeline_row(
    pipeline: Pipeline,
    now: datetime,
    paused: bool,
    last_runs: list[dict[str, Any]],
    found: dict[str, Any],
    deadline: dict[str, Any] | None,
) -> dict[str, Any]:
    """What the pipelines page shows of one pipeline."""
    view = pipeline_view(pipeline, now)
    rate = figures.success_rate(found["ended"], found["succeeded"])
    schedule = view["triggers"]["schedule"]
    fires = schedule["next_fires"] if schedule else []
    return {
        **view,
        "paused": paused,
        "last_runs": last_runs,
        "tags": sorted(_facets(pipeline)["tag"]),
        "triggers_text": triggers_text(view["triggers"]),
        "next_fire": f"{fires[0]['at']:%Y-%m-%d %H:%M} UTC" if fires else None,
        "success_text": figures.NOTHING if rate is None else f"{rate:.0%} of {found['ended']}",
        "p50": figures.duration_text(found["p50_seconds"]),
        "p95": figures.duration_text(found["p95_seconds"]),
        "sla": figures.sla_state(deadline, now)
        if pipeline.spec.sla
        else figures.SlaState("none", "no SLA"),
    }


def triggers_text(triggers: dict[str, Any]) -> str:
    parts = []
    if triggers["datasets"]:
        parts.append("on " + ", ".join(triggers["datasets"]))
    if triggers["schedule"]:
        schedule = triggers["schedule"]
        parts.append(f"cron {schedule['cron']} ({schedule['timezone']})")
    if triggers["manual"]:
        parts.append("by hand")
    return "; ".join(parts) or "none"


def heat_grid(heat: dict[str, Any], metric: str) -> dict[str, Any]:
    """The heat map as the page draws it: a row per task, a cell per date (None where the
    date's run has no such task), each cell with its heat, link and words ready."""
    key = f"{metric}_seconds"
    cells = heat["cells"]
    levels = figures.heat_levels([cell[key] for cell in cells])
    plain = {text: _plain(text) for cell in cells for text in (cell["run_id"], cell["task_id"])}
    grid = {
        (cell["task_id"], cell["batch_date"]): _heat_cell(cell, level, plain)
        for cell, level in zip(cells, levels, strict=True)
    }
    values = [cell[key] for cell in cells if cell[key] is not None and cell[key] > 0]
    return {
        "dates": heat["dates"],
        "rows": [
            {"task": task, "cells": [grid.get((task, day)) for day in heat["dates"]]}
            for task in heat["tasks"]
        ],
        "low": min(values, default=None),
        "high": max(values, default=None),
    }


def _heat_cell(cell: dict[str, Any], level: int | None, plain: dict[str, str]) -> Markup:
    """One cell's link, as HTML: drawn here rather than in the template, since a heat map
    has thousands. Ids are plain (letters, digits, ``_.:-``), so escaped only if not."""
    state = cell["state"]
    attempts = cell["attempts"]
    marked = state != "success"
    classes = f"cell heat-{'none' if level is None else level}" + (
        f" cell-{state}" if marked else ""
    )
    run_id, task_id = plain[cell["run_id"]], plain[cell["task_id"]]
    label = (
        f"{task_id} on {cell['batch_date']}: {figures.word(state)}, "
        f"duration {figures.duration_text(cell['duration_seconds'])}, "
        f"queue wait {figures.duration_text(cell['queue_wait_seconds'])}, "
        f"{attempts} attempt{'' if attempts == 1 else 's'}"
    )
    return Markup(
        f'<a class="{classes}" href="/runs/{run_id}/tasks/{task_id}" data-run="{run_id}" '
        f'data-task="{task_id}" data-cell title="{label}" aria-label="{label}">'
        f"{figures.icon(state) if marked else ''}</a>"
    )


def _plain(text: str) -> str:
    return text if PLAIN.match(text) else str(escape(text))


ROLES = ("triggers", "waiters", "producers")


def dataset_roles(pipelines: Iterable[Pipeline]) -> dict[str, dict[str, set[str]]]:
    """Every dataset the pipelines name: who triggers on it, waits for it, produces it."""
    roles: dict[str, dict[str, set[str]]] = {}

    def add(dataset: str, role: str, pipeline_id: str) -> None:
        roles.setdefault(dataset, {name: set() for name in ROLES})[role].add(pipeline_id)

    for pipeline in pipelines:
        for trigger in pipeline.spec.triggers.datasets:
            add(trigger.dataset, "triggers", pipeline.id)
        for task in pipeline.spec.tasks:
            for wait in task.wait_for:
                if isinstance(wait, DatasetWait):
                    add(wait.dataset, "waiters", pipeline.id)
            for source in task.inputs:
                if source.wait:
                    add(source.dataset or source.uri, "waiters", pipeline.id)
            for output in task.outputs:
                add(output.dataset or output.uri, "producers", pipeline.id)
    return roles


def _roles_of(roles: dict[str, dict[str, set[str]]], dataset: str) -> dict[str, list[str]]:
    found = roles.get(dataset, {})
    return {name: sorted(found.get(name, ())) for name in ROLES}


def _facets(pipeline: Pipeline) -> dict[str, set[str]]:
    spec = pipeline.spec
    return {
        "domain": {spec.domain},
        "owner": {spec.owner} if spec.owner else set(),
        "tag": {tag for task in spec.tasks for tag in task.tags},
    }


def _matches(pipeline: Pipeline, chosen: dict[str, str]) -> bool:
    facets = _facets(pipeline)
    if any(chosen[name] and chosen[name] not in facets[name] for name in FILTERS):
        return False
    words = chosen["q"].lower().split()
    spec = pipeline.spec
    text = f"{pipeline.id} {spec.description} {spec.owner} {spec.domain}".lower()
    return all(word in text for word in words)
