"""``tributary serve``, ``worker`` and ``migrate``: the long-running processes, and the schema.

Signal handlers are installed in one place, :func:`serve_until_signalled`: SIGTERM and SIGINT
stop the process gracefully, SIGHUP reloads the pipelines directory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import signal
import sys
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer

from service.app import Service
from service.bus.dead_letter import DeadLetters
from service.bus.kafka import broker_errors, client_options, ensure_topics, start_clients
from service.cli.common import settings_for, with_store
from service.config import Settings
from service.config.kafka import QUEUE_PATTERN, requests_topic
from service.errors import InfrastructureError
from service.execution.keeper_client import KeeperClient
from service.observability import configure_logging, get_logger
from service.supervision import when_reachable
from service.worker import CancelListener, Worker, WorkerHeartbeats, WorkerLogShipping

log = get_logger(__name__)


def configured(args: argparse.Namespace) -> Settings:
    settings = settings_for(args)
    configure_logging(
        settings.log_level,
        debug_file=settings.debug_log_file,
        secrets=settings.secret_values(),
        console=settings.console_logs(),
    )
    return settings


def cmd_serve(args: argparse.Namespace) -> int:
    asyncio.run(serve(configured(args)))
    return 0


async def serve(settings: Settings, ready: Callable[[Service], None] | None = None) -> None:
    """Run the service until SIGTERM or SIGINT; ``ready`` is called once it serves."""
    service = Service(settings)

    async def run(stop: asyncio.Event) -> None:
        runner = asyncio.create_task(service.run(stop))
        started = asyncio.create_task(service.started.wait())
        await asyncio.wait({runner, started}, return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
        if service.started.is_set() and ready is not None:
            ready(service)
        await runner

    await serve_until_signalled(run, reload=service.request_reload)


async def serve_until_signalled(
    run: Callable[[asyncio.Event], Awaitable[None]], reload: Callable[[], None] | None = None
) -> None:
    """``run(stop)``, with ``stop`` set by SIGTERM or SIGINT and ``reload`` called on SIGHUP."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if reload is not None:
        loop.add_signal_handler(signal.SIGHUP, reload)
    try:
        await run(stop)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)


def cmd_worker(args: argparse.Namespace) -> int:
    settings = configured(args)
    if args.queue is not None:
        if not re.fullmatch(QUEUE_PATTERN, args.queue):
            print(
                f"tributary worker: --queue {args.queue!r}: a queue is 1 to 100 letters, "
                "digits, '_' or '-'",
                file=sys.stderr,
            )
            return 2
        settings = settings.model_copy(update={"worker_queue": args.queue})
    asyncio.run(serve_until_signalled(_worker(settings)))
    return 0


def _worker(settings: Settings) -> Callable[[asyncio.Event], Awaitable[None]]:
    async def work(stop: asyncio.Event) -> None:
        """A remote worker: requests from Kafka in, heartbeats and completions out."""
        async with contextlib.AsyncExitStack() as stack:

            async def connect(
                attempt: contextlib.AsyncExitStack,
            ) -> tuple[Worker, AIOKafkaConsumer]:
                return await _open_worker(settings, attempt), await _cancels_consumer(
                    settings, attempt
                )

            def said(error: InfrastructureError, tries: int, delay: float) -> None:
                log.warning(
                    "worker.waiting", waiting_for=str(error), tries=tries, retry_in=round(delay, 2)
                )

            opened = await when_reachable(
                connect,
                stack,
                give_up_after=settings.startup_wait_seconds,
                stop=stop,
                waiting=said,
            )
            if opened is None:
                return  # stopped while waiting for the broker
            worker, cancels = opened
            log.info(
                "worker.started",
                worker_id=settings.instance_id,
                queue=settings.worker_queue,
                requests_topic=requests_topic(settings.topic_requests, settings.worker_queue),
            )
            loops = [
                asyncio.create_task(worker.run(), name="worker"),
                asyncio.create_task(WorkerHeartbeats(worker).run(), name="worker-heartbeats"),
                asyncio.create_task(CancelListener(worker, cancels).run(), name="worker-cancels"),
                asyncio.create_task(WorkerLogShipping(worker).run(), name="worker-logs"),
            ]
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait({stopper, loops[0]}, return_when=asyncio.FIRST_COMPLETED)
            worker.stop()
            await loops[0]  # raises what stopped it, if not the signal
            await worker.drain(settings.shutdown_drain_seconds)
            for loop in loops[1:]:
                loop.cancel()
            stopper.cancel()
            for loop in loops[1:]:
                with contextlib.suppress(asyncio.CancelledError):
                    await loop
            log.info("worker.stopped", worker_id=settings.instance_id, finished=worker.finished)

    return work


async def _cancels_consumer(
    settings: Settings, stack: contextlib.AsyncExitStack
) -> AIOKafkaConsumer:
    """Every partition of the cancels topic, from now on, without a group: each worker sees
    every cancel."""
    consumer = AIOKafkaConsumer(
        settings.topic_cancels,
        **client_options(settings),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="latest",
    )
    stack.push_async_callback(consumer.stop)
    with broker_errors(f"cannot reach Kafka at {settings.kafka_bootstrap_servers}"):
        await consumer.start()
    return consumer


async def _open_worker(settings: Settings, stack: contextlib.AsyncExitStack) -> Worker:
    """A worker of its queue: its requests topic, its queue's group (workers of one queue
    share its requests), this node's resources."""
    requests = requests_topic(settings.topic_requests, settings.worker_queue)
    group = settings.kafka_worker_group + (
        f".{settings.worker_queue}" if settings.worker_queue else ""
    )
    if settings.kafka_create_topics:
        await ensure_topics(
            settings,
            [
                requests,
                settings.topic_completions,
                settings.topic_dead_letter,
                settings.topic_cancels,
                settings.topic_logs,
            ],
        )
    producer, consumer = await start_clients(settings, stack, [requests], group)
    keeper = KeeperClient(settings.attempt_state_dir, settings.lease_ttl_seconds)
    keeper.own()
    stack.push_async_callback(keeper.close)
    return Worker(
        consumer=consumer,
        producer=producer,
        keeper=keeper,
        dead_letters=DeadLetters(
            producer, settings.topic_dead_letter, max_bytes=settings.kafka_max_message_bytes
        ),
        completions_topic=settings.topic_completions,
        worker_id=settings.instance_id,
        log_dir=settings.task_log_dir,
        max_parallel=settings.max_parallel_tasks,
        lease_seconds=settings.lease_ttl_seconds,
        logs_topic=settings.topic_logs,
        capacity=(settings.node_cpu_cores, settings.node_memory_mb),
    )


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = settings_for(args)
    configure_logging(settings.log_level)
    applied = with_store(settings, lambda store: store.migrate())
    names = [f"{m.version:04d}_{m.name}" for m in applied]
    print("applied: " + ", ".join(names) if names else "the schema is up to date")
    return 0
