"""Validate and plan a generated 10,000-task pipeline (random DAG, ~3 dependencies per task).

Times each stage, median of several repeats, on the real code path of `tributary validate`
and `tributary plan`: YAML parsing, model validation, graph and template checks, planning.

    .venv/bin/python bench/spec_scale.py [--tasks 10000] [--deps 3] [--repeat 5] [--json]
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import yaml

from service.spec.loader import load_pipeline_file, pipeline_from_data
from service.spec.plan import make_plan
from service.spec.validate import NodeCapacity

_Dumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def generate(tasks: int, deps: int, seed: int = 7) -> dict[str, Any]:
    rng = random.Random(seed)
    spec: dict[str, Any] = {
        "id": "big",
        "params": {"region": {"default": "eu"}},
        "defaults": {"retry": {"max_attempts": 3}, "timeout": "1h"},
        "tasks": [],
    }
    for i in range(tasks):
        window = range(max(0, i - 200), i)  # local edges give a deep, realistic DAG
        requires = sorted({f"t{j}" for j in rng.sample(window, min(deps, len(window)))})
        spec["tasks"].append(
            {
                "id": f"t{i}",
                "command": [
                    "run.py",
                    f"--step={i}",
                    "--date",
                    "{batch_date}",
                    "--prev",
                    "{batch_date - 1d:%Y%m%d}",
                    "--region",
                    "{params.region}",
                ],
                "requires": requires,
                "outputs": [f"s3://lake/big/t{i}/dt={{batch_date}}"],
            }
        )
    return spec


def timed(repeat: int, work: Callable[[], Any]) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        gc.collect()  # each repeat starts clean, as a one-shot `tributary validate` does
        started = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--deps", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    data = generate(args.tasks, args.deps)
    edges = sum(len(t["requires"]) for t in data["tasks"])
    capacity = NodeCapacity(cpu_cores=2, memory_mb=24_000)
    with tempfile.TemporaryDirectory() as tmp:
        yaml_path, json_path = Path(tmp) / "big.yaml", Path(tmp) / "big.json"
        yaml_path.write_text(yaml.dump(data, Dumper=_Dumper, sort_keys=False))
        json_path.write_bytes(orjson.dumps(data))
        size_mb = yaml_path.stat().st_size / 1e6
        json_s, pipeline = timed(args.repeat, lambda: load_pipeline_file(json_path, capacity))
        yaml_s, _ = timed(args.repeat, lambda: load_pipeline_file(yaml_path, capacity))
    data_s, _ = timed(args.repeat, lambda: pipeline_from_data(data, "generated", capacity))
    plan_s, plan = timed(args.repeat, lambda: make_plan(pipeline, "2026-11-21", {}))

    if args.json:
        figures = {"json_s": json_s, "yaml_s": yaml_s, "data_s": data_s, "plan_s": plan_s}
        print(orjson.dumps(figures).decode())
        return
    ms = lambda seconds: f"{seconds * 1000:5.0f} ms"  # noqa: E731
    print(
        f"{args.tasks} tasks, {edges} dependencies ({edges / args.tasks:.1f} per task), "
        f"{len(plan.waves)} waves, YAML file {size_mb:.1f} MB; medians of {args.repeat}"
    )
    print(f"  validate, document already parsed (models, graph, templates) {ms(data_s)}")
    print(f"  validate a JSON file                                         {ms(json_s)}")
    print(f"  validate a YAML file (the libyaml parse dominates)           {ms(yaml_s)}")
    print(f"  plan (waves, every command rendered)                         {ms(plan_s)}")
    print(f"  validate + plan, JSON file (target: 200 ms)                   {ms(json_s + plan_s)}")
    print(f"  validate + plan, YAML file (target: 300 ms)                  {ms(yaml_s + plan_s)}")


if __name__ == "__main__":
    main()
