"""The pipeline watcher: reloads the deployed pipelines when the directory's files change, or
when asked (SIGHUP). A broken new version is refused by the registry; the last valid one runs on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from service.observability import get_logger
from service.pipelines import PipelineRegistry
from service.spec.loader import directory_signature
from service.supervision import Loop

log = get_logger(__name__)


class PipelineWatcher(Loop):
    name = "pipeline-watcher"

    def __init__(
        self,
        *,
        registry: PipelineRegistry,
        directory: Path,
        interval: float,
        after_load: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(idle_wait=interval or None)  # 0: only on request
        self._registry = registry
        self._after_load = after_load  # e.g. create the topics of new worker queues
        self._directory = directory
        self._signature = directory_signature(directory)
        self._requested = False
        self.reloads = 0  # since start

    def request_reload(self) -> None:
        self._requested = True
        self.wake()

    async def step(self) -> bool:
        requested = self._requested
        signature = await asyncio.to_thread(directory_signature, self._directory)
        if requested or signature != self._signature:
            log.info("pipelines.reloading", requested=requested)
            await self._registry.load(self._directory)  # kept requested if this fails
            if self._after_load is not None:
                await self._after_load()
            self._signature, self._requested = signature, False
            self.reloads += 1
        return False
