"""The dead-letter topic: where refused input goes, byte for byte, with the reason.

A record lands here when it is not JSON, not a CloudEvent, of an unknown type or against its
schema, or when the database refuses to apply it. Its key and value are kept as they were;
headers say why and where it came from (``tributary.reason``, ``tributary.topic``,
``tributary.partition``, ``tributary.offset``, ``tributary.at``, and ``tributary.traceback``
for an event a bug kept from applying). The offset of the original is committed only after
the dead letter is written, so nothing is lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer

from service import metrics
from service.bus.kafka import broker_errors
from service.clock import utc_timestamp
from service.observability import get_logger
from service.supervision import persistently

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    key: bytes | None
    value: bytes | None
    reason: str
    topic: str
    partition: int | None = None
    offset: int | None = None
    traceback: str | None = None


class DeadLetters:
    def __init__(
        self,
        producer: AIOKafkaProducer,
        topic: str,
        on_sent: Callable[[DeadLetter], None] = lambda letter: None,
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._on_sent = on_sent  # e.g. raise an alert
        self.sent = 0  # since start

    async def send(self, letters: Sequence[DeadLetter]) -> None:
        """Write every letter, retrying while the broker does not take them."""
        if not letters:
            return
        await persistently(lambda: self._write(letters), "dead-letters")
        for letter in letters:
            metrics.DEAD_LETTERS.labels(letter.topic).inc()
            self._on_sent(letter)
            log.error(
                "event.dead_lettered",
                reason=letter.reason,
                topic=letter.topic,
                partition=letter.partition,
                offset=letter.offset,
                dead_letter_topic=self._topic,
            )
        self.sent += len(letters)

    async def _write(self, letters: Sequence[DeadLetter]) -> None:
        with broker_errors("the dead-letter topic"):
            deliveries = [
                await self._producer.send(
                    self._topic, letter.value, key=letter.key, headers=_headers(letter)
                )
                for letter in letters
            ]
            await asyncio.gather(*deliveries)


def _headers(letter: DeadLetter) -> list[tuple[str, bytes]]:
    headers = [
        ("tributary.reason", letter.reason.encode()),
        ("tributary.topic", letter.topic.encode()),
        ("tributary.at", utc_timestamp().encode()),
    ]
    if letter.partition is not None:
        headers.append(("tributary.partition", str(letter.partition).encode()))
    if letter.offset is not None:
        headers.append(("tributary.offset", str(letter.offset).encode()))
    if letter.traceback is not None:
        headers.append(("tributary.traceback", letter.traceback.encode()))
    return headers
