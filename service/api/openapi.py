"""The API described: an OpenAPI 3.1 document, served at ``/api/openapi.json``. A test keeps
its paths equal to the app's routes, so it cannot drift from what the service answers."""

from __future__ import annotations

from typing import Any

RUN_ID = {"name": "run_id", "in": "path", "required": True, "schema": {"type": "string"}}
TASK_ID = {"name": "task_id", "in": "path", "required": True, "schema": {"type": "string"}}
PIPELINE_ID = {
    "name": "pipeline_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
}
LIMIT = {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1}}
PROBLEM = {
    "description": "a problem (RFC 9457): what is wrong, in words a person can act on",
    "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
}
OK = {"description": "the answer, as JSON", "content": {"application/json": {"schema": {}}}}


def _read(summary: str, *parameters: dict[str, Any]) -> dict[str, Any]:
    return {
        "summary": summary,
        "parameters": list(parameters),
        "responses": {"200": OK, "400": PROBLEM, "401": PROBLEM, "404": PROBLEM},
    }


def _command(summary: str, body: dict[str, Any], *parameters: dict[str, Any]) -> dict[str, Any]:
    return {
        "summary": summary,
        "parameters": [
            *parameters,
            {
                "name": "Idempotency-Key",
                "in": "header",
                "schema": {"type": "string"},
                "description": "the same key applies once",
            },
        ],
        "requestBody": {
            "content": {"application/json": {"schema": {"type": "object", "properties": body}}}
        },
        "responses": {
            "200": OK,
            "201": OK,
            "400": PROBLEM,
            "401": PROBLEM,
            "403": PROBLEM,
            "409": PROBLEM,
        },
        "security": [{"bearer": []}],
    }


REASON = {"reason": {"type": "string", "description": "why, for the history"}}

PATHS: dict[str, dict[str, Any]] = {
    "/healthz": {"get": _read("alive")},
    "/readyz": {"get": _read("ready: PostgreSQL, Kafka, loops (Redis reported)")},
    "/metrics": {"get": _read("Prometheus metrics")},
    "/api/openapi.json": {"get": _read("this document")},
    "/api/runs": {
        "get": _read(
            "runs, newest first",
            LIMIT,
            {"name": "pipeline", "in": "query", "schema": {"type": "string"}},
        ),
        "post": _command(
            "start a run by hand; 201 with its id, or 409 and why not",
            {
                "pipeline_id": {"type": "string"},
                "batch_date": {"type": "string", "format": "date"},
                "params": {"type": "object"},
                **REASON,
            },
        ),
    },
    "/api/runs/{run_id}": {"get": _read("a run, its tasks, waits and commands", RUN_ID)},
    "/api/runs/{run_id}/state": {"get": _read("live states (Redis, else PostgreSQL)", RUN_ID)},
    "/api/runs/{run_id}/history": {"get": _read("every state change: when, who, why", RUN_ID)},
    "/api/runs/{run_id}/tasks/{task_id}/attempts": {
        "get": _read("a task's ended attempts", RUN_ID, TASK_ID)
    },
    "/api/runs/{run_id}/cancel": {"post": _command("cancel the run", REASON, RUN_ID)},
    "/api/runs/{run_id}/retry": {"post": _command("retry a failed run", REASON, RUN_ID)},
    "/api/runs/{run_id}/resume": {
        "post": _command("rerun from a task on", {"from": {"type": "string"}, **REASON}, RUN_ID)
    },
    "/api/runs/{run_id}/tasks/{task_id}/retry": {
        "post": _command(
            "retry one task", {"downstream": {"type": "boolean"}, **REASON}, RUN_ID, TASK_ID
        )
    },
    "/api/runs/{run_id}/tasks/{task_id}/mark": {
        "post": _command(
            "mark a task success or skipped",
            {"state": {"enum": ["success", "skipped"]}, **REASON},
            RUN_ID,
            TASK_ID,
        )
    },
    "/api/runs/{run_id}/tasks/{task_id}/log": {
        "get": _read(
            "an attempt's log: offset/limit bytes, tail lines, or follow (server-sent events)",
            RUN_ID,
            TASK_ID,
            *(
                {"name": name, "in": "query", "schema": {"type": "integer", "minimum": 0}}
                for name in ("attempt", "offset", "limit", "tail")
            ),
            {"name": "follow", "in": "query", "schema": {"type": "boolean"}},
        )
    },
    "/api/pipelines": {"get": _read("deployed pipelines: paused, triggers, next and last runs")},
    "/api/pipelines/{pipeline_id}": {"get": _read("one deployed pipeline", PIPELINE_ID)},
    "/api/pipelines/{pipeline_id}/backfill": {
        "post": _command(
            "one run per batch date of a range",
            {
                "from": {"type": "string", "format": "date"},
                "to": {"type": "string", "format": "date"},
                "params": {"type": "object"},
                "dry_run": {"type": "boolean"},
                **REASON,
            },
            PIPELINE_ID,
        )
    },
    "/api/pipelines/{pipeline_id}/pause": {"post": _command("pause", REASON, PIPELINE_ID)},
    "/api/pipelines/{pipeline_id}/unpause": {"post": _command("unpause", REASON, PIPELINE_ID)},
    "/api/datasets": {
        "get": _read(
            "announced partitions, newest first",
            LIMIT,
            {"name": "dataset", "in": "query", "schema": {"type": "string"}},
        )
    },
    "/api/dead-letters": {"get": _read("the newest dead letters", LIMIT)},
    "/api/pipelines/{pipeline_id}/heatmap": {
        "get": _read(
            "each task's duration, queue wait, state and attempts on the newest batch dates",
            PIPELINE_ID,
            {"name": "dates", "in": "query", "schema": {"type": "integer", "minimum": 1}},
        )
    },
    "/api/runs/{run_id}/outputs": {
        "get": _read("what the run's tasks produced, and what produced each output", RUN_ID)
    },
    "/api/tasks/failed": {
        "get": _read(
            "tasks failed for good since a while ago, with their error and the retry command",
            {"name": "since", "in": "query", "schema": {"type": "string"}},
            LIMIT,
        )
    },
    "/api/live": {
        "get": _read(
            "state changes as server-sent events (Redis, else PostgreSQL); 'mode' says which",
            {"name": "run_id", "in": "query", "schema": {"type": "string"}},
            {"name": "pipeline_id", "in": "query", "schema": {"type": "string"}},
        )
    },
}


def document(version: str) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "Tributary", "version": version},
        "paths": PATHS,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Problem": {
                    "type": "object",
                    "properties": {
                        "type": {"type": "string"},
                        "title": {"type": "string"},
                        "status": {"type": "integer"},
                        "detail": {"type": "string"},
                    },
                }
            },
        },
        "security": [{"bearer": []}],
    }
