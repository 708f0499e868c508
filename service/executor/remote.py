"""Scaling execution out through Kafka: the service dispatches, workers run.

- :class:`RemoteDispatcher` (in the service) claims queued tasks marked remote and publishes
  a fully rendered ``task.requested`` for each, through the outbox.
- :class:`Worker` (``tributary worker``, any number, one consumer group) runs each requested
  attempt with the same logic as the local executor, sends ``task.heartbeat`` while it runs
  and ``task.completed`` when it ends, then acknowledges the request. A worker that dies
  stops heartbeating: the attempt's lease expires and the retry policy sends it to another.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from service.bus.dead_letter import DeadLetter, DeadLetters
from service.bus.envelope import (
    CONTENT_TYPE,
    TASK_COMPLETED,
    TASK_HEARTBEAT,
    TASK_REQUESTED,
    CloudEvent,
    new_event,
    parse_event,
)
from service.coordinator import Coordinator
from service.errors import EventError, TributaryError
from service.executor.attempt import AttemptPlan, completion_data, run_attempt, unrunnable
from service.observability import bound, get_logger

log = get_logger(__name__)

DISPATCH_BATCH = 100  # remote tasks requested per transaction
POLL_TIMEOUT_MS = 1_000


class RemoteDispatcher:
    def __init__(
        self,
        coordinator: Coordinator,
        dispatcher_id: str,
        lease_seconds: float,
        poll_interval: float,
    ) -> None:
        self._coordinator = coordinator
        self._id = f"dispatch:{dispatcher_id}"
        self._lease_seconds = lease_seconds
        self._poll_interval = poll_interval
        self._wakeup = asyncio.Event()
        self.dispatched = 0

    def wake(self) -> None:
        self._wakeup.set()

    async def run(self) -> None:
        while True:
            self._wakeup.clear()
            try:
                sent = await self._coordinator.dispatch_remote(
                    self._id, DISPATCH_BATCH, self._lease_seconds
                )
            except TributaryError as exc:
                if not exc.retriable:
                    raise
                log.warning("dispatch.retry", error=str(exc))
                sent = 0
            self.dispatched += sent
            if sent == DISPATCH_BATCH:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self._poll_interval)


class Worker:
    def __init__(
        self,
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
            batches: dict[
                TopicPartition, list[ConsumerRecord[bytes, bytes]]
            ] = await self._consumer.getmany(
                timeout_ms=POLL_TIMEOUT_MS, max_records=self._max_parallel
            )
            if not batches:
                continue
            records = [r for rs in batches.values() for r in rs]
            await asyncio.gather(*(self._handle(record) for record in records))
            offsets = {tp: rs[-1].offset + 1 for tp, rs in batches.items()}
            with contextlib.suppress(KafkaError):  # moved away: redelivered, fenced by attempt
                await self._consumer.commit(offsets)

    async def _handle(self, record: ConsumerRecord[bytes, bytes]) -> None:
        try:
            event = parse_event(record.value)
            if event.type != TASK_REQUESTED:
                raise EventError(f"a worker runs {TASK_REQUESTED} events, not {event.type!r}")
            plan = AttemptPlan.from_json(dict(event.data["plan"]))
        except (EventError, TypeError, KeyError) as exc:
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
        data = event.data
        with bound(
            run_id=data["run_id"],
            task_id=data["task_id"],
            attempt=data["attempt"],
            trace_id=data["trace_id"],
        ):
            await self._run(event, plan)

    async def _run(self, request: CloudEvent, plan: AttemptPlan) -> None:
        data = request.data
        key = (data["run_id"], data["task_id"], data["attempt"])
        heartbeats = asyncio.create_task(self._heartbeat(request, data["lease_seconds"]))
        started = datetime.now(UTC)
        log_path = self._log_dir / key[0] / key[1] / f"{key[2]}.log"
        try:
            try:
                done = await run_attempt(plan, log_path)
            except OSError as exc:
                done = unrunnable(exc)
        finally:
            heartbeats.cancel()
        log.info(
            "attempt.ended",
            outcome=done.outcome,
            exit_code=done.result.exit_code,
            reason=done.reason,
        )
        completed = new_event(
            TASK_COMPLETED,
            self._source,
            completion_data(*key, done, self._worker_id, started),
            subject=f"{key[0]}/{key[1]}",
            trace_id=data["trace_id"],
        )
        await self._send(completed, key[0])
        self.finished += 1

    async def _heartbeat(self, request: CloudEvent, lease_seconds: float) -> None:
        data = request.data
        beat = {
            "run_id": data["run_id"],
            "task_id": data["task_id"],
            "attempt": data["attempt"],
            "worker_id": self._worker_id,
        }
        while True:
            with contextlib.suppress(KafkaError):
                await self._send(new_event(TASK_HEARTBEAT, self._source, beat), data["run_id"])
            await asyncio.sleep(lease_seconds / 3)

    async def _send(self, event: CloudEvent, key: str) -> None:
        await self._producer.send_and_wait(
            self._completions_topic,
            event.to_bytes(),
            key=key.encode(),
            headers=[("content-type", CONTENT_TYPE.encode())],
        )
