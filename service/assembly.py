"""One process's components, built from the settings by keyword, connected in order.

:func:`assemble` connects the servers (``servers.py``), then builds the orchestrator on top of
them and the loops on top of that. Every
component is handed what it needs when it is made; loops subscribe to the work hub
themselves, so nothing is wired after construction. :class:`Components` starts the loops and
stops them in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from dataclasses import dataclass
from datetime import timedelta

from service.alerts.routes import Routes
from service.alerts.sender import AlertSender, ErrorAlerts, dead_letter_alert
from service.bus.dead_letter import DeadLetters
from service.config import Settings
from service.engine.triggers import BatchDates
from service.lineage import LineageEmitter
from service.loops.checks import CheckPoker
from service.loops.completions import CompletionBatcher
from service.loops.consumer import EventConsumer
from service.loops.dispatcher import RemoteDispatcher
from service.loops.executor import LocalExecutor
from service.loops.heartbeat import LeaseKeeper
from service.loops.log_collector import LogCollector
from service.loops.relay import Listener, OutboxRelay
from service.loops.retention import Retention
from service.loops.timers import TimerLoop
from service.loops.watchdog import Watchdog
from service.loops.watcher import PipelineWatcher
from service.observability import get_logger
from service.orchestrator.batch import BatchApplier
from service.orchestrator.claims import Claimer
from service.orchestrator.core import Orchestrator
from service.orchestrator.outgoing import Outgoing
from service.orchestrator.schedules import Scheduler
from service.orchestrator.timers import Timers
from service.orchestrator.work_hub import WorkHub
from service.pipelines import PipelineRegistry, RunContexts
from service.servers import Servers, archived, connect_servers, ensure_queue_topics
from service.store.records import ClaimBudget
from service.supervision import Loop

log = get_logger(__name__)


@dataclass
class Orchestration:
    core: Orchestrator
    dead_letters: DeadLetters

    @property
    def hub(self) -> WorkHub:
        return self.core.hub

    @property
    def applier(self) -> BatchApplier:
        return self.core.applier

    @property
    def claimer(self) -> Claimer:
        return self.core.claimer

    @property
    def timers(self) -> Timers:
        return self.core.timers

    @property
    def scheduler(self) -> Scheduler:
        return self.core.scheduler


@dataclass
class Components:
    """The connected pieces of one process and the loops that drive them."""

    servers: Servers
    applier: BatchApplier  # events and operators' commands, one transaction path
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
    checks: CheckPoker
    log_collector: LogCollector
    retention: Retention | None  # None: history_retention_days = 0, everything kept
    watchdog: Watchdog

    def start(self) -> dict[str, asyncio.Task[None]]:
        loops: list[Loop] = [
            self.consumer,
            self.executor,
            self.completions,
            self.relay,
            self.watcher,
            self.timers,
            self.dispatcher,
            self.checks,
            self.log_collector,
            self.heartbeat,
            self.watchdog,
        ]
        if self.retention is not None:
            loops.append(self.retention)
        running = {loop.name: asyncio.create_task(loop.run(), name=loop.name) for loop in loops}
        listeners = {
            "live-state": self.servers.live,
            "alerts": self.alerts,
            "lineage": self.lineage,
        }
        for name, listener in listeners.items():
            if listener is not None:
                running[name] = asyncio.create_task(listener.run(), name=name)
        return running

    async def shutdown(self, running: dict[str, asyncio.Task[None]], drain: float) -> None:
        """Intake first; then the attempts, their completions, the outbox, the live state."""
        await cancel([running.pop(self.consumer.name)])
        await self.executor.drain(drain)
        self.completions.stop()
        completions = running.pop(self.completions.name)
        if not completions.done():
            await completions
        await cancel([running.pop(self.relay.name)])
        await self.relay.drain()
        await cancel(list(running.values()))
        if self.servers.live is not None:
            await self.servers.live.publish_pending()


async def assemble(
    settings: Settings, routes: Routes | None, stack: contextlib.AsyncExitStack
) -> Components:
    servers = await connect_servers(settings, stack)
    alerts = _alert_sender(routes, settings, servers.registry, stack)
    lineage = _lineage(settings, servers)
    listeners: list[Listener] = [
        each.offer for each in (servers.live, alerts, lineage) if each is not None
    ]
    core = _orchestration(settings, servers, alerts)
    return _loops(settings, servers, core, listeners, alerts, lineage)


def _orchestration(
    settings: Settings, servers: Servers, alerts: AlertSender | None
) -> Orchestration:
    core = Orchestrator.build(
        store=servers.store,
        registry=servers.registry,
        outgoing=Outgoing(
            settings.topic_status,
            settings.topic_requests,
            settings.event_source,
            settings.topic_cancels,
        ),
        actor=settings.instance_id,
        remote_by_default=settings.remote_by_default,
        max_lost_attempts=settings.max_lost_attempts,
        dates=BatchDates(settings.earliest_batch_date, settings.latest_batch_date),
        default_timeout=timedelta(seconds=settings.default_task_timeout_seconds) or None,
        run_dir_root=settings.run_dir_root.resolve(),
    )
    dead_letters = DeadLetters(
        servers.producer,
        settings.topic_dead_letter,
        on_sent=(lambda letter: alerts.raise_alert(dead_letter_alert(letter)))
        if alerts
        else (lambda letter: None),
        archive=lambda letters: servers.store.archive_dead_letters(
            [archived(letter) for letter in letters]
        ),
        max_bytes=settings.kafka_max_message_bytes,
    )
    return Orchestration(core, dead_letters)


def _loops(
    settings: Settings,
    servers: Servers,
    core: Orchestration,
    listeners: list[Listener],
    alerts: AlertSender | None,
    lineage: LineageEmitter | None,
) -> Components:
    completions = CompletionBatcher(
        applier=core.applier,
        dead_letters=core.dead_letters,
        topic=settings.topic_completions,
        max_batch=settings.consumer_batch_size,
    )
    executor = _executor(settings, servers, core, completions)
    consumer = EventConsumer(
        consumer=servers.consumer,
        applier=core.applier,
        store=servers.store,
        dead_letters=core.dead_letters,
        batch_size=settings.consumer_batch_size,
        lease_seconds=settings.lease_ttl_seconds,
    )
    relay = _relay(settings, servers, core, listeners)
    heartbeat, watcher, timers, dispatcher = _side_loops(settings, servers, core, executor)
    checks = CheckPoker(
        store=servers.store,
        hub=core.hub,
        concurrency=settings.check_concurrency,
        probe_timeout=settings.check_timeout_seconds,
        databases=settings.check_dsns(),
        poll_interval=settings.timer_poll_interval_seconds,
    )
    watched = [consumer, completions, executor, relay, heartbeat, watcher, timers, dispatcher]
    log_collector = LogCollector(consumer=servers.logs, log_dir=settings.task_log_dir)
    watched += [checks, log_collector]
    retention = None
    if settings.history_retention_days > 0:
        keep = timedelta(days=settings.history_retention_days)
        retention = Retention(store=servers.store, keep=keep)
        watched.append(retention)
    watchdog = Watchdog(loops=watched, consumer=consumer, stall_seconds=settings.stall_seconds)
    return Components(
        servers=servers,
        applier=core.applier,
        alerts=alerts,
        lineage=lineage,
        consumer=consumer,
        relay=relay,
        completions=completions,
        executor=executor,
        heartbeat=heartbeat,
        watcher=watcher,
        timers=timers,
        dispatcher=dispatcher,
        checks=checks,
        log_collector=log_collector,
        retention=retention,
        watchdog=watchdog,
    )


def _side_loops(
    settings: Settings, servers: Servers, core: Orchestration, executor: LocalExecutor
) -> tuple[LeaseKeeper, PipelineWatcher, TimerLoop, RemoteDispatcher]:
    heartbeat = LeaseKeeper(
        store=servers.store,
        executor=executor,
        keeper=servers.keeper,
        worker_id=settings.instance_id,
        lease_seconds=settings.lease_ttl_seconds,
        hub=core.hub,
    )
    watcher = PipelineWatcher(
        registry=servers.registry,
        directory=settings.pipelines_dir,
        interval=settings.pipelines_reload_interval_seconds,
        after_load=functools.partial(ensure_queue_topics, settings, servers.registry),
    )
    timers = TimerLoop(
        timers=core.timers,
        admission=core.applier.admission,
        scheduler=core.scheduler,
        store=servers.store,
        hub=core.hub,
        poll_interval=settings.timer_poll_interval_seconds,
        lease_seconds=settings.lease_ttl_seconds,
    )
    dispatcher = RemoteDispatcher(
        claimer=core.claimer,
        applier=core.applier,
        hub=core.hub,
        dispatcher_id=settings.instance_id,
        lease_seconds=settings.lease_ttl_seconds,
        pickup_seconds=settings.dispatch_timeout_seconds,
        poll_interval=settings.executor_poll_interval_seconds,
    )
    return heartbeat, watcher, timers, dispatcher


def _relay(
    settings: Settings, servers: Servers, core: Orchestration, listeners: list[Listener]
) -> OutboxRelay:
    return OutboxRelay(
        store=servers.store,
        producer=servers.producer,
        hub=core.hub,
        batch_size=settings.relay_batch_size,
        poll_interval=settings.relay_poll_interval_seconds,
        listeners=listeners,
    )


def _executor(
    settings: Settings, servers: Servers, core: Orchestration, completions: CompletionBatcher
) -> LocalExecutor:
    return LocalExecutor(
        claimer=core.claimer,
        registry=servers.registry,
        store=servers.store,
        keeper=servers.keeper,
        completions=completions,
        hub=core.hub,
        worker_id=settings.instance_id,
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
        *settings.alert_links(),
        settings.alert_fold_window_seconds,
        domain_of,
    )
    errors = ErrorAlerts(sender)  # the service's own ERROR lines alert too
    logging.getLogger().addHandler(errors)
    stack.callback(logging.getLogger().removeHandler, errors)
    return sender


def _lineage(settings: Settings, servers: Servers) -> LineageEmitter | None:
    if not (settings.openlineage_url or settings.openlineage_topic):
        return None
    contexts = RunContexts(servers.registry, servers.store)
    return LineageEmitter(
        settings.openlineage_url,
        settings.openlineage_namespace,
        lambda status: contexts.of(status.run_id, status.pipeline_id, status.spec_hash),
        servers.producer,
        settings.openlineage_topic,
    )


async def cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
