"""Helpers for the tests: events to feed in, the orchestrator on a real database, the real
service as a subprocess, Kafka topics to read, and a deadline for anything awaited."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from service.config import Settings, load_settings
from service.engine.states import TaskState
from service.events import (
    CONTENT_TYPE,
    CloudEvent,
    DatasetReady,
    RunRequested,
    TaskCompleted,
    new_event,
)
from service.loops.timers import TimerLoop
from service.orchestrator.batch import BatchApplier
from service.orchestrator.claims import Claimer
from service.orchestrator.core import Orchestrator
from service.orchestrator.outcome import BatchOutcome
from service.orchestrator.outgoing import Outgoing
from service.orchestrator.schedules import Scheduler
from service.orchestrator.timers import Timers
from service.orchestrator.work_hub import WorkHub
from service.pipelines import PipelineRegistry
from service.spec.loader import load_pipeline_file
from service.store import Store
from service.store.records import ClaimBudget, ClaimedAttempt

ROOT = Path(__file__).resolve().parent.parent
TEST_PIPELINES = Path(__file__).resolve().parent / "pipelines"
EXAMPLE_PIPELINES = ROOT / "examples" / "pipelines"
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
LEASE = 30.0  # seconds: long enough that no test's lease runs out unless it means to
T = TypeVar("T")


# --- events -----------------------------------------------------------------------------------


def ready(dataset: str, partition: str, **fields: Any) -> CloudEvent:
    return new_event(DatasetReady(dataset, partition, **fields), "urn:test:upstream")


def requested(pipeline_id: str, batch_date: str, **fields: Any) -> CloudEvent:
    request = RunRequested(pipeline_id, date.fromisoformat(batch_date), **fields)
    return new_event(request, "urn:test:operator")


def completed(
    run_id: str, task_id: str, attempt: int, outcome: str = "success", **fields: Any
) -> CloudEvent:
    exit_code = fields.pop("exit_code", 0 if outcome == "success" else 1)
    payload = TaskCompleted(
        run_id, task_id, attempt, TaskState(outcome), exit_code=exit_code, **fields
    )
    return new_event(payload, "urn:test:worker")


# --- pipelines --------------------------------------------------------------------------------


def pipelines_dir(directory: Path, names: Iterable[str]) -> Path:
    """A pipelines directory holding the named files of ``tests/pipelines`` (by stem)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(TEST_PIPELINES / f"{name}.yaml", directory / f"{name}.yaml")
    return directory


def example_tasks(pipeline_id: str) -> list[str]:
    """The task ids of a shipped example pipeline, in topological order."""
    return list(load_pipeline_file(EXAMPLE_PIPELINES / f"{pipeline_id}.yaml").graph.order)


# --- the orchestrator on a real database ------------------------------------------------------


@dataclass
class Orchestration:
    """The orchestrator's pieces wired as the service wires them, without any loop."""

    store: Store
    registry: PipelineRegistry
    hub: WorkHub
    applier: BatchApplier
    claimer: Claimer
    timers: Timers
    scheduler: Scheduler

    @classmethod
    async def open(
        cls, store: Store, directory: Path, default_timeout: timedelta | None = None
    ) -> Orchestration:
        registry = PipelineRegistry(store)
        loaded = await registry.load(directory)
        assert loaded.problems == [], loaded.problems
        outgoing = Outgoing("status", "requests", "urn:test")
        core = Orchestrator.build(
            store=store,
            registry=registry,
            outgoing=outgoing,
            actor="test",
            default_timeout=default_timeout,
            run_dir_root=directory.parent / "runs",
        )
        return cls(
            store, registry, core.hub, core.applier, core.claimer, core.timers, core.scheduler
        )

    async def apply(self, events: Sequence[CloudEvent]) -> BatchOutcome:
        return await self.applier.apply(events)

    def timer_loop(self, poll_interval: float, lease_seconds: float = LEASE) -> TimerLoop:
        """The timer loop over these pieces (not started)."""
        return TimerLoop(
            timers=self.timers,
            admission=self.applier.admission,
            scheduler=self.scheduler,
            store=self.store,
            hub=self.hub,
            poll_interval=poll_interval,
            lease_seconds=lease_seconds,
        )

    async def claim(
        self, worker: str = "w", budget: ClaimBudget | int = 10, lease: float = LEASE
    ) -> list[ClaimedAttempt]:
        slots = ClaimBudget(budget) if isinstance(budget, int) else budget
        return await self.claimer.claim(worker, slots, lease)


# --- waiting ----------------------------------------------------------------------------------


async def eventually(
    probe: Callable[[], Awaitable[T]], accept: Callable[[T], bool], timeout: float, what: str
) -> T:
    """Await ``probe()`` until ``accept`` says yes; fail with the last value after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not accept(value := await probe()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}: {value!r}")
        await asyncio.sleep(0.05)
    return value


async def only_run_ended(conn: asyncpg.Connection, timeout: float = 60.0) -> str:
    """The final state of the database's only run, once it has one."""
    state: str = await eventually(
        lambda: conn.fetchval("SELECT state FROM runs"),
        lambda found: found in ("success", "failed", "cancelled"),
        timeout,
        "the run to end",
    )
    return state


async def stop_task(task: asyncio.Task[Any]) -> bool:
    """Cancel the task and await its end; True when the cancellation ended it (any other
    exception it raised is raised here)."""
    task.cancel()
    [outcome] = await asyncio.gather(task, return_exceptions=True)
    if isinstance(outcome, asyncio.CancelledError):
        return True
    if isinstance(outcome, BaseException):
        raise outcome
    return False


