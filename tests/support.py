"""Helpers for tests that run the real service as a subprocess and talk to it through Kafka."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from service.bus.envelope import CONTENT_TYPE

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


class ServiceProcess:
    """``python -m service serve`` with the given environment, its output in a log file."""

    def __init__(self, environment: dict[str, str], log_path: Path, command: str = "serve") -> None:
        self.environment = environment
        self.log_path = log_path
        self.command = command  # "serve", or "worker"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("TRIBUTARY_")},
            **self.environment,
        }
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "service", self.command],
                env=env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    async def wait_started(self, timeout: float = 30.0) -> None:
        async def started_or_exited() -> bool:
            return f"{self.started_event}" in self.log_text() or not self.alive

        await eventually(started_or_exited, bool, timeout, "the service to start")
        assert self.alive, f"the service exited at start:\n{self.log_text()[-3000:]}"

    @property
    def started_event(self) -> str:
        return "worker.started" if self.command == "worker" else "service.started"

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

    def log_events(self) -> list[dict[str, Any]]:
        events = []
        for line in self.log_text().splitlines():
            try:
                events.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue
        return events


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


async def produce(
    bootstrap: str, topic: str, messages: Sequence[tuple[bytes | None, bytes]]
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in messages:
            await producer.send_and_wait(
                topic, value, key=key, headers=[("content-type", CONTENT_TYPE.encode())]
            )
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
