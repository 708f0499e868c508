"""``_tributary.json`` beside what a successful attempt wrote to a local path: who produced
each output (run, task, attempt, batch date), from what (its inputs' partitions), with which
params, how long it took, its exit code and its result. One file per directory, a record per
dataset; written where the attempt ran, after it succeeded. A file that cannot be written is
logged, never a failure of the task (PostgreSQL's output_records has the same facts)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson

from service.clock import utc_now
from service.execution.launch import Launch
from service.observability import get_logger

log = get_logger(__name__)

METADATA_FILE = "_tributary.json"


def describe_outputs(
    launch: Launch, exit_code: int | None, seconds: float, result: dict[str, Any] | None
) -> None:
    for (dataset, partition), uri in zip(launch.outputs, launch.output_uris, strict=False):
        if not uri.startswith("file://"):
            continue
        path = Path(uri.removeprefix("file://"))
        folder = path if path.is_dir() else path.parent
        if not folder.is_dir():
            continue  # nothing was written there
        record = {
            "dataset": dataset,
            "partition": partition,
            "uri": uri,
            "run_id": launch.env.get("TRIBUTARY_RUN_ID"),
            "pipeline_id": launch.env.get("TRIBUTARY_PIPELINE_ID"),
            "task_id": launch.env.get("TRIBUTARY_TASK_ID"),
            "attempt": int(launch.env.get("TRIBUTARY_ATTEMPT", "0")),
            "batch_date": launch.env.get("TRIBUTARY_BATCH_DATE"),
            "params": orjson.loads(launch.env.get("TRIBUTARY_PARAMS", "{}")),
            "inputs": [{"dataset": d, "partition": p} for d, p in launch.inputs],
            "exit_code": exit_code,
            "duration_seconds": round(seconds, 3),
            "result": result,
            "written_at": utc_now().isoformat(),
        }
        try:
            _merge(folder / METADATA_FILE, dataset, record)
        except (OSError, ValueError) as exc:
            log.warning("output.metadata_not_written", path=str(folder), error=str(exc))


def _merge(target: Path, dataset: str, record: dict[str, Any]) -> None:
    """Add the record (one per dataset) to the directory's file, replaced atomically."""
    records: dict[str, Any] = {}
    if target.exists():
        found = orjson.loads(target.read_bytes())
        records = found if isinstance(found, dict) else {}
    records[dataset] = record
    partial = target.with_name(f".{target.name}.{os.getpid()}")
    partial.write_bytes(orjson.dumps(records, option=orjson.OPT_INDENT_2))
    partial.replace(target)
