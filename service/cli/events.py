"""``tributary emit-ready`` and ``trigger``: events produced to the triggers topic."""

from __future__ import annotations

import argparse
import asyncio
import os
from datetime import date

from service.bus.kafka import broker_errors, ensure_topics, make_producer
from service.cli.common import parse_params, settings_for
from service.config import Settings
from service.errors import Problem, SpecError
from service.events import CONTENT_TYPE, CloudEvent, DatasetReady, RunRequested, new_event


def cmd_emit_ready(args: argparse.Namespace) -> int:
    settings = settings_for(args)
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
