"""What the API, the dashboard and the CLI read beyond runs and tasks: a run's history (every
transition, who made it and why), a task's attempts, datasets' partitions, dead letters, each
pipeline's figures and heat map, and the changes since a transition (the live feed's fallback).
Mixed into :class:`Store`; every row comes back as a plain mapping, ready for JSON."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg


class ReadQueries:
    async def _fetch(self, name: str, *args: Any) -> list[asyncpg.Record]:
        raise NotImplementedError  # the Store's

    async def _fetchval(self, name: str, *args: Any) -> Any:
        raise NotImplementedError  # the Store's

    async def run_history(self, run_id: str) -> list[dict[str, Any]]:
        return [dict(row) for row in await self._fetch("run_transitions", run_id)]

    async def task_attempts(self, run_id: str, task_id: str) -> list[dict[str, Any]]:
        return [dict(row) for row in await self._fetch("task_attempt_history", run_id, task_id)]

    async def run_outputs(self, run_id: str) -> list[dict[str, Any]]:
        """What the run's tasks produced, each output with what produced it."""
        return [dict(row) for row in await self._fetch("run_outputs", run_id)]

    async def failed_tasks(self, since: datetime, limit: int) -> list[dict[str, Any]]:
        """Tasks failed (or timed out) for good since ``since``, newest first."""
        return [dict(row) for row in await self._fetch("failed_tasks", since, limit)]

    async def partitions(self, dataset: str | None, limit: int) -> list[dict[str, Any]]:
        return [dict(row) for row in await self._fetch("list_partitions", dataset, limit)]

    async def newest_partitions(self, datasets: list[str]) -> dict[str, dict[str, Any]]:
        """The newest announced version of each of ``datasets`` that has one."""
        rows = await self._fetch("newest_partitions", datasets)
        return {row["dataset"]: dict(row) for row in rows}

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

    async def pipeline_figures(
        self, pipeline_ids: list[str], runs: int
    ) -> dict[str, dict[str, Any]]:
        """Over each pipeline's newest ``runs`` ended runs: ended, succeeded, p50 and p95
        duration (seconds)."""
        rows = await self._fetch("pipeline_figures", pipeline_ids, runs)
        return {row["pipeline_id"]: dict(row) for row in rows}

    async def newest_deadlines(self, pipeline_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Each pipeline's newest run with an SLA deadline: state, deadline, when missed."""
        rows = await self._fetch("newest_deadlines", pipeline_ids)
        return {row["pipeline_id"]: dict(row) for row in rows}

    async def heat_map(self, pipeline_id: str, dates: int) -> list[dict[str, Any]]:
        """The tasks of the newest run of each of the pipeline's newest ``dates`` batch dates."""
        return [dict(row) for row in await self._fetch("heat_map", pipeline_id, dates)]

    async def run_attempts(self, run_id: str) -> list[dict[str, Any]]:
        return [dict(row) for row in await self._fetch("run_attempts", run_id)]

    async def transitions_after(self, last_id: int, limit: int) -> list[dict[str, Any]]:
        return [dict(row) for row in await self._fetch("transitions_after", last_id, limit)]

    async def last_transition(self) -> int:
        found: int = await self._fetchval("last_transition")
        return found
