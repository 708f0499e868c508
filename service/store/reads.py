"""What the API and the CLI read beyond runs and tasks: a run's history (every transition, who
made it and why), a task's attempts, datasets' partitions, dead letters. Mixed into
:class:`Store`; every row comes back as a plain mapping, ready for JSON."""

from __future__ import annotations

from typing import Any

import asyncpg


class ReadQueries:
    async def _fetch(self, name: str, *args: Any) -> list[asyncpg.Record]:
        raise NotImplementedError  # the Store's

    async def run_history(self, run_id: str) -> list[dict[str, Any]]:
        return [dict(row) for row in await self._fetch("run_transitions", run_id)]

    async def task_attempts(self, run_id: str, task_id: str) -> list[dict[str, Any]]:
        return [dict(row) for row in await self._fetch("task_attempt_history", run_id, task_id)]

    async def partitions(self, dataset: str | None, limit: int) -> list[dict[str, Any]]:
        return [dict(row) for row in await self._fetch("list_partitions", dataset, limit)]

    async def last_runs(
        self, pipeline_ids: list[str], count: int
    ) -> dict[str, list[dict[str, Any]]]:
        """Each pipeline's newest ``count`` runs: id, batch date, state."""
        found: dict[str, list[dict[str, Any]]] = {p: [] for p in pipeline_ids}
        for row in await self._fetch("last_runs", pipeline_ids, count):
            run = dict(row)
            found[run.pop("pipeline_id")].append(run)
        return found

    async def dead_letters(self, limit: int) -> list[dict[str, Any]]:
        return [dict(row) for row in await self._fetch("list_dead_letters", limit)]
