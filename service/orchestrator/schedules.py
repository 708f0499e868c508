"""Cron schedules: each fire of a deployed pipeline's schedule starts one run.

Every replica looks, once per timer round; the pipeline's row in ``schedules`` is locked while
one of them fires it, and records up to which fire time everything is handled, so a fire is
never missed by a restart nor run twice by two replicas (``schedule_fires`` has one row per
fire, and the run's trigger key is the fire time). Which missed fires run after downtime is
the engine's call (``engine/schedule.py``); a fire less than ``ON_TIME`` late is on time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from service.clock import utc_now
from service.engine.schedule import due_fires
from service.engine.triggers import ANY_SENSIBLE_DATE, BatchDates, Refusal, run_for_fire
from service.observability import get_logger
from service.orchestrator.admission import Admission
from service.orchestrator.outcome import BatchOutcome
from service.orchestrator.runs import RunStarter, new_trace_id
from service.orchestrator.writing import Writing
from service.spec.cron import next_fire_times
from service.spec.models import Schedule
from service.spec.pipeline import Pipeline

log = get_logger(__name__)

ON_TIME = timedelta(minutes=5)  # a fire later than this was missed (the service was down)
NEVER = datetime.max.replace(tzinfo=UTC)
PAUSED_LOOK_AGAIN = timedelta(seconds=5)  # how soon a paused schedule is looked at again


class Scheduler:
    def __init__(
        self,
        writing: Writing,
        *,
        runs: RunStarter,
        admission: Admission,
        dates: BatchDates = ANY_SENSIBLE_DATE,
    ) -> None:
        self._writing = writing
        self._registry = writing.registry
        self._runs = runs
        self._admission = admission
        self._dates = dates
        # pipeline -> (the version looked at, its next fire time): nothing to do before it.
        self._next: dict[str, tuple[str, datetime]] = {}

    async def fire_due(self, now: datetime | None = None) -> int:
        """Start the runs of every schedule fire that is due; how many runs started."""
        now = now or utc_now()
        started = 0
        for pipeline in list(self._registry.current.values()):
            schedule = pipeline.spec.triggers.schedule
            if schedule is None:
                continue
            known = self._next.get(pipeline.id)
            if known is not None and known[0] == pipeline.spec_hash and now < known[1]:
                continue
            started += await self._fire(pipeline, schedule, now)
        return started

    async def _fire(self, pipeline: Pipeline, schedule: Schedule, now: datetime) -> int:
        outcome = BatchOutcome()
        async with self._writing.working(outcome) as ws:
            tx = ws.tx
            if await tx.is_paused(pipeline.id):
                # Its fires are not handled: on unpause, the catch-up policy decides.
                self._next[pipeline.id] = (pipeline.spec_hash, now + PAUSED_LOOK_AGAIN)
                return 0
            handled = await tx.lock_schedule(pipeline.id, schedule.cron, schedule.timezone, now)
            fires = due_fires(
                schedule.cron,
                schedule.timezone,
                handled_until=handled,
                now=now,
                catchup=schedule.catchup,
                max_catchup=schedule.max_catchup,
                on_time=ON_TIME,
            )
            for fire_at in fires.run:
                start = run_for_fire(pipeline, fire_at, self._dates)
                if isinstance(start, Refusal):
                    log.error(
                        f"schedule.{start.kind}", pipeline_id=pipeline.id, reason=start.reason
                    )
                    continue
                run_id = await self._runs.create(ws, start, new_trace_id())
                if run_id is not None:
                    await tx.record_schedule_fire(pipeline.id, fire_at, run_id)
            await tx.mark_schedule_handled(pipeline.id, fires.handled_until)
        if fires.skipped:
            log.warning(
                "schedule.missed_fires_skipped",
                pipeline_id=pipeline.id,
                skipped=fires.skipped,
                catchup=schedule.catchup,
            )
        await self._admission.admit(outcome.to_admit)
        upcoming = next_fire_times(schedule.cron, schedule.timezone, max(now, handled), 1)
        self._next[pipeline.id] = (pipeline.spec_hash, upcoming[0] if upcoming else NEVER)
        return outcome.runs_created
