"""The servers one process works with, connected in order: PostgreSQL (migrated), the deployed
pipelines, Kafka (topics created when allowed), Redis (optional) and the attempt keeper's
directory (owned: one live process per directory)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from service.bus.dead_letter import DeadLetter
from service.bus.kafka import (
    broker_errors,
    ensure_topics,
    make_consumer,
    service_topics,
    start_clients,
)
from service.config import Settings
from service.config.kafka import requests_topic
from service.execution.keeper_client import KeeperClient
from service.live_state import LiveState
from service.observability import get_logger
from service.pipelines import PipelineRegistry
from service.spec.validate import NodeCapacity
from service.store import Store, connect
from service.store.records import ArchivedLetter

log = get_logger(__name__)


@dataclass
class Servers:
    """What the process is connected to."""

    store: Store
    registry: PipelineRegistry
    producer: AIOKafkaProducer
    consumer: AIOKafkaConsumer
    live: LiveState | None
    keeper: KeeperClient
    logs: AIOKafkaConsumer  # remote workers' attempt logs (a group of its own)


async def connect_servers(settings: Settings, stack: contextlib.AsyncExitStack) -> Servers:
    store = await connect(settings.database_url, settings.database_pool_size)
    stack.push_async_callback(store.close)
    await store.migrate()
    registry = PipelineRegistry(
        store, NodeCapacity(settings.node_cpu_cores, settings.node_memory_mb)
    )
    await registry.load(settings.pipelines_dir)
    producer, consumer = await _open_kafka(settings, stack, registry.queues())
    live = await _open_live_state(settings, stack)
    keeper = KeeperClient(settings.attempt_state_dir, settings.lease_ttl_seconds)
    keeper.own()  # a second process on the same directory is refused now, not later
    stack.push_async_callback(keeper.close)
    logs = make_consumer(settings, f"{settings.kafka_consumer_group}-logs")
    stack.push_async_callback(logs.stop)
    with broker_errors(f"cannot reach Kafka at {settings.kafka_bootstrap_servers}"):
        await logs.start()
    logs.subscribe([settings.topic_logs])
    return Servers(store, registry, producer, consumer, live, keeper, logs)


async def _open_kafka(
    settings: Settings, stack: contextlib.AsyncExitStack, queues: set[str]
) -> tuple[AIOKafkaProducer, AIOKafkaConsumer]:
    if settings.kafka_create_topics:
        created = await ensure_topics(settings, service_topics(settings, queues))
        if created:
            log.info("kafka.topics_created", topics=created)
    return await start_clients(
        settings, stack, [settings.topic_triggers, settings.topic_completions]
    )


async def _open_live_state(
    settings: Settings, stack: contextlib.AsyncExitStack
) -> LiveState | None:
    if not settings.redis_url:
        log.warning("live_state.disabled", reason="no redis_url configured")
        return None
    live = LiveState(
        settings.redis_url, settings.redis_key_prefix, settings.redis_state_ttl_seconds
    )
    stack.push_async_callback(live.close)
    if not await live.ping():
        log.warning("live_state.unavailable", redis_url=settings.redis_url)
    return live


def archived(letter: DeadLetter) -> ArchivedLetter:
    """A dead letter as PostgreSQL keeps it (text cannot hold NUL)."""
    envelope = letter.envelope()

    def text(value: str) -> str:
        return value.replace("\x00", "\\u0000")

    return ArchivedLetter(
        topic=text(letter.topic),
        partition=letter.partition,
        offset=letter.offset,
        key=text(envelope["key"]),
        reason=text(letter.reason),
        size=envelope["size"],
        sha256=envelope["sha256"],
        head=text(envelope["head"]),
        traceback=text(letter.traceback) if letter.traceback is not None else None,
    )


async def ensure_queue_topics(settings: Settings, registry: PipelineRegistry) -> None:
    """The requests topic of every queue the deployed pipelines name (after a reload may have
    added one): a request to a queue is never published to a topic that does not exist."""
    if settings.kafka_create_topics:
        topics = [requests_topic(settings.topic_requests, q) for q in sorted(registry.queues())]
        created = await ensure_topics(settings, topics) if topics else []
        if created:
            log.info("kafka.topics_created", topics=created)
