"""What a Python task knows of its run: ids, the batch date, typed params, its inputs and
outputs (resolved URIs), its run's working directory, and a structlog logger bound to all of
it that writes JSON lines to the attempt's log. Read from the environment the executor gives
every attempt (``TRIBUTARY_*``)."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Ref:
    """An input or output as the run resolved it."""

    dataset: str
    uri: str
    partition: str

    @property
    def path(self) -> Path:
        """The local path of a ``file://`` URI."""
        if not self.uri.startswith("file://"):
            raise ValueError(f"{self.uri!r} is not a file:// URI")
        return Path(self.uri.removeprefix("file://"))


@dataclass(frozen=True)
class Context:
    run_id: str
    task_id: str
    attempt: int
    batch_date: date
    pipeline_id: str
    trace_id: str
    params: Mapping[str, Any] = field(default_factory=dict)
    inputs: tuple[Ref, ...] = ()
    outputs: tuple[Ref, ...] = ()
    run_dir: Path | None = None

    @functools.cached_property
    def log(self) -> Any:
        """A structlog logger bound to run, task, attempt and trace id, writing JSON lines to
        the attempt's log (made on first use: a task that does not log does not pay for it)."""
        return task_logger(
            {
                "run_id": self.run_id,
                "task_id": self.task_id,
                "attempt": self.attempt,
                "trace_id": self.trace_id,
            }
        )

    def input(self, dataset: str) -> Ref:
        return _named(self.inputs, dataset, "input")

    def output(self, dataset: str) -> Ref:
        return _named(self.outputs, dataset, "output")


def _named(refs: tuple[Ref, ...], dataset: str, kind: str) -> Ref:
    for ref in refs:
        if ref.dataset == dataset:
            return ref
    raise KeyError(f"no {kind} {dataset!r}: the task declares {[r.dataset for r in refs]}")


REQUIRED = (
    "TRIBUTARY_RUN_ID",
    "TRIBUTARY_TASK_ID",
    "TRIBUTARY_ATTEMPT",
    "TRIBUTARY_BATCH_DATE",
    "TRIBUTARY_PIPELINE_ID",
    "TRIBUTARY_TRACE_ID",
)


def context(environ: Mapping[str, str] | None = None) -> Context:
    """The context of the attempt this process runs (outside an attempt: a KeyError naming
    the variable that is missing)."""
    env = os.environ if environ is None else environ
    missing = [name for name in REQUIRED if name not in env]
    if missing:
        raise KeyError(f"{missing[0]} is not set: this runs outside a Tributary attempt")
    run_dir = env.get("TRIBUTARY_RUN_DIR")
    ids = {
        "run_id": env["TRIBUTARY_RUN_ID"],
        "task_id": env["TRIBUTARY_TASK_ID"],
        "attempt": env["TRIBUTARY_ATTEMPT"],
        "trace_id": env["TRIBUTARY_TRACE_ID"],
    }
    return Context(
        run_id=ids["run_id"],
        task_id=ids["task_id"],
        attempt=int(ids["attempt"]),
        batch_date=date.fromisoformat(env["TRIBUTARY_BATCH_DATE"]),
        pipeline_id=env["TRIBUTARY_PIPELINE_ID"],
        trace_id=ids["trace_id"],
        params=json.loads(env.get("TRIBUTARY_PARAMS", "{}")),
        inputs=tuple(Ref(**ref) for ref in json.loads(env.get("TRIBUTARY_INPUTS", "[]"))),
        outputs=tuple(Ref(**ref) for ref in json.loads(env.get("TRIBUTARY_OUTPUTS", "[]"))),
        run_dir=Path(run_dir) if run_dir else None,
    )


def task_logger(ids: Mapping[str, Any]) -> Any:
    """JSON lines on stderr (the attempt's log), each with the run's ids."""
    import structlog  # here: importing it costs a task that does not log

    logger = structlog.wrap_logger(
        structlog.PrintLogger(sys.stderr),
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
    )
    return logger.bind(
        run_id=ids["run_id"],
        task_id=ids["task_id"],
        attempt=ids["attempt"],
        trace_id=ids["trace_id"],
    )
