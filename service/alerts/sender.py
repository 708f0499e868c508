"""Sending alerts: never noisy, never blocking.

- Fed from committed status events (the relay hands them over after publishing), so an alert
  never announces something that was rolled back.
- Alerts with the same (pipeline, task, kind) inside the fold window become one: the first
  goes at once, the rest are counted and sent as one summary when the window ends.
- A bounded queue: a dead or slow chat service drops the oldest alerts (counted) instead of
  growing memory or slowing runs.
- Each sink is rate limited and retried with exponential backoff and jitter on retryable
  answers; permanent errors (bad signature, bad request) are logged once and given up.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import aiohttp

from service import metrics
from service.alerts.rules import DEAD_LETTER, SERVICE, SERVICE_ERROR, Alert, AlertRules
from service.alerts.sinks import Message, Sink
from service.bus.dead_letter import DeadLetter
from service.clock import utc_timestamp
from service.events import CloudEvent
from service.observability import get_logger
from service.supervision import Backoff

log = get_logger(__name__)

QUEUE_LIMIT = 1_000  # alerts waiting for a sink; beyond it the oldest are dropped
MAX_TRIES = 6
FIRST_BACKOFF = 0.5  # seconds; doubles per try, with jitter
MAX_BACKOFF = 30.0  # seconds


class AlertSender:
    def __init__(
        self,
        routes: Mapping[str, Sequence[Sink]],
        dashboard_url: str,
        logs_url: str,
        fold_window: float,
        domain_of: Callable[[str], str | None] = lambda pipeline_id: None,
        first_backoff: float = FIRST_BACKOFF,
        max_tries: int = MAX_TRIES,
    ) -> None:
        """``routes``: pipeline id or domain -> sinks; ``default`` for everything else."""
        self._routes = routes
        self._domain_of = domain_of  # routing follows the deployment as it is now
        self._backoff = Backoff(first=first_backoff, maximum=MAX_BACKOFF)
        self._max_tries = max_tries
        self._dashboard_url = dashboard_url
        self._logs_url = logs_url
        self._fold_window = fold_window
        self._rules = AlertRules()
        sinks = {sink.name: sink for chosen in routes.values() for sink in chosen}
        self._queues: dict[str, asyncio.Queue[tuple[Alert, int]]] = {
            name: asyncio.Queue(QUEUE_LIMIT) for name in sinks
        }
        self._sinks = sinks
        self._folds: dict[tuple[str, str | None, str], list[Any]] = {}  # key -> [t0, extra, last]
        self.sent = 0

    def offer(self, events: Sequence[CloudEvent]) -> None:
        """Look at published events; queue the alerts they call for (never blocks)."""
        for event in events:
            for alert in self._rules.alerts_for(event.payload):
                self._fold(alert)

    def raise_alert(self, alert: Alert) -> None:
        """An alert not made from a status event (dead letters, the service's errors)."""
        self._fold(alert)

    def _fold(self, alert: Alert) -> None:
        now = time.monotonic()
        fold = self._folds.get(alert.fold_key)
        if fold is not None and now - fold[0] < self._fold_window:
            fold[1] += 1
            fold[2] = alert
            return
        if fold is not None and fold[1]:
            self._enqueue(fold[2], fold[1])
        self._folds[alert.fold_key] = [now, 0, alert]
        self._enqueue(alert, 0)

    def flush_windows(self) -> None:
        """Send the summaries of windows that have ended."""
        now = time.monotonic()
        for key, (started, extra, last) in list(self._folds.items()):
            if now - started >= self._fold_window:
                del self._folds[key]
                if extra:
                    self._enqueue(last, extra)

    def route(self, pipeline_id: str) -> Sequence[Sink]:
        domain = self._domain_of(pipeline_id)
        for key in (pipeline_id, domain, "default"):
            if key is not None and key in self._routes:
                return self._routes[key]
        return ()

    def _enqueue(self, alert: Alert, folded: int) -> None:
        for sink in self.route(alert.pipeline_id):
            queue = self._queues[sink.name]
            if queue.full():
                queue.get_nowait()
                metrics.ALERTS_DROPPED.inc()
                log.warning("alert.dropped", sink=sink.name, reason="the sink does not keep up")
            queue.put_nowait((alert, folded))

    async def run(self) -> None:
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(
                *(self._drain(session, sink) for sink in self._sinks.values()), self._windows()
            )

    async def _windows(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self._fold_window / 2))
            self.flush_windows()

    async def _drain(self, session: aiohttp.ClientSession, sink: Sink) -> None:
        queue = self._queues[sink.name]
        last_sent = 0.0
        while True:
            alert, folded = await queue.get()
            wait = sink.min_interval - (time.monotonic() - last_sent)
            if wait > 0:
                await asyncio.sleep(wait)
            await self._send(session, sink, alert, folded)
            last_sent = time.monotonic()

    async def _send(
        self, session: aiohttp.ClientSession, sink: Sink, alert: Alert, folded: int
    ) -> None:
        message = Message(
            alert, folded, _fill(self._dashboard_url, alert), _fill(self._logs_url, alert)
        )
        for attempt in range(1, self._max_tries + 1):
            delivery = await sink.deliver(session, message)
            if delivery.ok:
                metrics.ALERTS_SENT.labels(sink.name).inc()
                self.sent += 1
                log.info(
                    "alert.sent",
                    sink=sink.name,
                    kind=alert.kind,
                    run_id=alert.run_id,
                    folded=folded,
                )
                return
            if not delivery.retry or attempt == self._max_tries:
                why = "permanent" if not delivery.retry else "gave up"
                metrics.ALERTS_FAILED.labels(sink.name, why).inc()
                log.error(
                    "alert.failed",
                    sink=sink.name,
                    kind=alert.kind,
                    run_id=alert.run_id,
                    reason=delivery.reason,
                    tries=attempt,
                )
                return
            delay = self._backoff.delay(attempt, random.uniform(-1.0, 1.0))
            log.warning("alert.retry", sink=sink.name, reason=delivery.reason, delay=delay)
            await asyncio.sleep(delay)


