"""What a failure to apply a batch means: wait, refuse one event, or find the poison.

- PostgreSQL away, a lost race (retriable errors): the same batch is tried again, with backoff,
  until it passes. Nothing is acknowledged meanwhile.
- PostgreSQL refuses the data for good (:class:`RefusedByDatabase`): the batch is halved until
  the event it refuses is alone; that one is refused (a dead letter) and the rest apply.
- Anything else is a bug, never a verdict on the input: logged with its traceback (an ERROR, so
  it alerts) and tried again, ``tries`` times. A batch that still fails is halved the same way;
  an event that fails alone every time is a poison event, refused with the traceback, so that
  the input moves on and the event is kept for a fix and a replay.
"""

from __future__ import annotations

import asyncio
import random
import traceback
from collections.abc import Sequence
from dataclasses import dataclass

from service.errors import RefusedByDatabase, TributaryError
from service.events import CloudEvent
from service.observability import get_logger
from service.orchestrator.batch import BatchApplier
from service.orchestrator.writing import FollowUp
from service.supervision import DEFAULT_BACKOFF, Backoff, Outage

log = get_logger(__name__)

POISON_TRIES = 5  # times a batch that fails for a reason of its own is applied before halving
TRACEBACK_CHARS = 4_000  # of a poison event's traceback, kept with its dead letter


@dataclass(frozen=True, slots=True)
class Refused:
    event: CloudEvent
    reason: str
    traceback: str | None = None  # when a bug, not the data, kept it from applying


async def apply_reliably(
    applier: BatchApplier,
    events: Sequence[CloudEvent],
    *,
    tries: int = POISON_TRIES,
    backoff: Backoff = DEFAULT_BACKOFF,
    follow_up: FollowUp | None = None,
) -> list[Refused]:
    """Apply ``events`` (with ``follow_up`` in each transaction); return those that can never
    apply, each with the reason."""
    outage = Outage("apply", backoff)
    failures = 0
    while True:
        try:
            await applier.apply(events, follow_up)
        except RefusedByDatabase as exc:
            failure: BaseException = exc
            break
        except Exception as exc:
            if isinstance(exc, TributaryError) and exc.retriable:
                await asyncio.sleep(outage.failed(exc))
                continue
            failures += 1
            if _bug(exc, events, failures, tries):
                failure = exc
                break
            await asyncio.sleep(backoff.delay(failures, random.uniform(-1.0, 1.0)))
            continue
        outage.recovered()
        return []
    if len(events) > 1:
        middle = len(events) // 2
        halves = (events[:middle], events[middle:])
        first, rest = [
            await apply_reliably(applier, h, tries=tries, backoff=backoff, follow_up=follow_up)
            for h in halves
        ]
        return first + rest
    return [_refuse(events[0], failure)]


def _bug(error: BaseException, events: Sequence[CloudEvent], failures: int, tries: int) -> bool:
    """Log a failure that is not the input's fault; True once it has happened ``tries`` times."""
    log.error(
        "apply.failed",
        error=repr(error),
        events=len(events),
        failures=failures,
        exc_info=error,
    )
    return failures >= tries


def _refuse(event: CloudEvent, failure: BaseException) -> Refused:
    if isinstance(failure, RefusedByDatabase):
        refused = Refused(event, f"the database refused it: {failure}")
    else:
        trace = "".join(traceback.format_exception(failure))[-TRACEBACK_CHARS:]
        refused = Refused(event, f"applying it failed every time: {failure!r}", trace)
    log.error(
        "event.rejected",
        event_id=event.id,
        event_type=event.type,
        source=event.source,
        reason=refused.reason,
    )
    return refused
