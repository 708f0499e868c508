"""The fault suite's rig: servers of the test's own (a PostgreSQL cluster, a broker, a Redis)
that it may stop, pause and start again without disturbing the shared ones, and the real
service deployed on them."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from service import devenv
from service.store import create_database_if_missing
from tests.chaos.rig import Deploy, PrivateBroker, PrivatePostgres, PrivateRedis
from tests.support import ServiceProcess, pipelines_dir, service_environment


@pytest.fixture
async def private_postgres() -> AsyncIterator[PrivatePostgres]:
    # Not under tmp_path: as root the server runs as the postgres user, who may not enter
    # pytest's private directories. /tmp itself is open to all.
    data_dir = Path(tempfile.mkdtemp(prefix="tributary-chaos-pg-"))
    server = PrivatePostgres(data_dir, devenv.free_port())
    try:
        server.start()
        await create_database_if_missing(server.url)
        yield server
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    port = devenv.free_port()
    broker = PrivateBroker(devenv.start_tansu(port, tmp_path / "tansu.log"), port)
    yield broker
    broker.resume()  # a paused process does not die of SIGTERM
    broker.process.terminate()
    try:
        broker.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        broker.process.kill()
        broker.process.wait()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(devenv.free_port(), tmp_path / "redis.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def deploy(tmp_path: Path, topic_prefix: str, redis_prefix: str) -> AsyncIterator[Deploy]:
    """Request it after the servers it runs on (torn down in reverse order: the service
    stops before they do).

    ``await deploy(["marked"], database_url=…, kafka=…, redis_url=…, **settings)``: the
    real service on the servers given, with ``MARKS`` for the marked pipeline (whose tasks take
    ``mark_seconds`` each); every process
    of the deployment stopped at the end."""
    family: list[ServiceProcess] = []
    marks = tmp_path / "marks"
    marks.mkdir()

    async def run(
        pipelines: list[str],
        *,
        database_url: str,
        kafka: str,
        mark_seconds: str = "0.3",
        **settings: Any,
    ) -> ServiceProcess:
        settings.setdefault("pipelines_dir", pipelines_dir(tmp_path / "pipelines", pipelines))
        settings.setdefault("task_log_dir", tmp_path / "task-logs")
        settings.setdefault("attempt_state_dir", tmp_path / "attempts")
        settings.setdefault("redis_url", "")
        environment = service_environment(
            database_url, kafka, topic_prefix, redis_prefix, **settings
        )
        environment = {**environment, "MARKS": str(marks), "MARK_SECONDS": mark_seconds}
        service = ServiceProcess(environment, tmp_path / "service.log")
        service.family = family
        service.start()
        await service.wait_started(timeout=60)
        return service

    yield run
    for process in family:
        if process.alive:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.stop(timeout=30)


@pytest.fixture
def marks(tmp_path: Path) -> Path:
    """Where the marked pipeline's tasks leave their marks (made by ``deploy``)."""
    return tmp_path / "marks"
