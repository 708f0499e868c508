"""A remote worker (``tributary worker``, any number, one consumer group): runs the attempts
the service requests over Kafka.

Each ``task.requested`` carries the attempt fully rendered (a :class:`Launch`). The worker
keeps polling while attempts run, up to ``max_parallel_tasks`` at once (its partitions paused
while every slot is taken). A request taken after its pickup time is discarded: it has been
requested again. A request is handed to the worker's attempt keeper (the same one the service
uses, outliving the worker) and its offset committed at once: a rebalance never gives a
running request to another worker. The worker sends ``task.heartbeat`` for its attempts three
times per lease (the first one starts the lease) and confirms each heartbeat sent to the keeper,
which stops an attempt whose heartbeats stop; it sends ``task.completed`` when one ends. A
restarted worker takes over what its keeper ran meanwhile. Every worker also reads the whole
cancels topic (no group): a ``task.cancel`` for an attempt it runs stops it (SIGTERM, grace,
SIGKILL) and runs its rollback. Each attempt's log goes to the service in pieces
(``task.log``), as it grows and in full before the completion. The worker knows the broker
only.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from pathlib import Path
from typing import TypeAlias

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from service.bus.dead_letter import DeadLetter, DeadLetters
from service.bus.kafka import broker_errors
from service.clock import utc_now
from service.engine.model import AttemptKey
from service.errors import EventError, TributaryError
from service.events import (
    CONTENT_TYPE,
    Payload,
    TaskCancel,
    TaskHeartbeat,
    TaskLog,
    TaskRequested,
    new_event,
    parse_event,
)
from service.execution.attempt import completion
from service.execution.keeper_client import KeeperClient
from service.execution.keeping import Ended
from service.execution.launch import Launch
from service.observability import bound, get_logger
from service.supervision import Loop, persistently

log = get_logger(__name__)

POLL_TIMEOUT_MS = 500
HEARTBEATS_PER_LEASE = 3
Record: TypeAlias = "ConsumerRecord[bytes, bytes]"


class Worker(Loop):
    """Takes requests: each round polls once and starts what came (within its free slots)."""

    name = "worker"

    def __init__(
        self,
        *,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        keeper: KeeperClient,
        dead_letters: DeadLetters,
        completions_topic: str,
        worker_id: str,
        log_dir: Path,
        max_parallel: int,
        lease_seconds: float,
        logs_topic: str = "",
        capacity: tuple[float, int] | None = None,
    ) -> None:
        super().__init__(idle_wait=0)  # getmany waits for records itself
        self._consumer = consumer
        self._producer = producer
        self._keeper = keeper
        self._dead_letters = dead_letters
        self._completions_topic = completions_topic
        self._worker_id = worker_id
        self._source = f"urn:tributary:worker:{worker_id}"
        self._log_dir = log_dir
        self._max_parallel = max_parallel
        self._capacity = capacity  # (cpu cores, memory MB) of this node; None: unbounded
        self._holds: dict[AttemptKey, tuple[float, int]] = {}  # what each attempt holds
        self._waiting_for_room = False  # a request that does not fit waits, unread
        self.lease_seconds = lease_seconds
        self._running: dict[AttemptKey, asyncio.Task[None]] = {}
        self._taken_over = False
        self.logs = LogShipper(producer, logs_topic, self._source, log_dir)
        self._in_hand: tuple[TopicPartition, int] | None = None  # a request being taken
        self.finished = 0

    @property
    def free(self) -> int:
        return self._max_parallel - len(self._running)

    async def step(self) -> bool:
        if not self._taken_over:
            await self._take_over()
            self._taken_over = True
        if self._stopping:
            return False
        assigned = self._consumer.assignment()
        full = self._full()
        if full:
            self._consumer.pause(*assigned)
        else:
            self._consumer.resume(*assigned)
        with broker_errors("the requests topic"):
            # Full: a poll that returns at once (the group must see it poll), then the idle
            # wait, which an attempt's end cuts short; a poll that waits would not be.
            batches: dict[TopicPartition, list[Record]] = await self._consumer.getmany(
                timeout_ms=0 if full else POLL_TIMEOUT_MS, max_records=max(self.free, 1)
            )
        unread = {tp: records[0].offset for tp, records in batches.items()}
        for tp, records in batches.items():
            for record in records:
                self._in_hand = (tp, record.offset)
                if not await self._take(record):  # no room for it now: read it again later
                    self._waiting_for_room = True
                    for where, offset in unread.items():
                        self._consumer.seek(where, offset)
                    self._in_hand = None
                    return False
                await self._commit(tp, record.offset + 1)
                unread[tp] = record.offset + 1
        self._in_hand = None
        return bool(batches)

    def _full(self) -> bool:
        """No free slot, or a request waits for room: nothing more is read until one ends."""
        return self.free <= 0 or self._waiting_for_room

    def idle_wait(self) -> float | None:
        return POLL_TIMEOUT_MS / 1000 if self._full() else 0

    def _fits(self, cpu_cores: float, memory_mb: int) -> bool:
        """Room on this node for an attempt holding that much; one bigger than the whole
        node runs when nothing else does."""
        if self._capacity is None or not self._running:
            return True
        cpu = sum(held[0] for held in self._holds.values()) + cpu_cores
        memory = sum(held[1] for held in self._holds.values()) + memory_mb
        return cpu <= self._capacity[0] + 1e-9 and memory <= self._capacity[1]

    async def recover(self) -> None:
        """A request not taken in full: read it again next round."""
        if self._in_hand is not None and self._in_hand[0] in self._consumer.assignment():
            self._consumer.seek(*self._in_hand)
        self._in_hand = None

    async def drain(self, drain_seconds: float) -> None:
        """Let running attempts finish for ``drain_seconds``; interrupt the rest (lost: not
        the tasks' fault) and report them."""
        running = set(self._running.values())
        if not running:
            return
        _, still = await asyncio.wait(running, timeout=drain_seconds)
        for key, task in list(self._running.items()):
            if task in still:
                await self._keeper.interrupt(key, "interrupted: the worker stopped")
        if still:
            await asyncio.wait(still)

    async def _take(self, record: Record) -> bool:
        """Start the requested attempt in the keeper, or dead-letter or discard the request;
        False when it does not fit the node's free resources yet (nothing done)."""
        try:
            event = parse_event(record.value)
            if not isinstance(event.payload, TaskRequested):
                raise EventError(f"a worker runs {TaskRequested.TYPE} events, not {event.type!r}")
            request = event.payload
            launch = Launch.from_json(request.launch)
        except (EventError, TypeError, KeyError, ValueError) as exc:
            log.error("request.rejected", reason=str(exc), offset=record.offset)
            letter = DeadLetter(
                record.key, record.value, str(exc), record.topic, record.partition, record.offset
            )
            await self._dead_letters.send([letter])
            return True
        key = AttemptKey(request.run_id, request.task_id, request.attempt)
        if request.pickup_by is not None and utc_now() > request.pickup_by:
            log.warning("request.expired", attempt=str(key), pickup_by=str(request.pickup_by))
            return True  # requested again meanwhile: that request runs it
        if key in self._running:
            return True  # a request delivered twice
        holds = (request.cpu_cores or 0.0, request.memory_mb or 0)
        if not self._fits(*holds):
            return False
        await self._send(TaskHeartbeat(*_ids(key), self._worker_id), key)  # the lease starts
        log_path = self._log_dir / key.run_id / key.task_id / f"{key.attempt}.log"
        ending = await self._keeper.start(key, launch, log_path)
        log.info("request.taken", run_id=key.run_id, task_id=key.task_id, attempt=key.attempt)
        self._holds[key] = holds
        self._running[key] = asyncio.create_task(self._report_when_ended(key, ending))
        return True

    async def cancel(self, key: AttemptKey, reason: str) -> None:
        """Stop the attempt and roll it back, if this worker runs it."""
        if key in self._running:
            log.info(
                "attempt.cancelled", run_id=key.run_id, task_id=key.task_id, attempt=key.attempt
            )
            await self._keeper.interrupt(key, reason, rollback=True)

    async def _take_over(self) -> None:
        inventory = await self._keeper.open()
        for ended in inventory.ended:
            await self._report(ended)
        for key, ending in inventory.running.items():
            log.info("attempt.adopted", attempt=str(key))
            self._running[key] = asyncio.create_task(self._report_when_ended(key, ending))
        if inventory.running:  # now: the keeper's deadline was set by the predecessor's beats
            await self.beat_all()

    async def _report_when_ended(self, key: AttemptKey, ending: asyncio.Future[Ended]) -> None:
        try:
            ended = await ending
            with bound(run_id=key.run_id, task_id=key.task_id, attempt=key.attempt):
                log.info(
                    "attempt.ended",
                    outcome=ended.outcome.outcome,
                    exit_code=ended.outcome.result.exit_code,
                    reason=ended.outcome.reason,
                )
                await self._report(ended)
        finally:
            self._running.pop(key, None)
            self._holds.pop(key, None)
            self._waiting_for_room = False  # room was made: look at the waiting request again
            self.wake()

    async def ship_logs(self) -> None:
        """What the running attempts' logs gained, to the service."""
        for key in list(self._running):
            with contextlib.suppress(TributaryError):  # the next round sends it
                await self.logs.ship(key)

    async def _report(self, ended: Ended) -> None:
        key = ended.key
        with contextlib.suppress(TributaryError):  # the log is shipped before the completion
            await self.logs.ship(key)
        self.logs.forget(key)
        payload = completion(
            *_ids(key), ended.outcome, self._worker_id, ended.started_at, ended.ended_at
        )
        await persistently(lambda: self._send(payload, key, f"completed:{key}"), "worker")
        await self._keeper.forget(key)
        self.finished += 1

    async def beat_all(self) -> None:
        """A heartbeat for every attempt this worker runs; those the broker took are
        confirmed to the keeper (the others will be stopped there if it lasts)."""
        asked = time.monotonic()
        sent = []
        for key in list(self._running):
            with contextlib.suppress(TributaryError):  # the lease covers a missed beat or two
                await self._send(TaskHeartbeat(*_ids(key), self._worker_id), key)
                sent.append(key)
        await self._keeper.confirm(sent, self.lease_seconds - (time.monotonic() - asked))

    async def _commit(self, tp: TopicPartition, offset: int) -> None:
        with contextlib.suppress(KafkaError):  # moved away: redelivered, and fenced
            await self._consumer.commit({tp: offset})

    async def _send(self, payload: Payload, key: AttemptKey, event_id: str | None = None) -> None:
        event = new_event(payload, self._source, f"{key.run_id}/{key.task_id}", event_id=event_id)
        with broker_errors("the completions topic"):
            await self._producer.send_and_wait(
                self._completions_topic,
                event.to_bytes(),
                key=key.run_id.encode(),
                headers=[("content-type", CONTENT_TYPE.encode())],
            )


class LogShipper:
    """Sends each attempt's log to the service in pieces (``task.log``, base64, each with its
    offset), what it gained since the last round; the end of it before the completion."""

    PIECE = 64 * 1024  # bytes per event: well under any broker's message limit

    def __init__(self, producer: AIOKafkaProducer, topic: str, source: str, log_dir: Path) -> None:
        self._producer = producer
        self._topic = topic
        self._source = source
        self._log_dir = log_dir
        self._sent: dict[AttemptKey, int] = {}  # bytes of each log shipped so far

    async def ship(self, key: AttemptKey) -> None:
        if not self._topic:
            return
        path = self._log_dir / key.run_id / key.task_id / f"{key.attempt}.log"
        offset = self._sent.get(key, 0)
        try:
            with path.open("rb") as log_file:
                log_file.seek(offset)
                pieces = iter(lambda: log_file.read(self.PIECE), b"")
                for piece in pieces:
                    data = base64.b64encode(piece).decode()
                    event = new_event(TaskLog(*_ids(key), offset, data), self._source)
                    with broker_errors("the logs topic"):
                        await self._producer.send_and_wait(
                            self._topic,
                            event.to_bytes(),
                            key=key.run_id.encode(),
                            headers=[("content-type", CONTENT_TYPE.encode())],
                        )
                    offset += len(piece)
                    self._sent[key] = offset
        except FileNotFoundError:
            return  # not started writing yet

    def forget(self, key: AttemptKey) -> None:
        self._sent.pop(key, None)


class WorkerLogShipping(Loop):
    name = "worker-logs"

    def __init__(self, worker: Worker, interval: float = 1.0) -> None:
        super().__init__(idle_wait=interval)
        self._worker = worker

    async def step(self) -> bool:
        await self._worker.ship_logs()
        return False


class CancelListener(Loop):
    """Reads every ``task.cancel`` (all partitions, from when the worker started) and stops
    the attempts of this worker it names."""

    name = "worker-cancels"

    def __init__(self, worker: Worker, consumer: AIOKafkaConsumer) -> None:
        super().__init__(idle_wait=0)
        self._worker = worker
        self._consumer = consumer

    async def step(self) -> bool:
        with broker_errors("the cancels topic"):
            batches = await self._consumer.getmany(timeout_ms=POLL_TIMEOUT_MS)
        for records in batches.values():
            for record in records:
                try:
                    event = parse_event(record.value)
                except EventError as exc:
                    log.warning("cancel.unreadable", reason=str(exc), offset=record.offset)
                    continue
                if isinstance(event.payload, TaskCancel):
                    cancel = event.payload
                    key = AttemptKey(cancel.run_id, cancel.task_id, cancel.attempt)
                    await self._worker.cancel(key, cancel.reason)
        return False


class WorkerHeartbeats(Loop):
    name = "worker-heartbeats"

    def __init__(self, worker: Worker) -> None:
        super().__init__(idle_wait=worker.lease_seconds / HEARTBEATS_PER_LEASE)
        self._worker = worker

    async def step(self) -> bool:
        await self._worker.beat_all()
        return False


def _ids(key: AttemptKey) -> tuple[str, str, int]:
    return key.run_id, key.task_id, key.attempt
