"""The service: every loop of one Tributary process, built from the settings, started together,
stopped in order.

The settings (alert sinks included) are checked before any server is touched. Servers that do
not answer yet are waited for (``startup_wait_seconds``), the port answering meanwhile that the
process is alive but not ready: under an orchestrator, a broker that starts later is no crash
loop. Each loop runs
under the supervisor (``service/supervision.py``): a server away for a while is waited out; a
loop that stops for any other reason stops the whole service loudly instead of letting it limp
on. Shutdown stops intake first, lets running attempts finish (up to the drain timeout),
applies their completions and publishes the outbox before closing connections.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiohttp import web

from service.alerts.routes import routes_from
from service.api.auth import Tokens
from service.api.waiting import Waiting
from service.assembly import Components, assemble
from service.bus.kafka import broker_answers
from service.config import Settings
from service.dashboard.web import make_web_app
from service.errors import InfrastructureError, TributaryError
from service.loops.watcher import PipelineWatcher
from service.observability import get_logger
from service.servers import Servers
from service.supervision import when_reachable

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
            parts = await self._assemble_when_reachable(stack, stop)
            if parts is None:
                return  # stopped while waiting for the servers
            self._watcher = parts.watcher
            self.http_port = await _serve_http(self.settings, parts, stack)
            running = parts.start()
            self.started.set()
            log.info(
                "service.started",
                instance_id=self.settings.instance_id,
                http_port=self.http_port,
                pipelines=sorted(parts.servers.registry.current),
            )
            try:
                await _until_stopped(stop, running)
            finally:
                log.info("service.stopping")
                await parts.shutdown(running, self.settings.shutdown_drain_seconds)
                log.info("service.stopped")

    async def _assemble_when_reachable(
        self, stack: contextlib.AsyncExitStack, stop: asyncio.Event
    ) -> Components | None:
        """Connect to the servers and build the loops; while PostgreSQL or Kafka does not
        answer, say so, serve /healthz (alive) and /readyz (503: what it waits for), and try
        again with backoff, up to startup_wait_seconds. None: stopped meanwhile."""
        waiting = Waiting()
        runner = web.AppRunner(waiting.app(), access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.settings.http_host, self.settings.http_port).start()
            port = runner.addresses[0][1]

            def said(error: InfrastructureError, tries: int, delay: float) -> None:
                waiting.tried(str(error))
                log.warning(
                    "service.waiting",
                    waiting_for=str(error),
                    tries=tries,
                    retry_in=round(delay, 2),
                    http_port=port,
                )

            return await when_reachable(
                lambda attempt: assemble(self.settings, self.alert_routes, attempt),
                stack,
                give_up_after=self.settings.startup_wait_seconds,
                stop=stop,
                waiting=said,
            )
        finally:
            await runner.cleanup()


async def _serve_http(
    settings: Settings, parts: Components, stack: contextlib.AsyncExitStack
) -> int:
    servers = parts.servers

    async def readiness() -> dict[str, Any]:
        checks = await _readiness(servers, settings)
        checks["loops"] = dict(parts.watchdog.found) or "ok"
        return checks

    app = make_web_app(
        servers.store,
        readiness,
        servers.live,
        servers.registry,
        parts.applier,
        Tokens(settings.api_token_roles()),
        settings.task_log_dir,
    )
    runner = web.AppRunner(app, access_log=None)
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


async def _readiness(servers: Servers, settings: Settings) -> dict[str, Any]:
    checks: dict[str, Any] = {}
    try:
        async with asyncio.timeout(READINESS_TIMEOUT):
            await servers.store.ping()
        checks["postgres"] = "ok"
    except (TributaryError, TimeoutError) as exc:
        checks["postgres"] = f"unavailable: {exc}"
    try:
        async with asyncio.timeout(READINESS_TIMEOUT):
            await broker_answers(servers.producer)
        checks["kafka"] = "ok"
    except (TributaryError, TimeoutError) as exc:
        checks["kafka"] = f"unavailable: {exc!r}"
    if servers.live is None:
        checks["redis"] = "disabled"
    else:
        checks["redis"] = "ok" if await servers.live.ping() else "unavailable"
    return checks
