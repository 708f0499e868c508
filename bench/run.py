"""Every bench, one table: each figure beside its target, and whether it is met.

Runs each bench in a fresh process (the same scripts, each runnable alone) with ``--json`` and
gathers their figures. ``--tiny`` runs each once at a tiny size, as CI does so that no bench
can rot; its figures mean nothing. ``--json`` prints the rows as JSON.

    .venv/bin/python bench/run.py [--tiny] [--only executor queue ...] [--json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

# name -> (arguments at full size, arguments at tiny size)
BENCHES: dict[str, tuple[list[str], list[str]]] = {
    "executor": (["executor.py", "--repeat", "5", "--remote"], ["executor.py", "--repeat", "1"]),
    "queue": (
        ["queue_growth.py", "--runs", "100", "1000", "10000"],
        ["queue_growth.py", "--runs", "12"],
    ),
    "engine": (
        ["engine.py", "--events", "10000", "--runs", "2000"],
        ["engine.py", "--events", "200", "--runs", "50"],
    ),
    "spec": (
        ["spec_scale.py", "--tasks", "10000", "--repeat", "5"],
        ["spec_scale.py", "--tasks", "200", "--repeat", "1"],
    ),
    "cli": (["cli_start.py", "--repeat", "5"], ["cli_start.py", "--repeat", "1"]),
    "history": (
        ["history.py", "--runs", "100000", "--drive", "100"],
        ["history.py", "--runs", "200", "--drive", "3"],
    ),
    "retention": (
        ["retention.py", "--rounds", "60", "--runs", "100", "--keep", "5"],
        ["retention.py", "--rounds", "3", "--runs", "5", "--keep", "1"],
    ),
}


# (what, value, unit, target, the check of the target: None for a figure given for context)
Figure = tuple[str, float, str, str, Callable[[float], bool] | None]


@dataclass(frozen=True)
class Row:
    bench: str
    figure: str
    value: float
    unit: str
    target: str
    met: bool | None  # None: no target, a figure for context


def run_bench(arguments: list[str]) -> Any:
    """The figures a bench printed as JSON (its last line)."""
    done = subprocess.run(
        [sys.executable, str(HERE / arguments[0]), *arguments[1:], "--json"],
        cwd=HERE.parent,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"bench {arguments[0]} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def at_most(limit: float) -> Callable[[float], bool]:
    return lambda value: value <= limit


def at_least(limit: float) -> Callable[[float], bool]:
    return lambda value: value >= limit


def executor_rows(
    f: dict[str, float],
) -> list[Figure]:
    rows = [
        ("chain of 50 `true`, against the floor", f["chain_ratio"], "x", "<= 2.0x", at_most(2.0)),
        (
            "200 independent at concurrency 4, against the floor",
            f["fan_ratio"],
            "x",
            "<= 2.0x",
            at_most(2.0),
        ),
        ("task end -> successor start, p50", f["hop_p50_ms"], "ms", "<= 1.5 ms", at_most(1.5)),
        ("PostgreSQL statements per task", f["statements_per_task"], "", "<= 3", at_most(3)),
    ]
    if "remote_chain_ratio" in f:
        rows += [
            (
                "remote chain of 50, two workers, against the floor",
                f["remote_chain_ratio"],
                "x",
                "<= 4x",
                at_most(4),
            ),
            (
                "remote 200 independent, against the floor",
                f["remote_fan_ratio"],
                "x",
                "<= 4x",
                at_most(4),
            ),
        ]
    return rows


def queue_rows(
    found: list[dict[str, float]],
) -> list[Figure]:
    first = found[0]
    rows: list[Figure] = [
        ("service RSS idle (just started)", first["rss_idle_mb"], "MB", "<= 80 MB", at_most(80)),
    ]
    for f in found:
        n = int(f["runs"])
        rows.append(
            (
                f"{n:,} runs queued at once: tasks/s",
                f["tasks_per_s"],
                "/s",
                ">= 300/s",
                at_least(300),
            )
        )
        rows.append(
            (
                f"{n:,} runs queued at once: RSS at the end",
                f["rss_mb"],
                "MB",
                "<= 200 MB",
                at_most(200),
            )
        )
    if len(found) > 1:
        flat = min(f["tasks_per_s"] for f in found[1:]) / first["tasks_per_s"]
        rows.append(("slowest tasks/s against the first size", flat, "x", ">= 0.8x", at_least(0.8)))
    return rows


def engine_rows(
    f: dict[str, float],
) -> list[Figure]:
    return [
        (
            "dataset.ready ingestion into runs",
            f["events_per_s"],
            "/s",
            ">= 10,000/s",
            at_least(10_000),
        ),
        (
            "durable state transitions",
            f["transitions_per_s"],
            "/s",
            ">= 20,000/s",
            at_least(20_000),
        ),
    ]


def spec_rows(
    f: dict[str, float],
) -> list[Figure]:
    return [
        (
            "validate + plan, JSON",
            (f["json_s"] + f["plan_s"]) * 1000,
            "ms",
            "<= 200 ms",
            at_most(200),
        ),
        (
            "validate + plan, YAML",
            (f["yaml_s"] + f["plan_s"]) * 1000,
            "ms",
            "<= 300 ms",
            at_most(300),
        ),
    ]


def cli_rows(
    f: dict[str, dict[str, float]],
) -> list[Figure]:
    return [
        (
            f"`tributary {command}` start, median",
            f[command]["median_ms"],
            "ms",
            "<= 150 ms",
            at_most(150),
        )
        for command in ("--help", "emit-ready --help")
    ]


def history_rows(
    f: dict[str, float],
) -> list[Figure]:
    return [
        ("claim p50 with history, against empty", f["claim_ratio"], "x", "<= 1.2x", at_most(1.2)),
        (
            "completion p50 with history, against empty",
            f["completion_ratio"],
            "x",
            "<= 1.2x",
            at_most(1.2),
        ),
        ("claim p50, empty database", f["empty_claim_ms"], "ms", "", None),
        ("completion p50, empty database", f["empty_completion_ms"], "ms", "", None),
    ]


def retention_rows(samples: list[dict[str, Any]]) -> list[Figure]:
    middle, last = samples[len(samples) // 2], samples[-1]
    rows: list[Figure] = []
    for table in ("transitions", "processed_events", "outbox"):
        for what, at in (("rows", 0), ("size on disk", 1)):
            growth = last[table][at] / max(middle[table][at], 1)
            figure = f"{table} {what}, last sample against the middle one"
            rows.append((figure, growth, "x", "<= 1.1x (flat)", at_most(1.1)))
    return rows


ROWS = {
    "executor": executor_rows,
    "queue": queue_rows,
    "engine": engine_rows,
    "spec": spec_rows,
    "cli": cli_rows,
    "history": history_rows,
    "retention": retention_rows,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="each bench once, tiny (CI)")
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHES), help="these benches only")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args()
    rows: list[Row] = []
    for name in args.only or list(BENCHES):
        full, tiny = BENCHES[name]
        started = time.perf_counter()
        figures = run_bench(tiny if args.tiny else full)
        print(f"{name}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
        for figure, value, unit, target, check in ROWS[name](figures):
            rows.append(
                Row(name, figure, value, unit, target, None if check is None else check(value))
            )
    if args.json:
        print(json.dumps([asdict(r) for r in rows]))
        return
    print(f"{'bench':<10} {'figure':<62} {'value':>12}  {'target':<16} met")
    for r in rows:
        value = f"{r.value:,.2f} {r.unit}".strip()
        met = "" if r.met is None else ("yes" if r.met else "NO")
        print(f"{r.bench:<10} {r.figure:<62} {value:>12}  {r.target:<16} {met}")


if __name__ == "__main__":
    main()
