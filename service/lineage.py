"""OpenLineage RunEvents for task attempts (openlineage.io/spec), when enabled in settings.

Made from committed task.status events, like alerts: ``running`` is a START, ``success`` and
``skipped`` a COMPLETE, ``failed`` and ``timed_out`` a FAIL; each with the task's declared
inputs and outputs as datasets (namespace = the URI's scheme and host, name = the rest),
rendered with the pipeline version and parameters of the run itself. The run id is a UUID
derived from (run, task, attempt), so START and its end pair up and a re-sent event keeps its
id. Delivery is best effort behind a bounded queue: lineage never slows a run.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from service.clock import utc_timestamp
from service.errors import TributaryError
from service.events import CloudEvent, TaskStatus
from service.observability import get_logger
from service.pipelines import RunContext
from service.spec.render import template_values

log = get_logger(__name__)

PRODUCER = "https://github.com/tributary/tributary"
SCHEMA_URL = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
EVENT_TYPES = {
    "running": "START",
    "success": "COMPLETE",
    "skipped": "COMPLETE",
    "failed": "FAIL",
    "timed_out": "FAIL",
}
QUEUE_LIMIT = 1_000
ATTEMPT_NAMESPACE = uuid.UUID("3d0f5b8e-8f9c-4f55-9a47-6b6f6f3a1c11")


def attempt_run_id(run_id: str, task_id: str, attempt: int) -> str:
    return str(uuid.uuid5(ATTEMPT_NAMESPACE, f"{run_id}/{task_id}/{attempt}"))


def dataset(uri: str) -> dict[str, str]:
    parts = urlsplit(uri)
    return {
        "namespace": f"{parts.scheme}://{parts.netloc}",
        "name": parts.path.lstrip("/") + (f"?{parts.query}" if parts.query else ""),
    }


def run_event(
    status: TaskStatus, context: RunContext | None, namespace: str
) -> dict[str, Any] | None:
    """The RunEvent for a task.status event, or None when the state is not a lineage moment."""
    kind = EVENT_TYPES.get(status.state)
    if kind is None:
        return None
    task_id, attempt = status.task_id, status.attempt or 1
    inputs: list[dict[str, str]] = []
    outputs: list[dict[str, str]] = []
    if context is not None and task_id in context.pipeline.tasks:
        values = template_values(
            batch_date=status.batch_date,
            run_id=status.run_id,
            attempt=attempt,
            task_id=task_id,
            pipeline_id=context.pipeline.id,
            params=context.params,
        )
        compiled = context.pipeline.templates[task_id]
        inputs = [dataset(uri.render(values)) for uri, _ in compiled.inputs]
        outputs = [dataset(uri.render(values)) for uri, _ in compiled.outputs]
    return {
        "eventType": kind,
        "eventTime": utc_timestamp(status.at),
        "producer": PRODUCER,
        "schemaURL": SCHEMA_URL,
        "run": {
            "runId": attempt_run_id(status.run_id, task_id, attempt),
            "facets": {
                "tributary": {
                    "_producer": PRODUCER,
                    "_schemaURL": SCHEMA_URL,
                    "run_id": status.run_id,
                    "attempt": attempt,
                    "trace_id": status.trace_id,
                }
            },
        },
        "job": {"namespace": namespace, "name": f"{status.pipeline_id}.{task_id}"},
        "inputs": inputs,
        "outputs": outputs,
    }


class LineageEmitter:
    """To an HTTP endpoint (``url``) or a Kafka topic (``topic`` with a started ``producer``;
    keyed ``run:{namespace}/{job}`` as OpenLineage's own Kafka transport does)."""

    def __init__(
        self,
        url: str | None,
        namespace: str,
        context_of: Callable[[TaskStatus], Awaitable[RunContext | None]],
        producer: AIOKafkaProducer | None = None,
        topic: str | None = None,
    ) -> None:
        self._url = url
        self._producer = producer
        self._topic = topic
        self._namespace = namespace
        self._context_of = context_of  # the pipeline version and parameters of the run
        self._queue: asyncio.Queue[TaskStatus] = asyncio.Queue(QUEUE_LIMIT)
        self.sent = 0

    def offer(self, events: Sequence[CloudEvent]) -> None:
        for event in events:
            status = event.payload
            if not isinstance(status, TaskStatus) or status.state not in EVENT_TYPES:
                continue
            if self._queue.full():
                self._queue.get_nowait()
                log.warning("lineage.dropped", reason="the endpoint does not keep up")
            self._queue.put_nowait(status)

    async def run(self) -> None:
        async with aiohttp.ClientSession() as session:
            while True:
                status = await self._queue.get()
                try:
                    context = await self._context_of(status)
                except TributaryError as exc:  # the database away: datasets left out
                    log.warning("lineage.no_context", run_id=status.run_id, error=str(exc))
                    context = None
                event = run_event(status, context, self._namespace)
                if event is not None and await self._deliver(session, event):
                    self.sent += 1

    async def _deliver(self, session: aiohttp.ClientSession, event: dict[str, Any]) -> bool:
        try:
            if self._producer is not None and self._topic:
                job = event["job"]
                await self._producer.send_and_wait(
                    self._topic,
                    orjson.dumps(event),
                    key=f"run:{job['namespace']}/{job['name']}".encode(),
                )
                return True
            if self._url is None:
                return False
            async with session.post(
                self._url, json=event, timeout=aiohttp.ClientTimeout(total=10)
            ) as reply:
                if reply.status >= 300:
                    log.warning("lineage.refused", status=reply.status)
                    return False
                return True
        except (aiohttp.ClientError, TimeoutError, KafkaError) as exc:
            log.warning("lineage.unreachable", error=repr(exc))
            return False
