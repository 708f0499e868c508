"""Operators' commands from the terminal: they call the service's REST API and wait for its
answer — what was done, or why it was refused (exit 1) — so nothing fails silently.

``--url`` and ``--token`` (or the api_url and cli_token settings) say where and as whom.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import orjson

from service.cli.common import parse_params, settings_for
from service.errors import InfrastructureError

TIMEOUT = 30.0  # seconds: the service answers once the command is applied
FOLLOW_POLL = 1.0  # seconds between looks at followed runs
FOLLOW_TIMEOUT = 3600.0  # seconds a followed log may stay silent


def call(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    """The API's answer; a refusal or an error is printed and exits 1."""
    with _open(args, method, path, body) as response:
        return orjson.loads(response.read())


@contextlib.contextmanager
def _open(
    args: argparse.Namespace, method: str, path: str, body: Any = None, timeout: float = TIMEOUT
) -> Iterator[Any]:
    base, token = _endpoint(args)
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = orjson.dumps(body)
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(base + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            yield response
    except urllib.error.HTTPError as exc:
        detail = _detail(exc.read()) or exc.reason
        print(f"tributary: {detail} ({exc.code})", file=sys.stderr)
        raise SystemExit(1) from None
    except (urllib.error.URLError, OSError) as exc:
        raise InfrastructureError(f"cannot reach the service's API at {base}: {exc}") from None


def _endpoint(args: argparse.Namespace) -> tuple[str, str | None]:
    """The API's address and the token to send: from the options, else the settings."""
    if args.url and args.token:
        return args.url.rstrip("/"), args.token
    settings = settings_for(args)
    token = settings.cli_token.get_secret_value() if settings.cli_token else None
    return (args.url or settings.api_base()).rstrip("/"), args.token or token


def _detail(body: bytes) -> str | None:
    try:
        found = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return str(found.get("detail") or found.get("error")) if isinstance(found, dict) else None


def _quoted(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _show(args: argparse.Namespace, answer: Any, line: str) -> int:
    print(orjson.dumps(answer, option=orjson.OPT_INDENT_2).decode() if args.json else line)
    return 0


def _run_line(answer: Any) -> str:
    run = answer.get("run", {})
    return f"run {run.get('run_id')} is {run.get('state')}"


def cmd_cancel(args: argparse.Namespace) -> int:
    answer = call(args, "POST", f"/api/runs/{_quoted(args.run_id)}/cancel", {"reason": args.reason})
    return _show(args, answer, _run_line(answer))


def cmd_retry(args: argparse.Namespace) -> int:
    run = _quoted(args.run_id)
    if args.task:
        body = {"reason": args.reason, "downstream": args.downstream}
        answer = call(args, "POST", f"/api/runs/{run}/tasks/{_quoted(args.task)}/retry", body)
    else:
        body = {"reason": args.reason, "current_version": args.current_version}
        answer = call(args, "POST", f"/api/runs/{run}/retry", body)
    return _show(args, answer, _run_line(answer))


def cmd_resume(args: argparse.Namespace) -> int:
    body = {"from": args.from_task, "reason": args.reason}
    answer = call(args, "POST", f"/api/runs/{_quoted(args.run_id)}/resume", body)
    return _show(args, answer, _run_line(answer))


def cmd_mark(args: argparse.Namespace) -> int:
    path = f"/api/runs/{_quoted(args.run_id)}/tasks/{_quoted(args.task)}/mark"
    answer = call(args, "POST", path, {"state": args.state, "reason": args.reason})
    return _show(args, answer, _run_line(answer))


def cmd_backfill(args: argparse.Namespace) -> int:
    body = {
        "from": args.from_date,
        "to": args.to_date,
        "params": parse_params(args.param),
        "dry_run": args.dry_run,
        "reason": args.reason,
    }
    answer = call(args, "POST", f"/api/pipelines/{_quoted(args.pipeline)}/backfill", body)
    if args.dry_run:
        line = f"would create {len(answer['would_create'])} run(s): " + (
            ", ".join(answer["would_create"]) or "none"
        )
    else:
        line = f"created {len(answer['created'])} run(s), {len(answer['existed'])} existed"
    _show(args, answer, line)
    if not args.wait or args.dry_run or not answer.get("run_ids"):
        return 0
    return 0 if follow_runs(args, answer["run_ids"]) else 1


def cmd_pause(args: argparse.Namespace) -> int:
    action = "pause" if args.pause else "unpause"
    answer = call(
        args, "POST", f"/api/pipelines/{_quoted(args.pipeline)}/{action}", {"reason": args.reason}
    )
    state = "paused" if answer["paused"] else "active"
    return _show(args, answer, f"{args.pipeline} is {state}")


def cmd_trigger(args: argparse.Namespace) -> int:
    if args.no_wait:  # fire and forget, through Kafka: the service's log says the outcome
        from service.cli.events import cmd_trigger as send

        return send(args)
    body = {
        "pipeline_id": args.pipeline,
        "batch_date": args.date,
        "params": parse_params(args.param),
        "reason": args.reason,
    }
    answer = call(args, "POST", "/api/runs", body)
    _show(args, answer, f"created run {answer['run_id']} of {args.pipeline}")
    if not args.wait:
        return 0
    return 0 if follow_runs(args, [answer["run_id"]]) else 1


def cmd_pipelines_list(args: argparse.Namespace) -> int:
    answer = call(args, "GET", "/api/pipelines")
    if args.json:
        return _show(args, answer, "")
    for p in answer["pipelines"]:
        schedule = p["triggers"]["schedule"]
        upcoming = (
            f", next {schedule['next_fires'][0]['at']}"
            if schedule and schedule["next_fires"]
            else ""
        )
        state = "paused" if p.get("paused") else "active"
        print(f"{p['pipeline_id']}  {state}  max_active_runs {p['max_active_runs']}{upcoming}")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    """An attempt's log; ``--follow`` prints what it gains until the attempt ends."""
    query: dict[str, Any] = {}
    if args.attempt:
        query["attempt"] = args.attempt
    if args.follow:
        query["follow"] = 1
    elif args.tail is not None:
        query["tail"] = args.tail
    path = f"/api/runs/{_quoted(args.run_id)}/tasks/{_quoted(args.task)}/log"
    if query:
        path += "?" + urllib.parse.urlencode(query)
    with _open(args, "GET", path, timeout=FOLLOW_TIMEOUT if args.follow else TIMEOUT) as response:
        if not args.follow:
            sys.stdout.write(response.read().decode(errors="replace"))
            return 0
        for raw in response:  # server-sent events, a line at a time
            line = raw.decode(errors="replace").rstrip("\n")
            if line.startswith("event: end"):
                break
            if line.startswith("data: "):
                print(line.removeprefix("data: "), flush=True)
    return 0


ENDED = ("success", "failed", "cancelled")


def follow_runs(args: argparse.Namespace, run_ids: list[str]) -> bool:
    """A line per task state change until every run has ended; whether all succeeded."""
    seen: dict[tuple[str, str], str] = {}
    ended: dict[str, str] = {}
    while len(ended) < len(run_ids):
        for run_id in run_ids:
            if run_id in ended:
                continue
            view = call(args, "GET", f"/api/runs/{_quoted(run_id)}")
            for task in view["tasks"]:
                key = (run_id, task["task_id"])
                if seen.get(key) != task["state"]:
                    seen[key] = task["state"]
                    prefix = f"{run_id} " if len(run_ids) > 1 else ""
                    print(f"  {prefix}{task['task_id']}: {task['state']}", flush=True)
            state = view["run"]["state"]
            if state in ENDED:
                ended[run_id] = state
                print(f"run {run_id} {state}", flush=True)
        if len(ended) < len(run_ids):
            time.sleep(FOLLOW_POLL)
    return all(state == "success" for state in ended.values())


def cmd_pipelines_show(args: argparse.Namespace) -> int:
    answer = call(args, "GET", f"/api/pipelines/{_quoted(args.pipeline)}")
    if args.json:
        return _show(args, answer, "")
    state = "paused" if answer["paused"] else "active"
    owner = answer["owner"] or "-"
    print(f"{answer['pipeline_id']} (version {answer['version']}, {state}), owner {owner}")
    triggers = answer["triggers"]
    print(f"  triggered by: {', '.join(triggers['datasets']) or 'no dataset'}")
    for fire in (triggers["schedule"] or {}).get("next_fires", []):
        print(f"  scheduled: {fire['at']} (batch date {fire['batch_date']})")
    last = ", ".join(f"{r['batch_date']} {r['state']}" for r in answer["last_runs"])
    print(f"  last runs: {last or 'none'}")
    return 0


def cmd_runs_failed(args: argparse.Namespace) -> int:
    """Failed tasks to follow up: when, which, why (the error's last line), and how to retry."""
    query = urllib.parse.urlencode({"since": args.since, "limit": args.limit})
    answer = call(args, "GET", f"/api/tasks/failed?{query}")
    if args.json:
        return _show(args, answer, "")
    failed = answer["failed"]
    if not failed:
        print(f"no task failed since {answer['since']}")
        return 0
    for task in failed:
        error = (task["error_snippet"] or "").strip().splitlines()
        print(
            f"{task['ended_at']}  {task['pipeline_id']} {task['batch_date']}  "
            f"{task['task_id']}: {task['state']} (attempt {task['attempt']}, exit "
            f"{task['exit_code'] if task['exit_code'] is not None else '-'})"
        )
        if task.get("reason"):
            print(f"    why: {task['reason'][:200]}")
        if error and task["exit_code"] not in (None, 0):
            print(f"    error: {error[-1][:160]}")
        print(f"    retry: {task['retry']}")
    return 0
