"""The service: every loop of one Tributary process, built from the settings, started together,
stopped in order.

The settings (alert sinks included) are checked before any server is touched. Each loop runs
under the supervisor (``service/supervision.py``): a server away for a while is waited out; a
loop that stops for any other reason stops the whole service loudly instead of letting it limp
on. Shutdown stops intake first, lets running attempts finish (up to the drain timeout),
applies their completions and publishes the outbox before closing connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from service.alerts.routes import Routes, routes_from
from service.alerts.sender import AlertSender, ErrorAlerts, dead_letter_alert
from service.api.http import make_app
from service.bus.dead_letter import DeadLetters
from service.bus.kafka import (
    broker_errors,
    ensure_topics,
    make_consumer,
    make_producer,
    service_topics,
)
from service.config import Settings
from service.errors import TributaryError
from service.lineage import LineageEmitter
from service.live_state import LiveState
from service.loops.completions import CompletionBatcher
from service.loops.consumer import EventConsumer
from service.loops.dispatcher import RemoteDispatcher
from service.loops.executor import LocalExecutor
from service.loops.heartbeat import LeaseKeeper
from service.loops.relay import Listener, OutboxRelay
from service.loops.timers import TimerLoop
from service.loops.watcher import PipelineWatcher
from service.observability import get_logger
from service.orchestrator.batch import BatchApplier
from service.orchestrator.claims import Claimer
from service.orchestrator.outgoing import Outgoing
from service.orchestrator.timers import Timers
from service.orchestrator.work_hub import WorkHub
from service.pipelines import PipelineRegistry, RunContexts
from service.spec.validate import NodeCapacity
from service.store import Store, connect
from service.store.records import ClaimBudget
from service.supervision import Loop

log = get_logger(__name__)

READINESS_TIMEOUT = 2.0  # seconds per dependency check


class Service:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.alert_routes = routes_from(settings)  # ConfigError now, not after migrations
        self.http_port: int | None = None  # the bound port, once serving (useful with port 0)
        self.started = asyncio.Event()  # set once every loop runs
        self._watcher: PipelineWatcher | None = None

    def request_reload(self) -> None:
        """Reload the pipelines directory now (SIGHUP)."""
        if self._watcher is not None:
            self._watcher.request_reload()

    async def run(self, stop: asyncio.Event) -> None:
        async with contextlib.AsyncExitStack() as stack:
            parts = await _open(self.settings, self.alert_routes, stack)
            self._watcher = parts.watcher
            self.http_port = await _serve_http(self.settings, parts, stack)
            running = parts.start()
            self.started.set()
            log.info(
                "service.started",
                instance_id=self.settings.instance_id,
                http_port=self.http_port,
                pipelines=sorted(parts.registry.current),
            )
            try:
                await _until_stopped(stop, running)
            finally:
                log.info("service.stopping")
                await parts.shutdown(running, self.settings.shutdown_drain_seconds)
                log.info("service.stopped")


@dataclass
class _Parts:
    """The connected pieces of one process and the loops that drive them."""

    store: Store
    registry: PipelineRegistry
    producer: AIOKafkaProducer
    live: LiveState | None
    alerts: AlertSender | None
    lineage: LineageEmitter | None
    consumer: EventConsumer
    relay: OutboxRelay
    completions: CompletionBatcher
    executor: LocalExecutor
    heartbeat: LeaseKeeper
    watcher: PipelineWatcher
    timers: TimerLoop
    dispatcher: RemoteDispatcher

    def start(self) -> dict[str, asyncio.Task[None]]:
        loops: list[Loop] = [
            self.consumer,
            self.executor,
            self.completions,
            self.relay,
            self.watcher,
            self.timers,
            self.dispatcher,
            self.heartbeat,
        ]
        running = {loop.name: asyncio.create_task(loop.run(), name=loop.name) for loop in loops}
        for name, listener in (("live-state", self.live), ("alerts", self.alerts)):
            if listener is not None:
                running[name] = asyncio.create_task(listener.run(), name=name)
        if self.lineage is not None:
            running["lineage"] = asyncio.create_task(self.lineage.run(), name="lineage")
        return running

    async def shutdown(self, running: dict[str, asyncio.Task[None]], drain: float) -> None:
        """Intake first; then the attempts, their completions, the outbox, the live state."""
        await _cancel([running.pop(self.consumer.name)])
        await self.executor.drain(drain)
        self.completions.stop()
        completions = running.pop(self.completions.name)
        if not completions.done():
            await completions
        await _cancel([running.pop(self.relay.name)])
        await self.relay.drain()
        await _cancel(list(running.values()))
        if self.live:
            await self.live.publish_pending()


async def _open(
    settings: Settings, routes: Routes | None, stack: contextlib.AsyncExitStack
) -> _Parts:
    store = await connect(settings.database_url, settings.database_pool_size)
    stack.push_async_callback(store.close)
    await store.migrate()
    node = NodeCapacity(settings.node_cpu_cores, settings.node_memory_mb)
    registry = PipelineRegistry(store, node)
    await registry.load(settings.pipelines_dir)
    producer, consumer = await _open_kafka(settings, stack)
    live = await _open_live_state(settings, stack)
    alerts = _alert_sender(routes, settings, registry, stack)
    listeners: list[Listener] = [x.offer for x in (live, alerts) if x is not None]
    lineage = _lineage(settings, registry, store, producer)
    if lineage is not None:
        listeners.append(lineage.offer)
    return _build_loops(
        settings, store, registry, producer, consumer, listeners, live, alerts, lineage
    )


def _build_loops(
    settings: Settings,
    store: Store,
    registry: PipelineRegistry,
    producer: AIOKafkaProducer,
    kafka_consumer: AIOKafkaConsumer,
    listeners: list[Listener],
    live: LiveState | None,
    alerts: AlertSender | None,
    lineage: LineageEmitter | None,
) -> _Parts:
    hub = WorkHub()
    me = settings.instance_id
    outgoing = Outgoing(settings.topic_status, settings.topic_requests, settings.event_source)
    applier = BatchApplier(
        store=store,
        registry=registry,
        outgoing=outgoing,
        hub=hub,
        actor=me,
        remote_by_default=settings.remote_by_default,
    )
    claimer = Claimer(store=store, registry=registry, outgoing=outgoing, hub=hub)
    timers = Timers(
        store=store, registry=registry, outgoing=outgoing, applier=applier, hub=hub, actor=me
    )
    dead_letters = DeadLetters(
        producer,
        settings.topic_dead_letter,
        on_sent=(lambda letter: alerts.raise_alert(dead_letter_alert(letter)))
        if alerts
        else (lambda letter: None),
    )
    completions = CompletionBatcher(
        applier=applier,
        dead_letters=dead_letters,
        topic=settings.topic_completions,
        max_batch=settings.consumer_batch_size,
    )
    executor = LocalExecutor(
        claimer=claimer,
        registry=registry,
        store=store,
        completions=completions,
        hub=hub,
        worker_id=me,
        event_source=settings.event_source,
        log_dir=settings.task_log_dir,
        node=ClaimBudget(
            settings.max_parallel_tasks,
            settings.node_cpu_cores,
            settings.node_memory_mb,
            settings.pools,
        ),
        lease_seconds=settings.lease_ttl_seconds,
        poll_interval=settings.executor_poll_interval_seconds,
    )
    return _Parts(
        store=store,
        registry=registry,
        producer=producer,
        live=live,
        alerts=alerts,
        lineage=lineage,
        consumer=EventConsumer(
            consumer=kafka_consumer,
            applier=applier,
            store=store,
            dead_letters=dead_letters,
            batch_size=settings.consumer_batch_size,
            lease_seconds=settings.lease_ttl_seconds,
        ),
        relay=OutboxRelay(
            store=store,
            producer=producer,
            hub=hub,
            batch_size=settings.relay_batch_size,
            poll_interval=settings.relay_poll_interval_seconds,
            listeners=listeners,
        ),
        completions=completions,
        executor=executor,
        heartbeat=LeaseKeeper(
            store=store,
            executor=executor,
            worker_id=me,
            lease_seconds=settings.lease_ttl_seconds,
        ),
        watcher=PipelineWatcher(
            registry=registry,
            directory=settings.pipelines_dir,
            interval=settings.pipelines_reload_interval_seconds,
        ),
        timers=TimerLoop(
            timers=timers,
            store=store,
            hub=hub,
            poll_interval=settings.timer_poll_interval_seconds,
        ),
        dispatcher=RemoteDispatcher(
            claimer=claimer,
            hub=hub,
            dispatcher_id=me,
            lease_seconds=settings.lease_ttl_seconds,
            poll_interval=settings.executor_poll_interval_seconds,
        ),
    )


def _alert_sender(
    routes: Routes | None,
    settings: Settings,
    registry: PipelineRegistry,
    stack: contextlib.AsyncExitStack,
) -> AlertSender | None:
    if routes is None:
        return None

    def domain_of(pipeline_id: str) -> str | None:
        pipeline = registry.current.get(pipeline_id)
        return pipeline.spec.domain if pipeline else None

    sender = AlertSender(
        routes,
        settings.alert_dashboard_url_template,
        settings.alert_logs_url_template,
        settings.alert_fold_window_seconds,
        domain_of,
    )
    errors = ErrorAlerts(sender)  # the service's own ERROR lines alert too
    logging.getLogger().addHandler(errors)
    stack.callback(logging.getLogger().removeHandler, errors)
    return sender


def _lineage(
    settings: Settings, registry: PipelineRegistry, store: Store, producer: AIOKafkaProducer
) -> LineageEmitter | None:
    if not (settings.openlineage_url or settings.openlineage_topic):
        return None
    contexts = RunContexts(registry, store)
    return LineageEmitter(
        settings.openlineage_url,
        settings.openlineage_namespace,
        lambda status: contexts.of(status.run_id, status.pipeline_id, status.spec_hash),
        producer,
        settings.openlineage_topic,
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
        with broker_errors(f"cannot reach Kafka at {settings.kafka_bootstrap_servers}"):
            await client.start()
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


async def _until_stopped(stop: asyncio.Event, running: dict[str, asyncio.Task[None]]) -> None:
    stopper = asyncio.create_task(stop.wait(), name="stop-signal")
    done, _ = await asyncio.wait({stopper, *running.values()}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    for task in done - {stopper}:
        error = task.exception() if not task.cancelled() else None
        log.critical("service.task_died", task=task.get_name(), error=repr(error), exc_info=error)
        raise TributaryError(f"loop {task.get_name()!r} stopped: {error!r}") from error


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
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
        async with asyncio.timeout(READINESS_TIMEOUT):
            await store.ping()
        checks["postgres"] = "ok"
    except (TributaryError, TimeoutError) as exc:
        checks["postgres"] = f"unavailable: {exc}"
    try:
        with broker_errors("Kafka"):
            async with asyncio.timeout(READINESS_TIMEOUT):
                await producer.partitions_for(settings.topic_status)
        checks["kafka"] = "ok"
    except (TributaryError, TimeoutError) as exc:
        checks["kafka"] = f"unavailable: {exc!r}"
    if live is None:
        checks["redis"] = "disabled"
    else:
        checks["redis"] = "ok" if await live.ping() else "unavailable"
    return checks
