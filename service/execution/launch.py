"""What it takes to launch one attempt, rendered from the spec once, as plain data.

A :class:`Launch` is what the local executor runs and what travels to a remote worker inside
a ``task.requested`` event: the command, its environment (what the task declares plus the
run's context, never the service's own variables), its directory, its time limits, and the
cleanup and rollback commands, every template filled in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

import orjson

from service.spec.params import ParamValue
from service.spec.pipeline import Pipeline
from service.spec.render import render_task, template_values

DEFAULT_STEP_TIMEOUT = 600.0  # seconds a cleanup or rollback may take when none is declared


@dataclass(frozen=True, slots=True)
class Launch:
    argv: list[str]
    env: dict[str, str]
    cwd: str | None
    time_limit: float | None  # seconds; None: no limit
    grace: float  # seconds between SIGTERM and SIGKILL
    cleanup: list[str] | None = None
    cleanup_timeout: float = DEFAULT_STEP_TIMEOUT
    rollback: list[str] | None = None
    rollback_timeout: float = DEFAULT_STEP_TIMEOUT
    skip_codes: tuple[int, ...] = ()
    fatal_codes: tuple[int, ...] = ()
    inherit_env: tuple[str, ...] = field(default_factory=tuple)
    # The (dataset, partition) of each declared input and output: what the attempt reads
    # and what it writes.
    inputs: tuple[tuple[str, str], ...] = ()
    outputs: tuple[tuple[str, str], ...] = ()
    output_uris: tuple[str, ...] = ()  # of each output, rendered (a file:// one gets metadata)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Launch:
        return cls(
            **{
                **data,
                "skip_codes": tuple(data.get("skip_codes", ())),
                "fatal_codes": tuple(data.get("fatal_codes", ())),
                "inherit_env": tuple(data.get("inherit_env", ())),
                "inputs": tuple((d, p) for d, p in data.get("inputs", ())),
                "outputs": tuple((d, p) for d, p in data.get("outputs", ())),
                "output_uris": tuple(data.get("output_uris", ())),
            }
        )


def prepare_launch(
    pipeline: Pipeline,
    task_id: str,
    *,
    run_id: str,
    attempt: int,
    batch_date: date,
    trace_id: str,
    params: Mapping[str, ParamValue],
    results: Mapping[str, Mapping[str, Any] | None] | None = None,
    run_dir: str | None = None,
) -> Launch:
    """The launch of ``attempt`` of ``task_id`` in a run with these (resolved) parameters and
    what its tasks reported so far."""
    spec = pipeline.tasks[task_id]
    values = template_values(
        batch_date=batch_date,
        run_id=run_id,
        attempt=attempt,
        task_id=task_id,
        pipeline_id=pipeline.id,
        params=params,
        results=results,
        run_dir=run_dir,
    )
    task = render_task(pipeline, task_id, values)
    inputs, outputs = _refs(pipeline, task_id, values)
    context = _context(pipeline, task_id, values, params, trace_id, inputs, outputs)
    return Launch(
        argv=task.argv,
        env={**task.env, **context},
        cwd=task.cwd,
        time_limit=spec.timeout.total_seconds() if spec.timeout else None,
        grace=spec.grace_period.total_seconds(),
        cleanup=task.cleanup,
        cleanup_timeout=spec.cleanup.timeout.total_seconds()
        if spec.cleanup
        else DEFAULT_STEP_TIMEOUT,
        rollback=task.rollback,
        rollback_timeout=spec.rollback.timeout.total_seconds()
        if spec.rollback
        else DEFAULT_STEP_TIMEOUT,
        skip_codes=spec.exit_codes.skip,
        fatal_codes=spec.exit_codes.fatal,
        inherit_env=tuple(spec.inherit_env),
        inputs=tuple((ref["dataset"], ref["partition"]) for ref in inputs),
        outputs=tuple((ref["dataset"], ref["partition"]) for ref in outputs),
        output_uris=tuple(ref["uri"] for ref in outputs),
    )


def _context(
    pipeline: Pipeline,
    task_id: str,
    values: Mapping[str, str | date],
    params: Mapping[str, ParamValue],
    trace_id: str,
    inputs: list[dict[str, str]],
    outputs: list[dict[str, str]],
) -> dict[str, str]:
    """The run's context, as the task sees it in its environment (and the task SDK reads)."""
    return {
        "TRIBUTARY_RUN_ID": str(values["run_id"]),
        "TRIBUTARY_TASK_ID": task_id,
        "TRIBUTARY_ATTEMPT": str(values["attempt"]),
        "TRIBUTARY_BATCH_DATE": str(values["batch_date"]),
        "TRIBUTARY_TRACE_ID": trace_id,
        "TRIBUTARY_PIPELINE_ID": pipeline.id,
        **{f"TRIBUTARY_PARAM_{name.upper()}": str(values[f"params.{name}"]) for name in params},
        "TRIBUTARY_PARAMS": orjson.dumps(dict(params)).decode(),
        "TRIBUTARY_INPUTS": orjson.dumps(inputs).decode(),
        "TRIBUTARY_OUTPUTS": orjson.dumps(outputs).decode(),
        **({"TRIBUTARY_RUN_DIR": str(values["run_dir"])} if "run_dir" in values else {}),
    }


def _refs(
    pipeline: Pipeline, task_id: str, values: Mapping[str, str | date]
) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """The task's inputs and outputs, rendered: dataset, URI and partition each."""
    spec, compiled = pipeline.tasks[task_id], pipeline.templates[task_id]
    return (
        [
            {"dataset": ref.name, "uri": uri.render(values), "partition": part.render(values)}
            for ref, (uri, part) in zip(spec.inputs, compiled.inputs, strict=True)
        ],
        [
            {"dataset": ref.name, "uri": uri.render(values), "partition": part.render(values)}
            for ref, (uri, part) in zip(spec.outputs, compiled.outputs, strict=True)
        ],
    )
