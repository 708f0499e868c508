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
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from service import metrics
from service.alerts import feishu
from service.alerts.rules import Alert, AlertRules
from service.observability import get_logger
from service.store.records import OutboxMessage

log = get_logger(__name__)

QUEUE_LIMIT = 1_000  # alerts waiting for a sink; beyond it the oldest are dropped
MAX_TRIES = 6
FIRST_BACKOFF = 0.5  # seconds; doubles per try, with jitter
REQUEST_TIMEOUT = 10.0  # seconds per delivery attempt


@dataclass(frozen=True, slots=True)
class Delivery:
    ok: bool
    retry: bool = False
    reason: str = ""


class FeishuSink:
    name = "feishu"

    def __init__(self, url: str, secret: str | None, min_interval: float = 0.25) -> None:
        self._url = url
        self._secret = secret
        self.min_interval = min_interval  # Feishu allows 5 per second per bot

    async def deliver(self, session: aiohttp.ClientSession, body: dict[str, Any]) -> Delivery:
        payload = feishu.signed_body(body, self._secret, int(time.time()))
        try:
            async with session.post(
                self._url, json=payload, timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
            ) as reply:
                if reply.status == 429 or reply.status >= 500:
                    return Delivery(False, retry=True, reason=f"HTTP {reply.status}")
                if reply.status != 200:
                    return Delivery(False, reason=f"HTTP {reply.status}")
                answer = await reply.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return Delivery(False, retry=True, reason=repr(exc))
        code = answer.get("code", answer.get("StatusCode", 0)) if isinstance(answer, dict) else -1
        if code == 0:
            return Delivery(True)
        message = f"code {code}: {answer.get('msg', '') if isinstance(answer, dict) else answer}"
        return Delivery(False, retry=code in feishu.RETRYABLE_CODES, reason=message)


class AlertSender:
    def __init__(
        self, sink: FeishuSink, dashboard_url: str, logs_url: str, fold_window: float
    ) -> None:
        self._sink = sink
        self._dashboard_url = dashboard_url
        self._logs_url = logs_url
        self._fold_window = fold_window
        self._rules = AlertRules()
        self._queue: asyncio.Queue[tuple[Alert, int]] = asyncio.Queue(QUEUE_LIMIT)
        self._folds: dict[tuple[str, str | None, str], list[Any]] = {}  # key -> [t0, extra, last]
        self.sent = 0

    def offer(self, messages: Sequence[OutboxMessage]) -> None:
        """Look at published events; queue the alerts they call for (never blocks)."""
        for message in messages:
            for alert in self._rules.alerts_for(orjson.loads(message.payload)):
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

    def _enqueue(self, alert: Alert, folded: int) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            metrics.ALERTS_DROPPED.inc()
            log.warning("alert.dropped", reason="queue full: the sink does not keep up")
        self._queue.put_nowait((alert, folded))

    async def run(self) -> None:
        async with aiohttp.ClientSession() as session:
            last_sent = 0.0
            while True:
                try:
                    alert, folded = await asyncio.wait_for(self._queue.get(), 1.0)
                except TimeoutError:
                    self.flush_windows()
                    continue
                wait = self._sink.min_interval - (time.monotonic() - last_sent)
                if wait > 0:
                    await asyncio.sleep(wait)
                await self._send(session, alert, folded)
                last_sent = time.monotonic()
                self.flush_windows()

    async def _send(self, session: aiohttp.ClientSession, alert: Alert, folded: int) -> None:
        body = feishu.card(
            alert, folded, _fill(self._dashboard_url, alert), _fill(self._logs_url, alert)
        )
        delay = FIRST_BACKOFF
        for attempt in range(1, MAX_TRIES + 1):
            delivery = await self._sink.deliver(session, body)
            if delivery.ok:
                metrics.ALERTS_SENT.labels(self._sink.name).inc()
                self.sent += 1
                log.info(
                    "alert.sent",
                    sink=self._sink.name,
                    kind=alert.kind,
                    run_id=alert.run_id,
                    folded=folded,
                )
                return
            if not delivery.retry or attempt == MAX_TRIES:
                why = "permanent" if not delivery.retry else "gave up"
                metrics.ALERTS_FAILED.labels(self._sink.name, why).inc()
                log.error(
                    "alert.failed",
                    sink=self._sink.name,
                    kind=alert.kind,
                    run_id=alert.run_id,
                    reason=delivery.reason,
                    tries=attempt,
                )
                return
            log.warning("alert.retry", sink=self._sink.name, reason=delivery.reason, delay=delay)
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay *= 2


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
