"""The outbox relay: publishes committed events to Kafka, marks them sent, and hands them,
decoded once, to the listeners (live state, alerts, lineage).

One relay is active across all replicas (a PostgreSQL advisory lock held by its session),
which keeps each run's events in order on the status topic; the others stand by and take over
when its session ends. What it published is marked sent by its next read (one statement a
round), at the latest a poll interval later or when it gives the lead up. A crash between
publishing and marking re-sends the same events with the same ids: delivery is at least once,
and consumers deduplicate by event id.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaProducer

from service import metrics
from service.bus.kafka import broker_errors
from service.errors import TributaryError
from service.events import CONTENT_TYPE, CloudEvent, decode_event
from service.observability import get_logger
from service.orchestrator.work_hub import Work, WorkHub
from service.store import OutboxReader, Store
from service.store.records import OutboxMessage
from service.supervision import Loop

log = get_logger(__name__)

STANDBY_INTERVAL = 2.0  # seconds between leadership attempts while another replica relays

Listener = Callable[[Sequence[CloudEvent]], None]


class OutboxRelay(Loop):
    name = "relay"

    def __init__(
        self,
        *,
        store: Store,
        producer: AIOKafkaProducer,
        hub: WorkHub,
        batch_size: int,
        poll_interval: float,
        listeners: Sequence[Listener] = (),
    ) -> None:
        super().__init__(idle_wait=poll_interval)
        self._store = store
        self._producer = producer
        self._batch_size = batch_size
        self._listeners = listeners
        self._leadership: contextlib.AsyncExitStack | None = None
        self._reader: OutboxReader | None = None
        self._published: list[int] = []  # outbox rows published, marked sent by the next read
        self.published = 0  # events published since start
        hub.subscribe(Work.OUTBOX, self.wake)

    async def step(self) -> bool:
        reader = await self._lead()
        if reader is None:
            return False
        messages = await reader.mark_sent_and_read(self._published, self._batch_size)
        self._published = []
        metrics.OUTBOX_BACKLOG.set(len(messages))
        if not messages:
            return False
        await self._publish(messages)
        self._published = [m.id for m in messages]
        self.published += len(messages)
        metrics.OUTBOX_PUBLISHED.inc(len(messages))
        events = [decode_event(m.payload) for m in messages]
        for listener in self._listeners:
            listener(events)
        return len(messages) == self._batch_size

    def idle_wait(self) -> float | None:
        return super().idle_wait() if self._reader is not None else STANDBY_INTERVAL

    async def recover(self) -> None:
        await self.resign()

    async def close(self) -> None:
        await self.resign()

    async def drain(self) -> None:
        """Publish what is left in the outbox (at shutdown), then give the lead up."""
        try:
            await self.run_burst()
        finally:
            await self.resign()

    async def resign(self) -> None:
        """Give the leadership up (its connection back to the pool), what it published marked
        sent first while the database answers (else the next leader sends it again)."""
        stack, reader = self._leadership, self._reader
        self._leadership, self._reader = None, None
        published, self._published = self._published, []
        if stack is None:
            return
        try:
            if published and reader is not None:
                with contextlib.suppress(TributaryError):
                    await reader.mark_sent(published)
        finally:
            await stack.aclose()

    async def _lead(self) -> OutboxReader | None:
        if self._reader is not None:
            return self._reader
        stack = contextlib.AsyncExitStack()
        reader = await stack.enter_async_context(self._store.relay_leadership())
        if reader is None:
            await stack.aclose()
            return None
        log.info("relay.leading")
        self._leadership, self._reader = stack, reader
        return reader

    async def _publish(self, messages: Sequence[OutboxMessage]) -> None:
        headers = [("content-type", CONTENT_TYPE.encode())]
        with broker_errors("the outbox relay"):
            deliveries = [
                await self._producer.send(m.topic, m.payload, key=m.key.encode(), headers=headers)
                for m in messages
            ]
            await asyncio.gather(*deliveries)
