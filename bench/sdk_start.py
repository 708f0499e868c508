"""What a Python task costs before its own work: a fresh interpreter, ``import service.sdk``,
and the task runner calling a function that returns a result (written to its result file),
against a bare ``python -c pass``. Median and minimum of ``--repeat`` fresh processes each.

    .venv/bin/python bench/sdk_start.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TASK = """\
from service.sdk import Context, task


@task
def count(ctx: Context) -> dict[str, int]:
    return {"rows": int(ctx.params["orders"])}
"""


def timed(argv: list[str], repeat: int, cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(argv, cwd=cwd, env=env, capture_output=True, check=True)
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds) * 1000, min(seconds) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="fresh processes per line")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "light_task.py").write_text(TASK)
        env = {
            **os.environ,
            "TRIBUTARY_RUN_ID": "r1",
            "TRIBUTARY_TASK_ID": "count",
            "TRIBUTARY_ATTEMPT": "1",
            "TRIBUTARY_BATCH_DATE": "2026-11-21",
            "TRIBUTARY_PIPELINE_ID": "p",
            "TRIBUTARY_TRACE_ID": "t1",
            "TRIBUTARY_PARAMS": '{"orders": 12}',
            "TRIBUTARY_RESULT_FILE": str(work / "result.json"),
        }
        lines = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "import service.sdk": [sys.executable, "-c", "import service.sdk"],
            "runner + a trivial task": [
                sys.executable,
                "-m",
                "service.sdk.runner",
                "light_task:count",
            ],
        }
        print(f"a Python task's start, {args.repeat} fresh processes each")
        for name, argv in lines.items():
            median, fastest = timed(argv, args.repeat, work, env)
            print(f"  {name:<26} median {median:4.0f} ms, min {fastest:4.0f} ms")
        assert (work / "result.json").read_text() == '{"rows":12}'


if __name__ == "__main__":
    main()
