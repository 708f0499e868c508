"""Dead letters on a real broker and a real database: each record once, whole when it fits,
as a bounded envelope when it does not, and kept in PostgreSQL either way."""

from __future__ import annotations

import hashlib

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer

from service.bus.dead_letter import DeadLetter, DeadLetters
from service.servers import archived
from service.store import Store
from tests.support import TopicReader

SMALL = DeadLetter(b"k1", b"not json", "not JSON: unexpected character", "in", 0, 7)
HUGE = DeadLetter(b"k2", b"x" * 300_000 + b"\x00tail", "not JSON: too big", "in", 1, 8)


async def test_a_record_too_large_for_the_broker_is_kept_as_a_bounded_envelope(
    kafka_bootstrap: str, topic_prefix: str, store: Store, pg: asyncpg.Connection
) -> None:
    topic = f"{topic_prefix}.dead"
    # The producer takes 100 KB at most: the broker-side refusal, as a broker would answer.
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, max_request_size=100_000)
    await producer.start()
    try:
        letters = DeadLetters(
            producer,
            topic,
            archive=lambda batch: store.archive_dead_letters([archived(x) for x in batch]),
            max_bytes=1_000_000,  # ours is larger: the producer's refusal is what we meet
        )
        await letters.send([SMALL, HUGE])
        await letters.send([SMALL, HUGE])  # the batch read again after a crash
        async with TopicReader(kafka_bootstrap, topic) as reader:
            records = await reader.read_until(lambda r: len(r) >= 4, timeout=20)
    finally:
        await producer.stop()
    small, huge = records[0], records[1]
    assert (small.key, small.value) == (b"k1", b"not json")  # whole, as it came
    assert dict(small.headers)["tributary.offset"] == b"7"
    headers = dict(huge.headers)
    assert headers["tributary.envelope"] == b"1"
    envelope = orjson.loads(huge.value)
    assert envelope["size"] == len(HUGE.value or b"")
    assert envelope["sha256"] == hashlib.sha256(HUGE.value or b"").hexdigest()
    assert envelope["head"] == "x" * 1024
    assert (envelope["topic"], envelope["partition"], envelope["offset"]) == ("in", 1, 8)
    # PostgreSQL keeps each once (the second send found them there), NULs and all.
    rows = await pg.fetch('SELECT "offset", size, reason FROM dead_letters ORDER BY "offset"')
    assert [(r["offset"], r["size"]) for r in rows] == [(7, 8), (8, 300_005)]


async def test_a_record_over_our_own_limit_never_reaches_the_producer_whole(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}.dead"
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        await DeadLetters(producer, topic, max_bytes=50_000).send([HUGE])
        async with TopicReader(kafka_bootstrap, topic) as reader:
            [record] = await reader.read_until(lambda r: len(r) >= 1, timeout=20)
    finally:
        await producer.stop()
    assert dict(record.headers)["tributary.envelope"] == b"1"
    assert len(record.value) < 5_000