def _fill(template: str, alert: Alert) -> str:
    """URL templates name {run_id}, {trace_id}, {pipeline_id}, {task_id}; nothing else."""
    values = {
        "run_id": alert.run_id,
        "trace_id": alert.trace_id,
        "pipeline_id": alert.pipeline_id,
        "task_id": alert.task_id or "",
    }
    for name, value in values.items():
        template = template.replace("{" + name + "}", value)
    return template


def dead_letter_alert(letter: DeadLetter) -> Alert:
    where = f"{letter.topic}[{letter.partition}]@{letter.offset}"
    return Alert(
        DEAD_LETTER,
        SERVICE,
        "-",
        "-",
        "",
        utc_timestamp(),
        task_id=letter.topic,
        error_snippet=letter.reason[-200:],
        reason=f"kept on the dead-letter topic: {where}",
    )


class ErrorAlerts(logging.Handler):
    """Turns the service's ERROR log lines into alerts, through the same folding.

    Lines that already are alerts' subject (rejected or dead-lettered input) or that come
    from the alerting itself (a failing sink must not alert about itself) are left out.
    """

    SKIP = frozenset({"event.rejected", "event.dead_lettered", "alert.failed", "alert.dropped"})

    def __init__(self, sender: AlertSender) -> None:
        super().__init__(level=logging.ERROR)
        self._sender = sender

    def emit(self, record: logging.LogRecord) -> None:
        event = record.msg if isinstance(record.msg, dict) else {"event": record.getMessage()}
        name = str(event.get("event", "error"))
        if name in self.SKIP or record.name.startswith("service.alerts"):
            return
        details = ", ".join(
            f"{k}={v}"
            for k, v in event.items()
            if k not in ("event", "timestamp", "level", "logger") and v is not None
        )
        self._sender.raise_alert(
            Alert(
                SERVICE_ERROR,
                SERVICE,
                str(event.get("run_id") or "-"),
                "-",
                str(event.get("trace_id") or ""),
                utc_timestamp(),
                task_id=name,
                error_snippet=details[-200:] or None,
                reason=f"{record.name}: {name}",
            )
        )
