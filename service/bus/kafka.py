"""Kafka clients built from settings: one place for connection, security and timeouts.

Everything here speaks the Kafka protocol through aiokafka only, so Apache Kafka, Redpanda,
MSK or the embedded Tansu broker are chosen by configuration alone.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from service.config import Settings
from service.config.kafka import requests_topic
from service.errors import InfrastructureError

TOPIC_ALREADY_EXISTS = 36  # Kafka error code, reported per topic rather than raised
REQUEST_TIMEOUT_MS = 30_000


@contextmanager
def broker_errors(what: str = "Kafka") -> Iterator[None]:
    """aiokafka's errors as :class:`InfrastructureError` (retriable): the broker is away or
    busy. Whatever the broker refuses for good is checked for before it is sent."""
    try:
        yield
    except KafkaError as exc:
        raise InfrastructureError(f"{what}: {exc!r}") from exc


async def broker_answers(producer: AIOKafkaProducer) -> None:
    """A real round trip (a metadata request), not what the client remembers of the cluster:
    InfrastructureError when no broker answers."""
    with broker_errors("Kafka"):
        await producer.client.fetch_all_metadata()


def client_options(settings: Settings) -> dict[str, Any]:
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "client_id": settings.kafka_client_id,
        "security_protocol": settings.kafka_security_protocol,
        "request_timeout_ms": REQUEST_TIMEOUT_MS,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = tls_context(settings)
    if settings.kafka_sasl_mechanism:
        password = settings.kafka_sasl_password
        options.update(
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_plain_username=settings.kafka_sasl_username,
            sasl_plain_password=password.get_secret_value() if password else None,
        )
    return options


def tls_context(settings: Settings) -> ssl.SSLContext:
    """Certificates checked against the system's CAs or kafka_ssl_cafile; this client's own
    certificate presented when one is set (mutual TLS)."""
    context = ssl.create_default_context(
        cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
    )
    if settings.kafka_ssl_certfile is not None:
        password = settings.kafka_ssl_key_password
        context.load_cert_chain(
            settings.kafka_ssl_certfile,
            settings.kafka_ssl_keyfile,
            password.get_secret_value() if password else None,
        )
    return context


def make_producer(settings: Settings) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        **client_options(settings),
        acks="all",
        enable_idempotence=settings.kafka_enable_idempotence,
        linger_ms=2,
        max_request_size=settings.kafka_max_message_bytes,
    )


async def start_clients(
    settings: Settings,
    stack: contextlib.AsyncExitStack,
    topics: Sequence[str],
    group: str | None = None,
) -> tuple[AIOKafkaProducer, AIOKafkaConsumer]:
    """A started producer, and a consumer of ``topics`` in ``group``; both stopped by ``stack``.

    The consumer subscribes after it starts, so it joins its group in the background: a
    member killed a moment ago holds its partitions until its session expires, and a restart
    must not wait that out before it takes over the attempts that member left running."""
    producer = make_producer(settings)
    consumer = make_consumer(settings, group)
    for client in (producer, consumer):
        stack.push_async_callback(client.stop)  # also after a failed start: it let nothing go
        with broker_errors(f"cannot reach Kafka at {settings.kafka_bootstrap_servers}"):
            await client.start()
    consumer.subscribe(list(topics))
    return producer, consumer


def make_consumer(settings: Settings, group: str | None = None) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        **client_options(settings),
        group_id=group or settings.kafka_consumer_group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
        max_poll_records=settings.consumer_batch_size,
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
    )


def service_topics(settings: Settings, queues: Iterable[str] = ()) -> list[str]:
    return [
        settings.topic_triggers,
        settings.topic_completions,
        settings.topic_status,
        settings.topic_dead_letter,
        settings.topic_requests,
        settings.topic_cancels,
        settings.topic_logs,
        *(requests_topic(settings.topic_requests, queue) for queue in sorted(set(queues))),
    ]


async def ensure_topics(settings: Settings, topics: Sequence[str]) -> list[str]:
    """Create the topics that do not exist yet; return the ones created."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    try:
        await admin.start()
        response = await admin.create_topics(
            [
                NewTopic(
                    name, settings.kafka_topic_partitions, settings.kafka_topic_replication_factor
                )
                for name in topics
            ]
        )
    except KafkaError as exc:
        raise InfrastructureError(
            f"cannot create topics on Kafka at {settings.kafka_bootstrap_servers}: {exc!r}"
        ) from exc
    finally:
        await admin.close()
    created = []
    for name, code, message in response.topic_errors:
        if code == 0:
            created.append(name)
        elif code != TOPIC_ALREADY_EXISTS:
            raise InfrastructureError(f"cannot create topic {name!r}: error {code}: {message}")
    return created
