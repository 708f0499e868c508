"""The service: every loop of one Tributary process, started together, stopped in order.

Side tasks run under names (consumer, relay, executor, completions, live-state). If one of
them dies the whole service stops loudly instead of limping on. Shutdown stops intake first,
lets running attempts finish (up to the drain timeout), applies their completions and
publishes the outbox before closing connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from service.alerts.sender import AlertSender, ErrorAlerts, dead_letter_alert
from service.alerts.sinks import make_sink
from service.api.http import make_app
from service.bus.consumer import EventConsumer
from service.bus.dead_letter import DeadLetters
from service.bus.kafka import ensure_topics, make_consumer, make_producer, service_topics
from service.bus.relay import OutboxRelay
from service.config import Settings
from service.coordinator import BatchOutcome, Coordinator, StatusTopic
from service.errors import ConfigError, InfrastructureError, TributaryError
from service.executor.local import CompletionBatcher, LocalExecutor
from service.executor.remote import RemoteDispatcher
from service.lineage import LineageEmitter
from service.observability import get_logger
from service.pipelines import PipelineRegistry, PipelineWatcher
from service.realtime import LiveState
from service.spec.validate import Capacity
from service.store import Capacity as NodeCapacity
from service.store import Store, connect
from service.store.records import OutboxMessage
from service.timers import TimerLoop

log = get_logger(__name__)

READINESS_TIMEOUT = 2.0  # seconds per dependency check


class Service:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.http_port: int | None = None  # the bound port, once serving (useful with port 0)
        self.started = asyncio.Event()  # set once every loop runs
        self._watcher: PipelineWatcher | None = None

    def request_reload(self) -> None:
        """Reload the pipelines directory now (SIGHUP)."""
        if self._watcher is not None:
            self._watcher.request_reload()

    async def run(self, stop: asyncio.Event) -> None:
        async with contextlib.AsyncExitStack() as stack:
            parts = await _open(self.settings, stack)
            self._watcher = parts.watcher
            self.http_port = await _serve_http(self.settings, parts, stack)
            loops = parts.start_loops()
            self.started.set()
            log.info(
                "service.started",
                instance_id=self.settings.instance_id,
                http_port=self.http_port,
                pipelines=sorted(parts.registry.current),
            )
            try:
                await _until_stopped(stop, loops)
            finally:
                log.info("service.stopping")
                await parts.shutdown(loops, self.settings.shutdown_drain_seconds)
                log.info("service.stopped")


@dataclass
class _Parts:
    """The connected pieces of one process and the loops that drive them."""

    store: Store
    registry: PipelineRegistry
    producer: AIOKafkaProducer
    live: LiveState | None
    consumer: EventConsumer
    relay: OutboxRelay
    completions: CompletionBatcher
    executor: LocalExecutor
    watcher: PipelineWatcher
    timers: TimerLoop
    dispatcher: RemoteDispatcher
    alerts: AlertSender | None
    lineage: LineageEmitter | None

    def start_loops(self) -> set[asyncio.Task[None]]:
        loops = {
            asyncio.create_task(self.consumer.run(), name="consumer"),
            asyncio.create_task(self.executor.run(), name="executor"),
            asyncio.create_task(self.completions.run(), name="completions"),
            asyncio.create_task(self.relay.run(), name="relay"),
            asyncio.create_task(self.watcher.run(), name="pipeline-watcher"),
            asyncio.create_task(self.timers.run(), name="timers"),
            asyncio.create_task(self.dispatcher.run(), name="dispatcher"),
            asyncio.create_task(self.executor.heartbeat(), name="heartbeat"),
        }
        if self.live:
            loops.add(asyncio.create_task(self.live.run(), name="live-state"))
        if self.alerts:
            loops.add(asyncio.create_task(self.alerts.run(), name="alerts"))
        if self.lineage:
            loops.add(asyncio.create_task(self.lineage.run(), name="lineage"))
        return loops

    async def shutdown(self, loops: set[asyncio.Task[None]], drain_seconds: float) -> None:
        """Intake first; then the attempts, their completions, the outbox, the live state."""
        by_name = {task.get_name(): task for task in loops}
        await _cancel({by_name["consumer"]})
        await self.executor.stop(drain_seconds)
        self.completions.close()
        if not by_name["completions"].done():
            await by_name["completions"]
        await _cancel({by_name["relay"]})
        await self.relay.drain()
        await _cancel(loops)
        if self.live:
            await self.live.publish_pending()


async def _open(settings: Settings, stack: contextlib.AsyncExitStack) -> _Parts:
    store = await connect(settings.database_url, settings.database_pool_size)
    stack.push_async_callback(store.close)
    await store.migrate()
    registry = PipelineRegistry(store, Capacity(settings.node_cpu_cores, settings.node_memory_mb))
    await registry.load(settings.pipelines_dir)
    watcher = PipelineWatcher(
        registry, settings.pipelines_dir, settings.pipelines_reload_interval_seconds
    )
    producer, kafka_consumer = await _open_kafka(settings, stack)
    live = await _open_live_state(settings, stack)

    alerts = _alert_sender(settings, registry)
    lineage = (
        LineageEmitter(
            settings.openlineage_url,
            settings.openlineage_namespace,
            registry.current.get,
            producer,
            settings.openlineage_topic,
        )
        if settings.openlineage_url or settings.openlineage_topic
        else None
    )
    listeners = [listener.offer for listener in (live, alerts, lineage) if listener is not None]

    def published(messages: Sequence[OutboxMessage]) -> None:
        for listener in listeners:
            listener(messages)

    relay = OutboxRelay(
        store,
        producer,
        settings.relay_batch_size,
        settings.relay_poll_interval_seconds,
        on_published=published,
    )
    wake = _Wakeups(relay)
    coordinator = Coordinator(
        store,
        registry,
        StatusTopic(settings.topic_status, settings.event_source),
        actor=settings.instance_id,
        on_commit=wake.after_commit,
        requests_topic=settings.topic_requests,
        remote_by_default=settings.remote_by_default,
    )
    dead_letters = DeadLetters(
        producer,
        settings.topic_dead_letter,
        on_sent=(lambda letter: alerts.raise_alert(dead_letter_alert(letter)))
        if alerts
        else (lambda letter: None),
    )
    if alerts:
        errors = ErrorAlerts(alerts)
        logging.getLogger().addHandler(errors)
        stack.callback(logging.getLogger().removeHandler, errors)
    completions = CompletionBatcher(
        coordinator, dead_letters, settings.topic_completions, settings.consumer_batch_size
    )
    executor = LocalExecutor(
        coordinator,
        registry,
        completions,
        settings.instance_id,
        settings.event_source,
        settings.task_log_dir,
        settings.max_parallel_tasks,
        settings.executor_poll_interval_seconds,
        settings.lease_ttl_seconds,
        NodeCapacity(
            settings.max_parallel_tasks,
            settings.node_cpu_cores,
            settings.node_memory_mb,
            settings.pools,
        ),
    )
    timers = TimerLoop(coordinator, store, settings.timer_poll_interval_seconds)
    dispatcher = RemoteDispatcher(
        coordinator,
        settings.instance_id,
        settings.lease_ttl_seconds,
        settings.executor_poll_interval_seconds,
    )
    wake.executor, wake.timers, wake.dispatcher = executor, timers, dispatcher
    consumer = EventConsumer(
        kafka_consumer,
        coordinator,
        dead_letters,
        settings.consumer_batch_size,
        settings.lease_ttl_seconds,
    )
    return _Parts(
        store,
        registry,
        producer,
        live,
        consumer,
        relay,
        completions,
        executor,
        watcher,
        timers,
        dispatcher,
        alerts,
        lineage,
    )


def _alert_sender(settings: Settings, registry: PipelineRegistry) -> AlertSender | None:
    if settings.alert_sinks is None:
        log.warning("alerts.disabled", reason="no alert_sinks configured")
        return None
    try:
        configured = orjson.loads(settings.alert_sinks.get_secret_value())
        if not isinstance(configured, dict):
            raise ValueError("expected a JSON object of sinks by name")
        sinks = {name: make_sink(name, config) for name, config in configured.items()}
    except (orjson.JSONDecodeError, ValueError, TypeError) as exc:
        raise ConfigError(f"setting 'alert_sinks' (TRIBUTARY_ALERT_SINKS): {exc}") from None
    unknown = sorted({n for names in settings.alert_routes.values() for n in names} - set(sinks))
    if unknown:
        raise ConfigError(
            f"setting 'alert_routes' names unknown sinks {unknown} (configured: {sorted(sinks)})"
        )
    routes = {key: [sinks[n] for n in names] for key, names in settings.alert_routes.items()}
    routes.setdefault("default", list(sinks.values()) if not settings.alert_routes else [])

    def domain_of(pipeline_id: str) -> str | None:
        pipeline = registry.current.get(pipeline_id)
        return pipeline.spec.domain if pipeline else None

    def max_attempts_of(pipeline_id: str, task_id: str) -> int | None:
        pipeline = registry.current.get(pipeline_id)
        task = pipeline.tasks.get(task_id) if pipeline else None
        return task.retry.max_attempts if task else None

    return AlertSender(
        routes,
        settings.alert_dashboard_url_template,
        settings.alert_logs_url_template,
        settings.alert_fold_window_seconds,
        domain_of,
        max_attempts_of,
    )


async def _open_kafka(
    settings: Settings, stack: contextlib.AsyncExitStack
) -> tuple[AIOKafkaProducer, AIOKafkaConsumer]:
    if settings.kafka_create_topics:
        created = await ensure_topics(settings, service_topics(settings))
        if created:
            log.info("kafka.topics_created", topics=created)
    producer = make_producer(settings)
    consumer = make_consumer(settings, [settings.topic_triggers, settings.topic_completions])
    for client in (producer, consumer):
        try:
            await client.start()
        except KafkaError as exc:
            raise InfrastructureError(
                f"cannot reach Kafka at {settings.kafka_bootstrap_servers}: {exc!r}"
            ) from exc
        stack.push_async_callback(client.stop)
    return producer, consumer


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


async def _serve_http(settings: Settings, parts: _Parts, stack: contextlib.AsyncExitStack) -> int:
    async def readiness() -> dict[str, Any]:
        return await _readiness(parts.store, parts.producer, settings, parts.live)

    runner = web.AppRunner(make_app(parts.store, readiness, parts.live), access_log=None)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    await web.TCPSite(runner, settings.http_host, settings.http_port).start()
    port: int = runner.addresses[0][1]
    return port


class _Wakeups:
    """After a commit: wake the executor for newly queued work, the relay for new events."""

    def __init__(self, relay: OutboxRelay) -> None:
        self.relay = relay
        self.executor: LocalExecutor | None = None
        self.timers: TimerLoop | None = None
        self.dispatcher: RemoteDispatcher | None = None

    def after_commit(self, outcome: BatchOutcome) -> None:
        if outcome.runs_created or outcome.tasks_queued or outcome.datasets_recorded:
            for loop in (self.executor, self.dispatcher):
                if loop is not None:
                    loop.wake()
        if outcome.outbox_written:
            self.relay.wake()
        if outcome.retries_scheduled and self.timers:
            self.timers.wake()


async def _until_stopped(stop: asyncio.Event, tasks: set[asyncio.Task[None]]) -> None:
    stopper = asyncio.create_task(stop.wait(), name="stop-signal")
    done, _ = await asyncio.wait({stopper, *tasks}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    for task in done - {stopper}:
        error = task.exception() if not task.cancelled() else None
        log.critical("service.task_died", task=task.get_name(), error=repr(error))
        raise TributaryError(f"side task {task.get_name()!r} stopped: {error!r}") from error


async def _cancel(tasks: set[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _readiness(
    store: Store, producer: AIOKafkaProducer, settings: Settings, live: LiveState | None
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
