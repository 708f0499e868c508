"""The part of a transaction that decides when things may start: run admission (a pipeline's
room and its batch dates), what new tasks wait for, and cron schedules. Mixed into
:class:`Transaction`."""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING

from service.engine.admission import WaitingRun
from service.store.queries import q

if TYPE_CHECKING:
    from service.store.migrations import Connection


class SchedulingQueries:
    conn: Connection

    async def lock_admission(self, pipeline_id: str) -> None:
        """Hold the pipeline's admission lock until the transaction ends."""
        await self.conn.execute(q("lock_admission"), pipeline_id)

    async def running_batch_dates(self, pipeline_id: str) -> list[date]:
        rows = await self.conn.fetch(q("running_batch_dates"), pipeline_id)
        return [row["batch_date"] for row in rows]

    async def waiting_runs(self, pipeline_id: str, limit: int) -> list[WaitingRun]:
        """Queued runs, the first of each batch date, oldest batch date first."""
        rows = await self.conn.fetch(q("waiting_runs"), pipeline_id, limit)
        return [WaitingRun(row["run_id"], row["batch_date"]) for row in rows]

    async def newest_waiting_version(self, pipeline_id: str) -> str | None:
        spec_hash: str | None = await self.conn.fetchval(q("newest_waiting_version"), pipeline_id)
        return spec_hash

    async def lock_schedule(
        self, pipeline_id: str, cron: str, timezone: str, now: datetime
    ) -> datetime:
        """The fire time up to which the schedule is handled, its row locked (created, or
        reset to ``now`` when its cron or timezone changed)."""
        handled: datetime = await self.conn.fetchval(
            q("lock_schedule"), pipeline_id, cron, timezone, now
        )
        return handled

    async def mark_schedule_handled(self, pipeline_id: str, until: datetime) -> None:
        await self.conn.execute(q("mark_schedule_handled"), pipeline_id, until)

    async def record_schedule_fire(self, pipeline_id: str, fire_at: datetime, run_id: str) -> None:
        await self.conn.execute(q("record_schedule_fire"), pipeline_id, fire_at, run_id)

    async def other_active_run(self, pipeline_id: str, batch_date: date, run_id: str) -> str | None:
        """Another queued or running run of the pipeline for that batch date, if any."""
        other: str | None = await self.conn.fetchval(
            q("other_active_run"), pipeline_id, batch_date, run_id
        )
        return other

    async def is_paused(self, pipeline_id: str) -> bool:
        paused: bool = await self.conn.fetchval(q("is_paused"), pipeline_id)
        return paused

    async def set_paused(self, pipeline_id: str, paused: bool, who: str, why: str) -> bool:
        """Pause or unpause; whether it was paused before."""
        was: bool = await self.conn.fetchval(q("set_paused"), pipeline_id, paused, who, why)
        return was

    async def set_run_version(self, run_id: str, spec_hash: str) -> None:
        await self.conn.execute(q("set_run_version"), run_id, spec_hash)
