"""The orchestrator's Kafka consumer: triggers and completions, offsets committed by hand.

For each batch: parse and check every record (a bad one is logged with its reason and
skipped), apply the good ones in one database transaction, and only then commit the offsets.
A crash between the two redelivers the batch, which the processed-events table makes harmless.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from service import metrics
from service.bus.dead_letter import DeadLetter, DeadLetters
from service.bus.envelope import TASK_HEARTBEAT, parse_event
from service.coordinator import Coordinator, apply_reliably, check_event
from service.errors import EventError
from service.observability import get_logger

log = get_logger(__name__)

POLL_TIMEOUT_MS = 1_000


class EventConsumer:
    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        coordinator: Coordinator,
        dead_letters: DeadLetters,
        batch_size: int,
        lease_seconds: float = 30.0,
    ) -> None:
        self._consumer = consumer
        self._coordinator = coordinator
        self._dead_letters = dead_letters
        self._batch_size = batch_size
        self._lease_seconds = lease_seconds  # what a remote worker's heartbeat renews
        self.rejected = 0  # records sent to the dead-letter topic, since start

    async def run(self) -> None:
        while True:
            batches: dict[
                TopicPartition, list[ConsumerRecord[bytes, bytes]]
            ] = await self._consumer.getmany(
                timeout_ms=POLL_TIMEOUT_MS, max_records=self._batch_size
            )
            if not batches:
                continue
            await self.process([record for records in batches.values() for record in records])
            offsets = {tp: records[-1].offset + 1 for tp, records in batches.items()}
            await self._commit(offsets)
            self._observe_lag(offsets)

    async def process(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        """Apply what is valid, dead-letter the rest; return once all of it is durable."""
        letters: list[DeadLetter] = []
        by_id: dict[str, ConsumerRecord[bytes, bytes]] = {}
        events = []
        beats: list[tuple[str, str, int, str]] = []  # heartbeats renew leases, nothing else
        for record in records:
            try:
                event = parse_event(record.value)
                check_event(event)
            except EventError as exc:
                log.error("event.rejected", reason=str(exc), **_where(record))
                letters.append(_letter(record, str(exc)))
                continue
            metrics.EVENTS_CONSUMED.labels(event.type).inc()
            if event.type == TASK_HEARTBEAT:
                beats.append(
                    (
                        event.data["run_id"],
                        event.data["task_id"],
                        event.data["attempt"],
                        event.data["worker_id"],
                    )
                )
                continue
            by_id[event.id] = record
            events.append(event)
        if beats:
            await self._coordinator.renew_attempt_leases(beats, self._lease_seconds)
        if events:
            for event, reason in await apply_reliably(self._coordinator, events):
                letters.append(_letter(by_id[event.id], reason))
        if letters:
            await self._dead_letters.send(letters)
            self.rejected += len(letters)

    def _observe_lag(self, offsets: dict[TopicPartition, int]) -> None:
        lag: dict[str, int] = {}
        for tp, next_offset in offsets.items():
            highwater = self._consumer.highwater(tp)
            if highwater is not None:
                lag[tp.topic] = lag.get(tp.topic, 0) + max(highwater - next_offset, 0)
        for topic, behind in lag.items():
            metrics.CONSUMER_LAG.labels(topic).set(behind)

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # The partitions moved to another member; it will redeliver, and we dedupe.
            log.warning("consumer.commit_failed", error=repr(exc))


def _letter(record: ConsumerRecord[bytes, bytes], reason: str) -> DeadLetter:
    return DeadLetter(
        record.key, record.value, reason, record.topic, record.partition, record.offset
    )


def _where(record: ConsumerRecord[bytes, bytes]) -> dict[str, Any]:
    return {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "key": record.key.decode("utf-8", errors="replace") if record.key else None,
    }
