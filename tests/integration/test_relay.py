"""The outbox relay: what it publishes is marked sent by its next read, or when it resigns."""

from __future__ import annotations

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer

from service.events import DatasetReady, new_event
from service.loops.relay import OutboxRelay
from service.orchestrator.work_hub import WorkHub
from service.store import Store
from service.store.records import OutboxRow
from tests.support import TopicReader


async def write_outbox(store: Store, topic: str, count: int) -> list[str]:
    events = [new_event(DatasetReady("d", f"p{i}"), "urn:test") for i in range(count)]
    async with store.transaction("test") as tx:
        tx.add_outbox([OutboxRow(e.id, topic, "k", e.to_bytes()) for e in events])
    return [e.id for e in events]


async def unsent(pg: asyncpg.Connection) -> int:
    return int(await pg.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL"))


async def test_published_events_are_marked_by_the_next_read_or_on_resigning(
    store: Store, pg: asyncpg.Connection, kafka_bootstrap: str, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}.status"
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    seen: list[str] = []
    relay = OutboxRelay(
        store=store,
        producer=producer,
        hub=WorkHub(),
        batch_size=3,
        poll_interval=60,
        listeners=[lambda events: seen.extend(e.id for e in events)],
    )
    try:
        first = await write_outbox(store, topic, 5)
        assert await relay.step()  # a full batch: three published, marked by the next read
        assert await unsent(pg) == 5
        assert not await relay.step()  # marks the three, publishes the other two
        assert await unsent(pg) == 2
        assert not await relay.step()  # marks those two; nothing left to read
        assert await unsent(pg) == 0
        second = await write_outbox(store, topic, 2)
        assert not await relay.step()
        assert await unsent(pg) == 2
        await relay.resign()  # gives the lead up: what it published is marked first
        assert await unsent(pg) == 0
    finally:
        await relay.close()
        await producer.stop()
    assert seen == first + second
    async with TopicReader(kafka_bootstrap, topic) as reader:
        records = await reader.read_until(lambda r: len(r) >= 7, timeout=30)
    assert [orjson.loads(r.value)["id"] for r in records] == first + second  # each once
