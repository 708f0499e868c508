"""What a failure to apply a batch means: the data's fault, a server away, or a bug."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from service.errors import InfrastructureError, RefusedByDatabase
from service.events import CloudEvent
from service.orchestrator.reliable import apply_reliably
from service.supervision import Backoff
from tests.support import ready

QUICK = Backoff(first=0.001, maximum=0.002)


class Applier:
    """Applies batches into ``applied``, failing as told for batches holding ``poison``."""

    def __init__(self, poison: CloudEvent | None, error: Exception, times: int = 10**9) -> None:
        self.poison = poison
        self.error = error
        self.times = times  # failures left
        self.applied: list[str] = []
        self.calls = 0

    async def apply(self, events: Sequence[CloudEvent], follow_up: object = None) -> None:
        self.calls += 1
        if self.times > 0 and (self.poison is None or self.poison in events):
            self.times -= 1
            raise self.error
        self.applied += [e.id for e in events]


EVENTS = [ready("d", f"2026-11-{day:02d}") for day in range(1, 9)]


async def test_a_bug_finds_the_poison_event_and_keeps_its_traceback() -> None:
    poison = EVENTS[5]
    applier = Applier(poison, KeyError("task_id"))
    refused = await apply_reliably(applier, EVENTS, tries=2, backoff=QUICK)  # type: ignore[arg-type]
    assert [r.event.id for r in refused] == [poison.id]
    assert "applying it failed every time: KeyError('task_id')" in refused[0].reason
    assert refused[0].traceback is not None
    assert "KeyError: 'task_id'" in refused[0].traceback
    assert sorted(applier.applied) == sorted(e.id for e in EVENTS if e is not poison)


async def test_a_bug_that_goes_away_refuses_nothing() -> None:
    applier = Applier(None, RuntimeError("flaky"), times=2)
    refused = await apply_reliably(applier, EVENTS, tries=5, backoff=QUICK)  # type: ignore[arg-type]
    assert refused == []
    assert applier.calls == 3  # the whole batch, each time: nothing was split
    assert sorted(applier.applied) == sorted(e.id for e in EVENTS)


async def test_a_server_away_is_waited_for_however_long_it_takes() -> None:
    applier = Applier(None, InfrastructureError("PostgreSQL is unavailable"), times=20)
    refused = await apply_reliably(applier, EVENTS, tries=2, backoff=QUICK)  # type: ignore[arg-type]
    assert refused == []  # 20 failures, far beyond the tries a bug gets: never a dead letter
    assert applier.calls == 21


@pytest.mark.parametrize("size", [1, 2, 8])
async def test_data_the_database_refuses_is_refused_alone_at_once(size: int) -> None:
    poison = EVENTS[size - 1]
    applier = Applier(poison, RefusedByDatabase("NUL in text"))
    refused = await apply_reliably(applier, EVENTS[:size], tries=5, backoff=QUICK)  # type: ignore[arg-type]
    assert [r.event.id for r in refused] == [poison.id]
    assert refused[0].reason == "the database refused it: NUL in text"
    assert refused[0].traceback is None
    assert len(applier.applied) == size - 1
