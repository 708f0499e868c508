"""``/api/live``: state changes as server-sent events, for the dashboard's pages (and anyone).

Each change is a ``data:`` event (JSON: run_id, pipeline_id, state, and task_id and attempt
for a task); ``event: mode`` says where changes come from (``redis``, or ``postgres`` while
Redis is away). ``run_id`` or ``pipeline_id`` in the query keep only that run's or that
pipeline's changes. A comment every few seconds keeps proxies from closing a quiet stream.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

from service.dashboard.feed import Change, LiveFeed

KEEP_ALIVE = 15.0  # seconds of quiet before a comment line


class LiveEvents:
    def __init__(self, feed: LiveFeed) -> None:
        self._feed = feed

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/api/live", self.stream)]

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """State changes as they happen, as server-sent events."""
        run_id = request.query.get("run_id")
        pipeline_id = request.query.get("pipeline_id")
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",  # nginx: pass events on at once
            }
        )
        await response.prepare(request)
        with contextlib.suppress(ConnectionResetError):  # the page went away: nothing wrong
            await self._send(response, run_id, pipeline_id)
        return response

    async def _send(
        self, response: web.StreamResponse, run_id: str | None, pipeline_id: str | None
    ) -> None:
        async with self._feed.listen() as changes:
            await response.write(f"event: mode\ndata: {self._feed.mode}\n\n".encode())
            while True:
                try:
                    async with asyncio.timeout(KEEP_ALIVE):
                        item = await changes.get()
                except TimeoutError:
                    await response.write(b": still here\n\n")
                    continue
                if item is None:  # the service stops
                    return
                if isinstance(item, str):
                    await response.write(f"event: mode\ndata: {item}\n\n".encode())
                elif _wanted(item, run_id, pipeline_id):
                    await response.write(b"data: " + item.to_json() + b"\n\n")


def _wanted(change: Change, run_id: str | None, pipeline_id: str | None) -> bool:
    return (run_id is None or change.run_id == run_id) and (
        pipeline_id is None or change.pipeline_id == pipeline_id
    )
