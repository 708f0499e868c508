"""The real service on an embedded Tansu broker and a scratch database, for benches that drive
it through Kafka: its settings, started and stopped in one context."""

from __future__ import annotations

import asyncio
import functools
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer

from service import devenv
from service.app import Service
from service.config import load_settings
from service.events import DatasetReady, new_event
from service.store.queries import queries


def service_env(url: str, port: int, pipelines: Path, work: Path, **extra: str) -> dict[str, str]:
    """Settings for a bench's service: quick Kafka polls, its own topics and group, logs
    at WARNING, every server on loopback; ``extra`` on top (names without the prefix)."""
    prefix = f"bench-{secrets.token_hex(3)}"
    env = {
        "ENV": "bench",
        "DATABASE_URL": url,
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
        "KAFKA_ENABLE_IDEMPOTENCE": "false",
        "KAFKA_FETCH_MAX_WAIT_MS": "25",
        "KAFKA_SESSION_TIMEOUT_MS": "2000",
        "KAFKA_HEARTBEAT_INTERVAL_MS": "500",
        "KAFKA_CONSUMER_GROUP": prefix,
        "TOPIC_TRIGGERS": f"{prefix}.t",
        "TOPIC_COMPLETIONS": f"{prefix}.c",
        "TOPIC_STATUS": f"{prefix}.s",
        "TOPIC_DEAD_LETTER": f"{prefix}.d",
        "TOPIC_REQUESTS": f"{prefix}.r",
        "TOPIC_LOGS": f"{prefix}.l",
        "PIPELINES_DIR": str(pipelines),
        "TASK_LOG_DIR": str(work / "logs"),
        "ATTEMPT_STATE_DIR": str(work / "attempts"),
        "HTTP_PORT": "0",
        "LOG_LEVEL": "WARNING",
        **extra,
    }
    return {f"TRIBUTARY_{name}": value for name, value in env.items()}


@dataclass
class Running:
    """A started service, a producer for its triggers and a connection to its database."""

    service: Service
    producer: AIOKafkaProducer
    conn: asyncpg.Connection
    env: dict[str, str]  # its settings, for workers that join it
    statements: int = 0  # sent to PostgreSQL by the service since start (see count_statements)
    by_statement: Counter[str] = field(default_factory=Counter)  # the same, by query name

    @property
    def triggers(self) -> str:
        return self.env["TRIBUTARY_TOPIC_TRIGGERS"]

    async def announce(self, dataset: str, days: range, start: date = date(2030, 1, 1)) -> None:
        """dataset.ready for each day of ``days`` (partitions counted from ``start``)."""
        for day in days:
            partition = (start + timedelta(days=day)).isoformat()
            event = new_event(DatasetReady(dataset, partition), "urn:bench")
            await self.producer.send(self.triggers, event.to_bytes(), key=dataset.encode())
        await self.producer.flush()

    async def until_ended(self, runs: int, pipeline: str | None = None) -> None:
        """Poll (the measurement itself: how soon the runs are seen ended): until there are
        ``runs`` runs, then until none is active (the runs_active index: a cheap poll, however
        many runs there are)."""
        created = "SELECT count(*) FROM runs WHERE $1::text IS NULL OR pipeline_id = $1"
        while await self.conn.fetchval(created, pipeline) < runs:  # noqa: ASYNC110
            await asyncio.sleep(0.002)
        active = (
            "SELECT EXISTS (SELECT 1 FROM runs WHERE state IN ('queued', 'running') "
            "AND ($1::text IS NULL OR pipeline_id = $1))"
        )
        while await self.conn.fetchval(active, pipeline):  # noqa: ASYNC110
            await asyncio.sleep(0.002)


@contextmanager
def count_statements(running: Running) -> Iterator[None]:
    """Count every statement the service's connections send (the bench's own excluded)."""
    methods = ("execute", "executemany", "fetch", "fetchval", "fetchrow")
    originals = {name: getattr(asyncpg.Connection, name) for name in methods}
    names = {sql: name for name, sql in queries().items()}

    def counted(original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def call(conn: asyncpg.Connection, *args: Any, **kwargs: Any) -> Any:
            if conn is not running.conn:
                running.statements += 1
                sql = str(args[0]) if args else ""
                name = names.get(sql)
                if name is None:  # not a named query (BEGIN, a derived variant): once per text
                    name = names[sql] = " ".join(sql.split())[:48]
                running.by_statement[name] += 1
            return original(conn, *args, **kwargs)

        return call

    for name, original in originals.items():
        setattr(asyncpg.Connection, name, counted(original))
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(asyncpg.Connection, name, original)


@asynccontextmanager
async def running_service(
    url: str, pipelines: Path, work: Path, settings: Mapping[str, str] | None = None
) -> AsyncIterator[Running]:
    port = devenv.free_port()
    broker = devenv.start_tansu(port, work / "tansu.log")
    env = service_env(url, port, pipelines, work, **(settings or {}))
    service = Service(load_settings(environ=env))
    stop = asyncio.Event()
    runner = asyncio.create_task(service.run(stop))
    producer = AIOKafkaProducer(bootstrap_servers=f"127.0.0.1:{port}", acks="all", linger_ms=0)
    conn: asyncpg.Connection | None = None
    try:
        await service.started.wait()
        await producer.start()
        conn = await asyncpg.connect(url)
        running = Running(service, producer, conn, env)
        with count_statements(running):
            yield running
    finally:
        if conn is not None:
            await conn.close()
        await producer.stop()
        stop.set()
        await runner
        broker.terminate()
        broker.wait(timeout=10)
