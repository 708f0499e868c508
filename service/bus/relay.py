"""The outbox relay: publishes committed status events to Kafka, then marks them sent.

One relay is active across all replicas (a PostgreSQL advisory lock), which keeps each run's
events in order on the status topic; the others stand by and take over when its session ends.
A crash between publishing and marking re-sends the same events with the same ids:
delivery is at least once, and consumers deduplicate by event id.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from service import metrics
from service.bus.envelope import CONTENT_TYPE
from service.errors import TributaryError
from service.observability import get_logger
from service.store import OutboxReader, Store
from service.store.records import OutboxMessage

log = get_logger(__name__)

STANDBY_INTERVAL = 2.0  # seconds between leadership attempts while another replica relays
RETRY_MAX_DELAY = 5.0  # seconds


class OutboxRelay:
    def __init__(
        self,
        store: Store,
        producer: AIOKafkaProducer,
        batch_size: int,
        poll_interval: float,
        on_published: Callable[[Sequence[OutboxMessage]], None] = lambda messages: None,
    ) -> None:
        self._store = store
        self._producer = producer
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._on_published = on_published
        self._wakeup = asyncio.Event()
        self.published = 0  # events published since start

    def wake(self) -> None:
        self._wakeup.set()

    async def run(self) -> None:
        delay = 0.1
        while True:
            try:
                async with self._store.relay_leadership() as reader:
                    if reader is None:
                        await asyncio.sleep(STANDBY_INTERVAL)
                        continue
                    log.info("relay.leading")
                    await self._relay(reader)
            except (TributaryError, KafkaError) as exc:
                log.warning("relay.retry", error=repr(exc), delay=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_DELAY)

    async def _relay(self, reader: OutboxReader) -> None:
        while True:
            self._wakeup.clear()
            messages = await reader.unsent(self._batch_size)
            metrics.OUTBOX_BACKLOG.set(len(messages))
            if messages:
                await self._publish(messages)
                await reader.mark_sent([m.id for m in messages])
                self.published += len(messages)
                metrics.OUTBOX_PUBLISHED.inc(len(messages))
                self._on_published(messages)
                if len(messages) == self._batch_size:
                    continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self._poll_interval)

    async def _publish(self, messages: Sequence[OutboxMessage]) -> None:
        headers = [("content-type", CONTENT_TYPE.encode())]
        deliveries = [
            await self._producer.send(m.topic, m.payload, key=m.key.encode(), headers=headers)
            for m in messages
        ]
        await asyncio.gather(*deliveries)

    async def drain(self) -> None:
        """Publish what is left in the outbox (at shutdown), if this process leads."""
        async with self._store.relay_leadership() as reader:
            if reader is None:
                return
            while messages := await reader.unsent(self._batch_size):
                await self._publish(messages)
                await reader.mark_sent([m.id for m in messages])
                self.published += len(messages)
                self._on_published(messages)
