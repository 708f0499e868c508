"""Start-up that waits: a broker that comes up after the service is waited for — the port
answers alive but not ready, saying what it waits for — and the service then starts as if it
had always been there; a broker that never comes makes it give up after startup_wait_seconds
with the reason, instead of crash-looping at once."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp

from service import devenv
from tests.support import ServiceProcess, eventually, service_environment


async def get(port: int, path: str) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}") as response,
    ):
        return response.status, await response.json()


def waiting_events(service: ServiceProcess) -> list[dict[str, Any]]:
    return [e for e in service.log_events() if e.get("event") == "service.waiting"]


async def test_the_service_waits_for_a_broker_that_starts_later(
    tmp_path: Path, database_url: str, topic_prefix: str, redis_prefix: str
) -> None:
    port = devenv.free_port()
    environment = service_environment(database_url, f"127.0.0.1:{port}", topic_prefix, redis_prefix)
    service = ServiceProcess(environment, tmp_path / "service.log")
    service.family = [service]
    worker = service.another(
        "worker", command="worker", instance_id="w", attempt_state_dir=tmp_path / "w"
    )
    broker = None
    service.start()
    worker.start()
    try:
        [first, *_] = await eventually(
            lambda: asyncio.to_thread(waiting_events, service), bool, 30, "service.waiting"
        )
        assert "Kafka" in first["waiting_for"]
        waiting_port = first["http_port"]
        assert await get(waiting_port, "/healthz") == (200, {"status": "alive", "starting": True})
        status, ready = await get(waiting_port, "/readyz")
        assert status == 503
        assert ready["ready"] is False
        assert "Kafka" in ready["waiting_for"]
        await eventually(
            lambda: asyncio.to_thread(waiting_events, service), lambda e: len(e) >= 2, 30, "a retry"
        )
        assert service.alive
        await eventually(  # a worker waits for the broker alike
            lambda: asyncio.to_thread(worker.events, "worker.waiting"), bool, 30, "worker.waiting"
        )
        assert worker.alive

        broker = devenv.start_tansu(port, tmp_path / "tansu.log")
        await service.wait_started(timeout=60)
        await worker.wait_started(timeout=60)
        status, ready = await eventually(
            lambda: get(service.http_port(), "/readyz"),
            lambda answer: answer[0] == 200,
            30,
            "ready",
        )
        assert ready["checks"]["kafka"] == "ok"
    finally:
        for process in (worker, service):
            if process.alive:
                process.stop()
        if broker is not None:
            broker.terminate()
            broker.wait(timeout=10)


async def test_the_service_gives_up_after_startup_wait_seconds(
    tmp_path: Path, database_url: str, topic_prefix: str, redis_prefix: str
) -> None:
    nobody = f"127.0.0.1:{devenv.free_port()}"
    environment = service_environment(
        database_url, nobody, topic_prefix, redis_prefix, startup_wait_seconds="2"
    )
    service = ServiceProcess(environment, tmp_path / "service.log")
    service.start()
    assert service.process is not None
    code = await asyncio.to_thread(service.process.wait, 60)
    assert code == 1
    assert "gave up waiting for the servers (startup_wait_seconds)" in service.log_text()
    assert waiting_events(service)  # it said what it waited for meanwhile
