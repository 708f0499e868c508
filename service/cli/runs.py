"""``tributary runs``: what runs there are, and what one of them did."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from datetime import UTC
from pathlib import Path
from typing import Any

import orjson

from service.cli.common import print_table, settings_for, with_store
from service.store import Store
from service.store.run_views import RunDetails


def cmd_runs_list(args: argparse.Namespace) -> int:
    settings = settings_for(args)
    dates = (args.from_date, args.to_date)
    runs = with_store(
        settings, lambda store: store.list_runs(args.limit, args.pipeline, args.state, dates)
    )
    if args.json:
        print(orjson.dumps([asdict(run) for run in runs]).decode())
        return 0
    rows = [("RUN ID", "PIPELINE", "BATCH DATE", "STATE", "CREATED (UTC)", "DURATION", "PARAMS")]
    for run in runs:
        duration = (
            (run.ended_at - run.started_at).total_seconds()
            if run.ended_at and run.started_at
            else None
        )
        rows.append(
            (
                run.run_id,
                run.pipeline_id,
                run.batch_date.isoformat(),
                run.state,
                f"{run.created_at.astimezone(UTC):%Y-%m-%d %H:%M:%S}",
                f"{duration:.2f}s" if duration is not None else "-",
                " ".join(f"{k}={v}" for k, v in sorted(run.params.items())) or "-",
            )
        )
    print_table(rows)
    if not runs:
        print("no runs yet", file=sys.stderr)
    return 0


def cmd_runs_show(args: argparse.Namespace) -> int:
    settings = settings_for(args)

    async def fetch(store: Store) -> tuple[RunDetails | None, list[str], dict[str, Any]]:
        details = await store.run_details(args.run_id)
        if details is None:
            return None, [], {}
        run = details.run
        spec = await store.pipeline_version_spec(run.pipeline_id, run.spec_hash)
        order = [task["id"] for task in spec["tasks"]] if spec else []
        retried = [t.task_id for t in details.tasks if t.attempt > 1]
        history = {t: await store.task_attempts(run.run_id, t) for t in retried}
        return details, order, history

    details, order, history = with_store(settings, fetch)
    if details is None:
        print(f"tributary: no run {args.run_id!r}", file=sys.stderr)
        return 1
    view = {**details.view(), "attempts": history}
    if args.json:
        print(orjson.dumps(view, option=orjson.OPT_INDENT_2).decode())
        return 0
    print_run(view, order, settings.task_log_dir)
    return 0


def result_text(result: dict[str, Any], width: int = 80) -> str:
    """A task's result on one line: ``rows=1204 error_rate=0.002``."""
    text = " ".join(f"{name}={orjson.dumps(value).decode()}" for name, value in result.items())
    return text if len(text) <= width else text[: width - 1] + "…"


def print_run(view: dict[str, Any], order: list[str], log_dir: Path) -> None:
    """The run, then its tasks in the pipeline's order: state, attempts, timing, what each
    waits for or why it failed, and where its log is; then the operators' commands."""
    run = view["run"]
    print(
        f"run {run['run_id']}  {run['pipeline_id']}  batch date {run['batch_date']}  "
        f"{run['state']}  (created {run['created_at']:%Y-%m-%d %H:%M:%S} UTC)"
    )
    rank = {task_id: n for n, task_id in enumerate(order)}
    tasks = sorted(view["tasks"], key=lambda t: rank.get(t["task_id"], len(rank)))
    rows = [("TASK", "STATE", "ATTEMPT", "EXIT", "SECONDS", "NOTE")]
    for task in tasks:
        seconds = "-"
        if task["started_at"] and task["ended_at"]:
            seconds = f"{(task['ended_at'] - task['started_at']).total_seconds():.2f}"
        note = "; ".join(w["waits_for"] for w in task.get("waiting_for", []))
        if not note and task.get("result"):
            note = result_text(task["result"])
        if not note and task["error_snippet"] and task["state"] != "success":
            note = task["error_snippet"].strip().splitlines()[-1][:80]
        exit_code = "-" if task["exit_code"] is None else str(task["exit_code"])
        rows.append(
            (task["task_id"], task["state"], str(task["attempt"]), exit_code, seconds, note)
        )
    print_table(rows)
    for task_id, attempts in view.get("attempts", {}).items():
        for a in attempts:
            code = "-" if a["exit_code"] is None else a["exit_code"]
            print(f"  {task_id} attempt {a['attempt']}: {a['state']} (exit {code})")
    print(f"logs: {log_dir / run['run_id']}/<task>/<attempt>.log, or tributary logs RUN TASK")
    for command in view.get("commands", []):
        outcome = "" if command["outcome"] == "applied" else f" — refused: {command['detail']}"
        print(
            f"  {command['at']:%Y-%m-%d %H:%M:%S} {command['actor']}: {command['command']}{outcome}"
        )
