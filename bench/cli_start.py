"""How fast the ``tributary`` command starts (target: 150 ms for ``--help`` and ``emit-ready``).

Each start is a fresh interpreter, as a person at a terminal gets. Prints the median and the
minimum of ``--repeat`` starts for a few commands' ``--help`` and for ``emit-ready --help``
(the command a data producer's job runs after each partition; its help builds its parser
only: the start-up cost without the broker round trip).

    .venv/bin/python bench/cli_start.py [--repeat 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

COMMANDS = (
    ["--help"],
    ["emit-ready", "--help"],
    ["runs", "cancel", "--help"],
    ["backfill", "--help"],
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5, help="starts per command")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    figures = {}
    if not args.json:
        print(f"tributary start-up, {args.repeat} fresh interpreters each (target: 150 ms)")
    for command in COMMANDS:
        seconds = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "service", *command], capture_output=True, check=True
            )
            seconds.append(time.perf_counter() - started)
        median, fastest = statistics.median(seconds) * 1000, min(seconds) * 1000
        figures[" ".join(command)] = {"median_ms": median, "min_ms": fastest}
        if not args.json:
            name = " ".join(command)
            print(f"  tributary {name:<22} median {median:4.0f} ms, min {fastest:4.0f} ms")
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
