"""``tributary emit-ready`` and ``trigger``: events produced to the triggers topic."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from datetime import date
from pathlib import Path

from service.bus.kafka import broker_errors, ensure_topics, make_producer
from service.cli.common import parse_params, settings_for
from service.config import Settings
from service.errors import Problem, SpecError
from service.events import CONTENT_TYPE, CloudEvent, DatasetReady, RunRequested, new_event
from service.spec.loader import load_pipeline_dir
from service.spec.tasks import DatasetWait
from service.spec.validate import suggest


def cmd_emit_ready(args: argparse.Namespace) -> int:
    settings = settings_for(args)
    for warning in announcement_warnings(settings.pipelines_dir, args.dataset, args.partition):
        print(f"tributary: warning: {warning}", file=sys.stderr)
    ready = DatasetReady(args.dataset, args.partition, args.data_version, args.producer)
    event = new_event(ready, "urn:tributary:cli", subject=args.dataset)
    asyncio.run(_produce(settings, args.dataset, event))
    print(
        f"sent {DatasetReady.TYPE} {args.dataset} {args.partition} (event {event.id}) "
        f"to {settings.topic_triggers}"
    )
    return 0


def cmd_trigger(args: argparse.Namespace) -> int:
    settings = settings_for(args)
    try:
        batch_date = date.fromisoformat(args.date)
    except ValueError:
        raise SpecError(
            [Problem(f"expected a date YYYY-MM-DD, got {args.date!r}", "--date")]
        ) from None
    request = RunRequested(
        pipeline_id=args.pipeline,
        batch_date=batch_date,
        params=parse_params(args.param),
        requested_by=os.environ.get("USER", "tributary-cli"),
        reason=args.reason,
    )
    event = new_event(request, "urn:tributary:cli", subject=args.pipeline)
    asyncio.run(_produce(settings, args.pipeline, event))
    print(
        f"sent {RunRequested.TYPE} {args.pipeline} {args.date} (event {event.id}); "
        f"see it with: tributary runs list --pipeline {args.pipeline}"
    )
    return 0


def announcement_warnings(directory: Path, dataset: str, partition: str) -> list[str]:
    """What will come of announcing the partition, as far as the pipelines directory says:
    nothing listens for the dataset, or a pipeline triggered by it cannot read the partition."""
    pipelines = load_pipeline_dir(directory).pipelines
    triggered = [
        (p.id, trigger)
        for p in pipelines
        for trigger in p.spec.triggers.datasets
        if trigger.dataset == dataset
    ]
    waited = {
        d
        for p in pipelines
        for task in p.spec.tasks
        for d in [w.dataset for w in task.wait_for if isinstance(w, DatasetWait)]
        + [ref.name for ref in task.inputs if ref.wait]
    }
    if not triggered and dataset not in waited:
        known = sorted({t.dataset for p in pipelines for t in p.spec.triggers.datasets} | waited)
        return [
            f"no pipeline in {directory} triggers on or waits for {dataset!r}"
            f"{suggest(dataset, known)}: the event is sent, and starts nothing here"
        ]
    found = []
    for pipeline_id, trigger in triggered:
        try:
            trigger.batch_date_for(partition)
        except ValueError as exc:
            found.append(f"{pipeline_id} will not start: {exc}")
    return found


async def _produce(settings: Settings, key: str, event: CloudEvent) -> None:
    """Send one event to the triggers topic (created if missing and allowed)."""
    if settings.kafka_create_topics:
        await ensure_topics(settings, [settings.topic_triggers])
    producer = make_producer(settings)
    with broker_errors(f"cannot reach Kafka at {settings.kafka_bootstrap_servers}"):
        await producer.start()
        try:
            await producer.send_and_wait(
                settings.topic_triggers,
                event.to_bytes(),
                key=key.encode(),
                headers=[("content-type", CONTENT_TYPE.encode())],
            )
        finally:
            await producer.stop()
