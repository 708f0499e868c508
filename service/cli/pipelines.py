"""``tributary validate``, ``plan`` and ``compile``: pipeline files (YAML, JSON, or Python
modules written with the task SDK) checked, dry-run and compiled; nothing executed."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson

from service.cli.common import parse_params, settings_for
from service.clock import utc_now
from service.config import Settings
from service.errors import ConfigError, Problem, SpecError
from service.spec.loader import load_pipeline_dir, load_pipeline_file, pipeline_from_data
from service.spec.pipeline import Pipeline
from service.spec.plan import format_plan, make_plan
from service.spec.validate import NodeCapacity, suggest


def spec_context(args: argparse.Namespace) -> tuple[NodeCapacity, Path, str]:
    """Node capacity and pipelines directory from the settings, if they load; else this machine."""
    try:
        settings = settings_for(args)
    except ConfigError as exc:
        first = str(exc).splitlines()[-1].strip()
        machine = Settings.model_fields
        capacity = NodeCapacity(
            machine["node_cpu_cores"].get_default(call_default_factory=True),
            machine["node_memory_mb"].get_default(call_default_factory=True),
        )
        return (
            capacity,
            Path("pipelines"),
            f"this machine's capacity (settings did not load: {first})",
        )
    capacity = NodeCapacity(settings.node_cpu_cores, settings.node_memory_mb)
    return capacity, settings.pipelines_dir, "node capacity from the settings"


def cmd_validate(args: argparse.Namespace) -> int:
    capacity, _, capacity_source = spec_context(args)
    errors: list[Problem] = []
    warnings: list[Problem] = []
    valid: list[Pipeline] = []
    for path in args.paths:
        if path.is_dir():
            result = load_pipeline_dir(path, capacity)
            valid.extend(result.pipelines)
            errors.extend(result.problems)
            warnings.extend(result.warnings)
            continue
        try:
            loaded = load_pipelines(path, capacity)
        except SpecError as exc:
            errors.extend(exc.problems)
            continue
        valid.extend(loaded)
        warnings.extend(w for pipeline in loaded for w in pipeline.warnings)
    if args.format == "json":
        print(
            orjson.dumps(
                {
                    "valid": not errors,
                    "pipelines": [
                        {"id": p.id, "file": p.source, "spec_hash": p.spec_hash} for p in valid
                    ],
                    "errors": [p.to_json() for p in errors],
                    "warnings": [p.to_json() for p in warnings],
                    "capacity": {"cpu_cores": capacity.cpu_cores, "memory_mb": capacity.memory_mb},
                }
            ).decode()
        )
    else:
        for problem in [*errors, *warnings]:
            print(problem)
        print(
            f"{len(valid)} valid pipeline(s), {len(errors)} error(s), {len(warnings)} "
            f"warning(s); checked against {capacity_source}: {capacity.cpu_cores:g} cores, "
            f"{capacity.memory_mb} MB",
            file=sys.stderr,
        )
    return 1 if errors else 0


def cmd_plan(args: argparse.Namespace) -> int:
    capacity, pipelines_dir, _ = spec_context(args)
    pipeline = _find_pipeline(args.pipeline, args.pipelines_dir or pipelines_dir, capacity)
    plan = make_plan(
        pipeline,
        args.partition,
        parse_params(args.param),
        args.resume_from,
        capacity,
        now=utc_now(),
    )
    if args.format == "json":
        print(orjson.dumps(plan.to_json(), option=orjson.OPT_INDENT_2).decode())
    else:
        print(format_plan(plan))
    return 0


def cmd_compile(args: argparse.Namespace) -> int:
    """Each pipeline a Python module defines, validated, as the JSON the service loads."""
    capacity, _, _ = spec_context(args)
    try:
        pipelines = load_pipelines(args.module, capacity)  # every problem, or none
        documents = {d["id"]: d for d in python_documents(args.module)}
    except SpecError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    if not pipelines:
        print(f"tributary compile: {args.module} defines no Pipeline", file=sys.stderr)
        return 1
    for pipeline in pipelines:
        document = orjson.dumps(documents[pipeline.id], option=orjson.OPT_INDENT_2)
        if args.out is None:
            print(document.decode())
            continue
        args.out.mkdir(parents=True, exist_ok=True)
        target = args.out / f"{pipeline.id}.json"
        target.write_bytes(document + b"\n")
        print(f"wrote {target} (spec hash {pipeline.spec_hash[:12]})", file=sys.stderr)
    return 0


def load_pipelines(path: Path, capacity: NodeCapacity) -> list[Pipeline]:
    """The pipelines of a file: one from YAML or JSON, each one a Python module defines."""
    if path.suffix != ".py":
        return [load_pipeline_file(path, capacity)]
    found, problems = [], []
    for document in python_documents(path):
        try:
            found.append(pipeline_from_data(document, str(path), capacity))
        except SpecError as exc:
            problems.extend(exc.problems)
    if problems:
        raise SpecError(problems)
    return found


def python_documents(path: Path) -> list[dict[str, Any]]:
    """The documents of the pipelines a Python module defines (imported in this process)."""
    from service.sdk.pipeline import pipelines_in

    try:
        return [pipeline.to_spec() for pipeline in pipelines_in(path)]
    except Exception as exc:  # the module's own error, said where it is
        raise SpecError([Problem(f"cannot import it: {exc!r}", file=str(path))]) from None


def _find_pipeline(name: str, directory: Path, capacity: NodeCapacity) -> Pipeline:
    """A pipeline file (of one pipeline), or a pipeline id in the pipelines directory."""
    if Path(name).is_file():
        defined = load_pipelines(Path(name), capacity)
        if len(defined) != 1:
            raise SpecError([Problem(f"{name} defines {len(defined)} pipelines: name one by id")])
        return defined[0]
    result = load_pipeline_dir(directory, capacity)
    found = {p.id: p for p in result.pipelines}
    if name in found:
        return found[name]
    refused = [p for p in result.problems if name in p.file]
    if refused:
        raise SpecError(refused)
    raise SpecError([Problem(f"no pipeline {name!r} in {directory}{suggest(name, found)}")])