async def group_gone(leader: int) -> bool:
    """Whether no process is left in the process group ``leader`` led."""
    try:
        os.killpg(leader, 0)
    except ProcessLookupError:
        return True
    return False


async def settled(value: T) -> T:
    """A value as an awaitable, for :func:`eventually` probes of in-memory state."""
    return value


# --- Kafka ------------------------------------------------------------------------------------


async def produce(
    bootstrap: str,
    topic: str,
    messages: Sequence[tuple[bytes | None, bytes]],
    max_request_size: int = 1_048_576,
) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", max_request_size=max_request_size
    )
    await producer.start()
    try:
        headers = [("content-type", CONTENT_TYPE.encode())]
        sent = [await producer.send(topic, v, key=k, headers=headers) for k, v in messages]
        await asyncio.gather(*sent)  # in order per partition: one producer, one connection
    finally:
        await producer.stop()


class TopicReader:
    """Reads a topic from the beginning, without a consumer group."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
        )
        self.records: list[Any] = []

    async def __aenter__(self) -> TopicReader:
        await self._consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def read_until(self, done: Callable[[list[Any]], bool], timeout: float) -> list[Any]:
        deadline = time.monotonic() + timeout
        while not done(self.records):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout:.0f} s; read {len(self.records)} records"
                )
            batches = await self._consumer.getmany(timeout_ms=200)
            for records in batches.values():
                self.records.extend(records)
        return self.records


# --- the real service -------------------------------------------------------------------------


def service_environment(
    database_url: str, kafka_bootstrap: str, topic_prefix: str, redis_prefix: str, **extra: Any
) -> dict[str, str]:
    """``TRIBUTARY_*`` variables for a service under test: isolated topics, group, keys."""
    values: dict[str, Any] = {
        "env": "test",
        "database_url": database_url,
        "kafka_bootstrap_servers": kafka_bootstrap,
        "kafka_enable_idempotence": "false",
        "kafka_session_timeout_ms": "2000",
        "kafka_heartbeat_interval_ms": "500",
        "kafka_fetch_max_wait_ms": "25",
        "kafka_consumer_group": f"{topic_prefix}-group",
        "kafka_worker_group": f"{topic_prefix}-workers",
        "kafka_topic_partitions": "2",
        "topic_triggers": f"{topic_prefix}.triggers",
        "topic_completions": f"{topic_prefix}.completions",
        "topic_status": f"{topic_prefix}.status",
        "topic_requests": f"{topic_prefix}.requests",
        "topic_cancels": f"{topic_prefix}.cancels",
        "topic_logs": f"{topic_prefix}.logs",
        "topic_dead_letter": f"{topic_prefix}.dead-letter",
        "redis_url": REDIS_URL,
        "redis_key_prefix": f"{redis_prefix}:{topic_prefix}",
        "pipelines_dir": str(EXAMPLE_PIPELINES),
        "http_port": "0",
        "relay_poll_interval_seconds": "0.5",
        "executor_poll_interval_seconds": "0.5",
        "shutdown_drain_seconds": "5",
        **extra,
    }
    return {f"TRIBUTARY_{key.upper()}": str(value) for key, value in values.items()}


def settings_from(environment: dict[str, str]) -> Settings:
    return load_settings(environ=environment)


class ServiceProcess:
    """``python -m service serve`` (or ``worker``) with the given environment, its output in a
    log file."""

    def __init__(self, environment: dict[str, str], log_path: Path, command: str = "serve") -> None:
        self.environment = environment
        self.log_path = log_path
        self.command = command
        self.process: subprocess.Popen[bytes] | None = None
        self.family: list[ServiceProcess] = []  # every process of the deployment, to stop

    def setting(self, name: str) -> str:
        return self.environment[f"TRIBUTARY_{name.upper()}"]

    def another(self, name: str, command: str | None = None, **extra: Any) -> ServiceProcess:
        """A process of the same deployment (a replica, a restart, a worker), not started."""
        environment = {
            **self.environment,
            **{f"TRIBUTARY_{key.upper()}": str(value) for key, value in extra.items()},
        }
        log_path = self.log_path.with_name(f"{name}.log")
        process = ServiceProcess(environment, log_path, command or self.command)
        process.family = self.family
        return process

    def start(self) -> None:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("TRIBUTARY_")},
            **self.environment,
        }
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "service", *self.command.split()],
                env=env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.family.append(self)

    async def wait_started(self, timeout: float = 30.0) -> None:
        async def started_or_exited() -> bool:
            return self.started_event in self.log_text() or not self.alive

        await eventually(started_or_exited, bool, timeout, "the service to start")
        assert self.alive, f"the service exited at start:\n{self.log_text()[-3000:]}"

    @property
    def started_event(self) -> str:
        return "worker.started" if self.command.startswith("worker") else "service.started"

    def http_port(self) -> int:
        started = [e for e in self.log_events() if e.get("event") == "service.started"]
        assert started, "the service has not started"
        port: int = started[-1]["http_port"]
        return port

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        if self.alive:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def events(self, event: str) -> list[dict[str, Any]]:
        """What this deployment's processes logged as ``event``."""
        return [e for p in self.family for e in p.log_events() if e.get("event") == event]

    def log_events(self) -> list[dict[str, Any]]:
        events = []
        for line in self.log_text().splitlines():
            try:
                events.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue
        return events


# What the fixtures in conftest.py hand a test.
Background = Callable[[Coroutine[Any, Any, Any]], "asyncio.Task[Any]"]
Orchestrate = Callable[..., Awaitable[Orchestration]]
RunService = Callable[..., Awaitable[ServiceProcess]]
