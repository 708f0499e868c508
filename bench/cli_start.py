"""How fast the ``tributary`` command starts (the issue's target: under 200 ms for ``--help``).

Each start is a fresh interpreter, as a person at a terminal gets. Prints the median and the
minimum of ``--repeat`` starts for a few commands' ``--help``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = (["--help"], ["runs", "cancel", "--help"], ["backfill", "--help"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5, help="starts per command")
    args = parser.parse_args()
    print(f"tributary start-up, {args.repeat} fresh interpreters each (target: under 200 ms)")
    for command in COMMANDS:
        seconds = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "service", *command], capture_output=True, check=True
            )
            seconds.append(time.perf_counter() - started)
        median, fastest = statistics.median(seconds) * 1000, min(seconds) * 1000
        print(f"  tributary {' '.join(command):<22} median {median:4.0f} ms, min {fastest:4.0f} ms")


if __name__ == "__main__":
    main()
