"""``tributary runs``: what runs there are, and what one of them did."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from datetime import UTC

import orjson

from service.cli.common import print_table, settings_for, with_store


def cmd_runs_list(args: argparse.Namespace) -> int:
    settings = settings_for(args)
    dates = (args.from_date, args.to_date)
    runs = with_store(
        settings, lambda store: store.list_runs(args.limit, args.pipeline, args.state, dates)
    )
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

    details = with_store(settings, lambda store: store.run_details(args.run_id))
    if details is None:
        print(f"tributary: no run {args.run_id!r}", file=sys.stderr)
        return 1
    print(orjson.dumps(details.view(), option=orjson.OPT_INDENT_2).decode())
    return 0
