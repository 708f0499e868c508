"""The service: every loop of one Tributary process, started together, stopped in order.

Side tasks run under names (consumer, relay, executor, completions, live-state). If one of
them dies the whole service stops loudly instead of limping on. Shutdown stops intake first,
lets running attempts finish (up to the drain timeout), applies their completions and
publishes the outbox before closing connections.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

from aiohttp import web

from service.api.http import make_app
from service.bus.consumer import EventConsumer
from service.bus.kafka import ensure_topics, make_consumer, make_producer, service_topics
from service.bus.relay import OutboxRelay
from service.config import Settings
from service.coordinator import BatchOutcome, Coordinator, StatusTopic
from service.errors import InfrastructureError, TributaryError
from service.executor.local import CompletionBatcher, LocalExecutor
from service.observability import get_logger
from service.pipelines import PipelineRegistry
from service.realtime import LiveState
from service.store import Store, connect

log = get_logger(__name__)

READINESS_TIMEOUT = 2.0  # seconds per dependency check


class Service:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.http_port: int | None = None  # the bound port, once serving (useful with port 0)
        self.started = asyncio.Event()  # set once every loop runs

    async def run(self, stop: asyncio.Event) -> None:
        settings = self.settings
        store = await connect(settings.database_url, settings.database_pool_size)
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(store.close)
            await store.migrate()
            registry = PipelineRegistry(store)
            await registry.load(settings.pipelines_dir)
            if settings.kafka_create_topics:
                created = await ensure_topics(settings, service_topics(settings))
                if created:
                    log.info("kafka.topics_created", topics=created)

            producer = make_producer(settings)
            await _start_kafka(producer.start(), settings)
            stack.push_async_callback(producer.stop)
            kafka_consumer = make_consumer(
                settings, [settings.topic_triggers, settings.topic_completions]
            )
            await _start_kafka(kafka_consumer.start(), settings)
            stack.push_async_callback(kafka_consumer.stop)

            live = None
            if settings.redis_url:
                live = LiveState(
                    settings.redis_url, settings.redis_key_prefix, settings.redis_state_ttl_seconds
                )
                stack.push_async_callback(live.close)
                if not await live.ping():
                    log.warning("live_state.unavailable", redis_url=settings.redis_url)
            else:
                log.warning("live_state.disabled", reason="no redis_url configured")

            relay = OutboxRelay(
                store,
                producer,
                settings.relay_batch_size,
                settings.relay_poll_interval_seconds,
                on_published=live.offer if live else lambda messages: None,
            )
            wake = _Wakeups()
            coordinator = Coordinator(
                store,
                registry,
                StatusTopic(settings.topic_status, settings.event_source),
                actor=settings.instance_id,
                on_commit=wake.after_commit,
            )
            completions = CompletionBatcher(coordinator, settings.consumer_batch_size)
            executor = LocalExecutor(
                coordinator,
                registry,
                completions,
                settings.instance_id,
                settings.event_source,
                settings.task_log_dir,
                settings.max_parallel_tasks,
                settings.executor_poll_interval_seconds,
            )
            wake.executor, wake.relay = executor, relay
            consumer = EventConsumer(kafka_consumer, coordinator, settings.consumer_batch_size)
            self.consumer, self.relay, self.executor = consumer, relay, executor

            async def readiness() -> dict[str, Any]:
                return await _readiness(store, producer, settings, live)

            runner = web.AppRunner(make_app(store, readiness), access_log=None)
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            site = web.TCPSite(runner, settings.http_host, settings.http_port)
            await site.start()
            self.http_port = runner.addresses[0][1]

            intake = {asyncio.create_task(consumer.run(), name="consumer")}
            work = {
                asyncio.create_task(executor.run(), name="executor"),
                asyncio.create_task(completions.run(), name="completions"),
                asyncio.create_task(relay.run(), name="relay"),
            }
            if live:
                work.add(asyncio.create_task(live.run(), name="live-state"))
            self.started.set()
            log.info(
                "service.started",
                instance_id=settings.instance_id,
                http_port=self.http_port,
                pipelines=sorted(registry.current),
            )
            try:
                await _until_stopped(stop, intake | work)
            finally:
                log.info("service.stopping")
                await _cancel(intake)
                await executor.stop(settings.shutdown_drain_seconds)
                completions.close()
                await _finish(work, "completions")
                await _cancel({t for t in work if t.get_name() == "relay"})
                await relay.drain()
                await _cancel(work)
                if live:
                    await live.publish_pending()
                log.info("service.stopped")


class _Wakeups:
    """After a commit: wake the executor for newly queued work, the relay for new events."""

    executor: LocalExecutor | None = None
    relay: OutboxRelay | None = None

    def after_commit(self, outcome: BatchOutcome) -> None:
        if (outcome.runs_created or outcome.tasks_queued) and self.executor:
            self.executor.wake()
        if outcome.outbox_written and self.relay:
            self.relay.wake()


async def _start_kafka(starting: Coroutine[Any, Any, None], settings: Settings) -> None:
    from aiokafka.errors import KafkaError

    try:
        await starting
    except KafkaError as exc:
        raise InfrastructureError(
            f"cannot reach Kafka at {settings.kafka_bootstrap_servers}: {exc!r}"
        ) from exc


async def _until_stopped(stop: asyncio.Event, tasks: set[asyncio.Task[None]]) -> None:
    stopper = asyncio.create_task(stop.wait(), name="stop-signal")
    done, _ = await asyncio.wait({stopper, *tasks}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    for task in done - {stopper}:
        error = task.exception() if not task.cancelled() else None
        log.critical("service.task_died", task=task.get_name(), error=repr(error))
        raise TributaryError(f"side task {task.get_name()!r} stopped: {error!r}") from error


async def _finish(tasks: set[asyncio.Task[None]], name: str) -> None:
    """Wait for the named task to return by itself (it was told to finish)."""
    for task in tasks:
        if task.get_name() == name and not task.done():
            await task


async def _cancel(tasks: set[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _readiness(
    store: Store, producer: Any, settings: Settings, live: LiveState | None
) -> dict[str, Any]:
    checks: dict[str, Any] = {}
    try:
        await asyncio.wait_for(store.ping(), READINESS_TIMEOUT)
        checks["postgres"] = "ok"
    except (TributaryError, TimeoutError) as exc:
        checks["postgres"] = f"unavailable: {exc}"
    try:
        await asyncio.wait_for(producer.partitions_for(settings.topic_status), READINESS_TIMEOUT)
        checks["kafka"] = "ok"
    except Exception as exc:
        checks["kafka"] = f"unavailable: {exc!r}"
    if live is None:
        checks["redis"] = "disabled"
    else:
        checks["redis"] = "ok" if await live.ping() else "unavailable"
    return checks
