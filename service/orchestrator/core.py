"""The orchestrator's parts, built together: the work hub, the batch applier, the claimer, the
timers and the scheduler, sharing one store, one pipeline registry and one way of building
events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from service.engine.triggers import ANY_SENSIBLE_DATE, BatchDates
from service.orchestrator.batch import DEFAULT_MAX_LOST_ATTEMPTS, BatchApplier
from service.orchestrator.claims import Claimer
from service.orchestrator.outgoing import Outgoing
from service.orchestrator.schedules import Scheduler
from service.orchestrator.timers import Timers
from service.orchestrator.work_hub import WorkHub
from service.orchestrator.writing import Writing
from service.pipelines import PipelineRegistry
from service.store import Store


@dataclass(frozen=True, slots=True)
class Orchestrator:
    hub: WorkHub
    applier: BatchApplier
    claimer: Claimer
    timers: Timers
    scheduler: Scheduler

    @classmethod
    def build(
        cls,
        *,
        store: Store,
        registry: PipelineRegistry,
        outgoing: Outgoing,
        actor: str,
        remote_by_default: bool = False,
        max_lost_attempts: int = DEFAULT_MAX_LOST_ATTEMPTS,
        dates: BatchDates = ANY_SENSIBLE_DATE,
        default_timeout: timedelta | None = None,
        run_dir_root: Path | None = None,
    ) -> Orchestrator:
        """``actor`` names this process in the transition log."""
        hub = WorkHub()
        writing = Writing(store, registry, outgoing, hub, actor)
        applier = BatchApplier(
            writing,
            remote_by_default=remote_by_default,
            max_lost_attempts=max_lost_attempts,
            dates=dates,
            default_timeout=default_timeout,
        )
        timers = Timers(writing, applier=applier)
        claimer = Claimer(
            store=store, registry=registry, outgoing=outgoing, hub=hub, run_dir_root=run_dir_root
        )
        scheduler = Scheduler(writing, runs=applier.runs, admission=applier.admission, dates=dates)
        return cls(hub, applier, claimer, timers, scheduler)
