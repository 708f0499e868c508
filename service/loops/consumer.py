"""The orchestrator's Kafka intake: triggers and completions, offsets committed by hand.

For each batch: parse every record once into a typed event (a bad one is dead-lettered with
its reason), renew the leases remote workers' heartbeats speak for, apply the rest in one
database transaction, write the dead letters, and only then commit the offsets. A crash in
between redelivers the batch, which the processed-events table makes harmless. A failed round
(the database or the broker away) rewinds to the batch's first offsets and tries it again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any, TypeAlias

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from service import metrics
from service.bus.dead_letter import DeadLetter, DeadLetters
from service.bus.kafka import broker_errors
from service.errors import EventError
from service.events import CloudEvent, TaskHeartbeat, parse_event
from service.observability import get_logger
from service.orchestrator.batch import BatchApplier, check_applicable
from service.orchestrator.reliable import apply_reliably
from service.store import Store
from service.store.records import Heartbeat
from service.supervision import Loop

log = get_logger(__name__)

POLL_TIMEOUT_MS = 1_000
LAG_INTERVAL = 1.0  # seconds between looks at how far behind the intake is
Record: TypeAlias = "ConsumerRecord[bytes, bytes]"


class EventConsumer(Loop):
    name = "consumer"

    def __init__(
        self,
        *,
        consumer: AIOKafkaConsumer,
        applier: BatchApplier,
        store: Store,
        dead_letters: DeadLetters,
        batch_size: int,
        lease_seconds: float,
    ) -> None:
        super().__init__(idle_wait=0)  # getmany waits for records itself
        self._consumer = consumer
        self._applier = applier
        self._store = store
        self._dead_letters = dead_letters
        self._batch_size = batch_size
        self._lease_seconds = lease_seconds  # what a remote worker's heartbeat renews
        self._inflight: dict[TopicPartition, int] = {}  # first offset of the batch in hand
        self._lag_seen_at = 0.0
        self.lag = 0  # messages behind, when last seen
        self.committed_at = time.monotonic()  # when offsets were last committed
        self.rejected = 0  # records sent to the dead-letter topic, since start

    async def step(self) -> bool:
        with broker_errors("the intake topics"):
            batches: dict[TopicPartition, list[Record]] = await self._consumer.getmany(
                timeout_ms=POLL_TIMEOUT_MS, max_records=self._batch_size
            )
        if batches:
            self._inflight = {tp: records[0].offset for tp, records in batches.items()}
            await self.process([record for records in batches.values() for record in records])
            offsets = {tp: records[-1].offset + 1 for tp, records in batches.items()}
            await self._commit(offsets)
            self._inflight = {}
        await self._observe_lag()
        return bool(batches)

    async def recover(self) -> None:
        """The batch in hand did not go through: read it again on the next round."""
        assigned = self._consumer.assignment()
        for tp, offset in self._inflight.items():
            if tp in assigned:
                self._consumer.seek(tp, offset)
        self._inflight = {}

    async def process(self, records: Sequence[Record]) -> None:
        """Apply what is valid, dead-letter the rest; return once all of it is durable."""
        letters: list[DeadLetter] = []
        origin: dict[int, Record] = {}  # by identity: two records may carry one event id
        events: list[CloudEvent] = []
        beats: list[Heartbeat] = []  # heartbeats renew leases, nothing else
        for record in records:
            try:
                event = parse_event(record.value)
                if not isinstance(event.payload, TaskHeartbeat):
                    check_applicable(event)
            except EventError as exc:
                log.error("event.rejected", reason=str(exc), **_where(record))
                letters.append(_letter(record, str(exc)))
                continue
            metrics.EVENTS_CONSUMED.labels(event.type).inc()
            if isinstance(event.payload, TaskHeartbeat):
                beat = event.payload
                beats.append(Heartbeat(beat.run_id, beat.task_id, beat.attempt, beat.worker_id))
                continue
            origin[id(event)] = record
            events.append(event)
        await self._store.renew_attempt_leases(beats, self._lease_seconds)
        if events:
            for refused in await apply_reliably(self._applier, events):
                letters.append(
                    _letter(origin[id(refused.event)], refused.reason, refused.traceback)
                )
        await self._dead_letters.send(letters)
        self.rejected += len(letters)

    async def _observe_lag(self) -> None:
        """Messages behind the end of each consumed topic, every round (at most once a
        second), whether records came or not."""
        now = time.monotonic()
        if now - self._lag_seen_at < LAG_INTERVAL:
            return
        self._lag_seen_at = now
        behind: dict[str, int] = {}
        for tp in self._consumer.assignment():
            highwater = self._consumer.highwater(tp)
            try:
                async with asyncio.timeout(LAG_INTERVAL):  # a broker away: next time
                    position = await self._consumer.position(tp)
            except (KafkaError, TimeoutError):  # moved away meanwhile, or no answer
                continue
            if highwater is not None:
                behind[tp.topic] = behind.get(tp.topic, 0) + max(highwater - position, 0)
        for topic, count in behind.items():
            metrics.CONSUMER_LAG.labels(topic).set(count)
        self.lag = sum(behind.values())

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # The partitions moved to another member; it will redeliver, and we dedupe.
            log.warning("consumer.commit_failed", error=repr(exc))
            return
        self.committed_at = time.monotonic()

    def stuck(self, after: float) -> str | None:
        """Why the intake is stuck (messages wait, nothing committed for ``after`` seconds),
        or None."""
        quiet = time.monotonic() - self.committed_at
        if self.lag > 0 and quiet > after:
            return f"{self.lag} messages wait and nothing was committed for {quiet:.0f}s"
        return None


def _letter(record: Record, reason: str, traceback: str | None = None) -> DeadLetter:
    return DeadLetter(
        record.key,
        record.value,
        reason,
        record.topic,
        record.partition,
        record.offset,
        traceback,
    )


def _where(record: Record) -> dict[str, Any]:
    return {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "key": record.key.decode("utf-8", errors="replace") if record.key else None,
    }
