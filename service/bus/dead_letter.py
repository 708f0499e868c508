"""Dead letters: where refused input goes, with the reason, so that nothing is lost and the
input moves on.

A record lands here when it is not JSON, not a CloudEvent, of an unknown type or against its
schema, or when it can never be applied. Each letter is written once:

- to the dead-letter topic, key and value as they were, with headers saying why and where it
  came from (``tributary.reason``, ``tributary.topic``, ``tributary.partition``,
  ``tributary.offset``, ``tributary.at``, and ``tributary.traceback`` for an event a bug kept
  from applying). A record the broker would not take back (too large) goes as a bounded
  envelope instead: the reason, where it came from, its size, a sha256 of it and its first
  KiB (header ``tributary.envelope: 1``). A broker that is away is waited for; a topic that
  refuses for good (authorization, a bad name) is given up on, loudly;
- where an archive is given (the service: PostgreSQL), as that same bounded envelope, so the
  dashboard can list them and nothing depends on the dead-letter topic alone.

The offset of the original is committed only after its letter is written.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, KafkaTimeoutError

from service import metrics
from service.clock import utc_timestamp
from service.errors import InfrastructureError
from service.observability import get_logger
from service.supervision import persistently

log = get_logger(__name__)

HEAD_BYTES = 1024  # of a record too large to keep whole
DEFAULT_MAX_BYTES = 1_048_576  # what Kafka producers take by default
HEADROOM = 4096  # bytes for the record's framing and our headers


@dataclass(frozen=True, slots=True)
class DeadLetter:
    key: bytes | None
    value: bytes | None
    reason: str
    topic: str
    partition: int | None = None
    offset: int | None = None
    traceback: str | None = None

    def envelope(self) -> dict[str, Any]:
        """What is kept of the record whatever its size: bounded, JSON."""
        value = self.value or b""
        return {
            "reason": self.reason,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "key": _text(self.key or b"", 200),
            "size": len(value),
            "sha256": hashlib.sha256(value).hexdigest(),
            "head": _text(value, HEAD_BYTES),
            "head_base64": base64.b64encode(value[:HEAD_BYTES]).decode(),
            "traceback": self.traceback,
        }


Archive = Callable[[Sequence[DeadLetter]], Awaitable[None]]


class DeadLetters:
    def __init__(
        self,
        producer: AIOKafkaProducer,
        topic: str,
        on_sent: Callable[[DeadLetter], None] = lambda letter: None,
        archive: Archive | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._on_sent = on_sent  # e.g. raise an alert
        self._archive = archive
        self._max_bytes = max_bytes
        self.sent = 0  # since start

    async def send(self, letters: Sequence[DeadLetter]) -> None:
        """Write every letter once; return when each is written (or given up, loudly)."""
        if not letters:
            return
        if self._archive is not None:
            archive = self._archive
            await persistently(lambda: archive(letters), "dead-letters")
        for letter in letters:
            await persistently(functools.partial(self._publish, letter), "dead-letters")
            metrics.DEAD_LETTERS.labels(letter.topic).inc()
            self._on_sent(letter)
            log.error(
                "event.dead_lettered",
                reason=letter.reason,
                topic=letter.topic,
                partition=letter.partition,
                offset=letter.offset,
                size=len(letter.value or b""),
                dead_letter_topic=self._topic,
            )
        self.sent += len(letters)

    async def _publish(self, letter: DeadLetter) -> None:
        size = len(letter.value or b"") + len(letter.key or b"") + HEADROOM
        whole = size <= self._max_bytes
        refused = await self._write(letter, whole)
        if refused is not None and whole and _too_large(refused):
            # The broker's own limit is lower than ours: keep the envelope there instead.
            refused = await self._write(letter, whole=False)
        if refused is not None:  # the topic does not take writes from us: loudly, then on
            log.critical(
                "dead_letter.refused",
                error=repr(refused),
                topic=letter.topic,
                offset=letter.offset,
                archived=self._archive is not None,
            )

    async def _write(self, letter: DeadLetter, whole: bool) -> KafkaError | None:
        """Send the record (or its envelope); the broker's refusal for good comes back, one
        that may pass later leaves as an InfrastructureError (waited out by the caller)."""
        value = letter.value if whole else orjson.dumps(letter.envelope())
        key = letter.key if whole else (letter.key or b"")[:200]
        headers = _headers(letter) + ([] if whole else [("tributary.envelope", b"1")])
        try:
            delivery = await self._producer.send(self._topic, value, key=key, headers=headers)
            await delivery
        except KafkaError as exc:
            if getattr(exc, "retriable", False) or isinstance(exc, KafkaTimeoutError):
                raise InfrastructureError(f"the dead-letter topic: {exc!r}") from exc
            return exc
        return None


def _too_large(error: KafkaError) -> bool:
    return type(error).__name__ in ("MessageSizeTooLargeError", "RecordTooLargeError")


def _text(data: bytes, limit: int) -> str:
    return data[:limit].decode("utf-8", errors="replace")


def _headers(letter: DeadLetter) -> list[tuple[str, bytes]]:
    headers = [
        ("tributary.reason", letter.reason.encode()[:4000]),
        ("tributary.topic", letter.topic.encode()),
        ("tributary.at", utc_timestamp().encode()),
    ]
    if letter.partition is not None:
        headers.append(("tributary.partition", str(letter.partition).encode()))
    if letter.offset is not None:
        headers.append(("tributary.offset", str(letter.offset).encode()))
    if letter.traceback is not None:
        headers.append(("tributary.traceback", letter.traceback.encode()[-4000:]))
    return headers
