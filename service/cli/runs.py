"""``tributary runs``: what runs there are, and what one of them did."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from datetime import UTC

import orjson

from service.cli.common import print_table, settings_for, with_store
from service.store import Store
from service.store.records import RunRecord, TaskRecord


def cmd_runs_list(args: argparse.Namespace) -> int:
    settings = settings_for(args)
    runs = with_store(settings, lambda store: store.list_runs(args.limit, args.pipeline))
    if args.json:
        print(orjson.dumps([asdict(run) for run in runs]).decode())
        return 0
    rows = [("RUN ID", "PIPELINE", "BATCH DATE", "STATE", "CREATED (UTC)", "DURATION")]
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
            )
        )
    print_table(rows)
    if not runs:
        print("no runs yet", file=sys.stderr)
    return 0


def cmd_runs_show(args: argparse.Namespace) -> int:
    settings = settings_for(args)

    async def fetch(store: Store) -> tuple[RunRecord | None, list[TaskRecord]]:
        return await store.get_run(args.run_id), await store.list_task_instances(args.run_id)

    run, tasks = with_store(settings, fetch)
    if run is None:
        print(f"tributary: no run {args.run_id!r}", file=sys.stderr)
        return 1
    print(
        orjson.dumps(
            {"run": asdict(run), "tasks": [asdict(t) for t in tasks]}, option=orjson.OPT_INDENT_2
        ).decode()
    )
    return 0
