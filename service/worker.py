"""A remote worker (``tributary worker``, any number, one consumer group): runs the attempts
the service requests over Kafka.

Each ``task.requested`` carries the attempt fully rendered (a :class:`Launch`); the worker runs
it with the same code as the service's own executor, sends ``task.heartbeat`` while it runs and
``task.completed`` when it ends, on the completions topic, then acknowledges the request. A
worker that dies stops heartbeating: the attempt's lease expires and the retry policy sends it
to another. The worker knows nothing of the database: only the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import TypeAlias

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from service.bus.dead_letter import DeadLetter, DeadLetters
from service.bus.kafka import broker_errors
from service.clock import utc_now
from service.errors import EventError, TributaryError
from service.events import (
    CONTENT_TYPE,
    CloudEvent,
    Payload,
    TaskHeartbeat,
    TaskRequested,
    new_event,
    parse_event,
)
from service.execution.attempt import completion, run_attempt, unrunnable
from service.execution.launch import Launch
from service.observability import bound, get_logger
from service.supervision import persistently

log = get_logger(__name__)

POLL_TIMEOUT_MS = 1_000
HEARTBEATS_PER_LEASE = 3
Record: TypeAlias = "ConsumerRecord[bytes, bytes]"


class Worker:
    def __init__(
        self,
        *,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        dead_letters: DeadLetters,
        completions_topic: str,
        worker_id: str,
        log_dir: Path,
        max_parallel: int,
    ) -> None:
        self._consumer = consumer
        self._producer = producer
        self._dead_letters = dead_letters
        self._completions_topic = completions_topic
        self._worker_id = worker_id
        self._source = f"urn:tributary:worker:{worker_id}"
        self._log_dir = log_dir
        self._max_parallel = max_parallel
        self.finished = 0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            batches: dict[TopicPartition, list[Record]] = await self._consumer.getmany(
                timeout_ms=POLL_TIMEOUT_MS, max_records=self._max_parallel
            )
            if not batches:
                continue
            records = [r for rs in batches.values() for r in rs]
            await asyncio.gather(*(self._handle(record) for record in records))
            offsets = {tp: rs[-1].offset + 1 for tp, rs in batches.items()}
            with contextlib.suppress(KafkaError):  # moved away: redelivered, fenced by attempt
                await self._consumer.commit(offsets)

    async def _handle(self, record: Record) -> None:
        try:
            event = parse_event(record.value)
            if not isinstance(event.payload, TaskRequested):
                raise EventError(f"a worker runs {TaskRequested.TYPE} events, not {event.type!r}")
            request = event.payload
            launch = Launch.from_json(request.launch)
        except (EventError, TypeError, KeyError, ValueError) as exc:
            log.error("request.rejected", reason=str(exc), offset=record.offset)
            await self._dead_letters.send(
                [
                    DeadLetter(
                        record.key,
                        record.value,
                        str(exc),
                        record.topic,
                        record.partition,
                        record.offset,
                    )
                ]
            )
            return
        with bound(
            run_id=request.run_id,
            task_id=request.task_id,
            attempt=request.attempt,
            trace_id=request.trace_id,
        ):
            await self._run(request, launch)

    async def _run(self, request: TaskRequested, launch: Launch) -> None:
        heartbeats = asyncio.create_task(self._heartbeat(request))
        started = utc_now()
        log_path = self._log_dir / request.run_id / request.task_id / f"{request.attempt}.log"
        try:
            try:
                done = await run_attempt(launch, log_path)
            except OSError as exc:
                done = unrunnable(exc)
        finally:
            heartbeats.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeats
        log.info(
            "attempt.ended",
            outcome=done.outcome,
            exit_code=done.result.exit_code,
            reason=done.reason,
        )
        report = completion(
            request.run_id, request.task_id, request.attempt, done, self._worker_id, started
        )
        subject = f"{request.run_id}/{request.task_id}"
        await persistently(lambda: self._send(report, request, subject), "worker")
        self.finished += 1

    async def _heartbeat(self, request: TaskRequested) -> None:
        beat = TaskHeartbeat(request.run_id, request.task_id, request.attempt, self._worker_id)
        while True:
            with contextlib.suppress(TributaryError):  # the lease covers a missed beat or two
                await self._send(beat, request)
            await asyncio.sleep(request.lease_seconds / HEARTBEATS_PER_LEASE)

    async def _send(
        self, payload: Payload, request: TaskRequested, subject: str | None = None
    ) -> None:
        event: CloudEvent = new_event(payload, self._source, subject, request.trace_id)
        with broker_errors("the completions topic"):
            await self._producer.send_and_wait(
                self._completions_topic,
                event.to_bytes(),
                key=request.run_id.encode(),
                headers=[("content-type", CONTENT_TYPE.encode())],
            )
