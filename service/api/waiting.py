"""What the HTTP port answers while the service waits for its servers at start-up: alive
(``/healthz`` 200, so an orchestrator does not restart it) but not ready (``/readyz`` 503
saying what it waits for, since when and how often it tried), and 503 for everything else."""

from __future__ import annotations

import time

from aiohttp import web

from service.api.responses import json_response, problem


class Waiting:
    def __init__(self) -> None:
        self.waiting_for = "starting"
        self.tries = 0
        self._since = time.monotonic()

    def tried(self, why: str) -> None:
        self.waiting_for = why
        self.tries += 1

    def app(self) -> web.Application:
        app = web.Application()
        app.add_routes(
            [
                web.get("/healthz", self.healthz),
                web.get("/readyz", self.readyz),
                web.route("*", "/{anything:.*}", self.elsewhere),
            ]
        )
        return app

    async def healthz(self, request: web.Request) -> web.Response:
        return json_response({"status": "alive", "starting": True})

    async def readyz(self, request: web.Request) -> web.Response:
        body = {
            "ready": False,
            "waiting_for": self.waiting_for,
            "tries": self.tries,
            "waiting_seconds": round(time.monotonic() - self._since, 1),
        }
        return json_response(body, status=503)

    async def elsewhere(self, request: web.Request) -> web.Response:
        return problem(503, "Service Unavailable", f"starting: waiting for {self.waiting_for}")
