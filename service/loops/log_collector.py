"""The log collector: remote workers' attempt logs (``task.log`` pieces from the logs topic)
written into this service's ``task_log_dir``, each piece at its offset — a piece delivered
twice writes the same bytes again — so the API serves a remote attempt's log like a local
one's. One replica takes each partition (a consumer group of its own); replicas that share
``task_log_dir`` serve every log.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from pathlib import Path

from aiokafka import AIOKafkaConsumer

from service.bus.kafka import broker_errors
from service.errors import EventError
from service.events import TaskLog, parse_event
from service.observability import get_logger
from service.supervision import Loop

log = get_logger(__name__)

POLL_TIMEOUT_MS = 500
# A run or task id that is a plain name: nothing that could climb out of task_log_dir.
SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$")


class LogCollector(Loop):
    name = "log-collector"

    def __init__(self, *, consumer: AIOKafkaConsumer, log_dir: Path) -> None:
        super().__init__(idle_wait=0)  # getmany waits for records itself
        self._consumer = consumer
        self._log_dir = log_dir
        self.pieces = 0

    async def step(self) -> bool:
        with broker_errors("the logs topic"):
            batches = await self._consumer.getmany(timeout_ms=POLL_TIMEOUT_MS, max_records=500)
        for records in batches.values():
            for record in records:
                self._write(record.value, record.offset)
        if batches:
            with broker_errors("the logs topic"):
                await self._consumer.commit()
        return bool(batches)

    def _write(self, value: bytes | None, offset: int) -> None:
        """Write one piece where it belongs; a piece that cannot be (bad JSON, a strange id,
        bad base64) is logged and passed over: a log is worth less than the topic moving."""
        try:
            event = parse_event(value or b"")
            piece = event.payload
            if not isinstance(piece, TaskLog):
                raise EventError(f"the logs topic carries task.log, not {event.type!r}")
            if not (SAFE.match(piece.run_id) and SAFE.match(piece.task_id)) or ".." in (
                piece.run_id + piece.task_id
            ):
                raise EventError("a run or task id that is not a plain name")
            data = base64.b64decode(piece.data, validate=True)
        except (EventError, binascii.Error) as exc:
            log.warning("log.piece_refused", offset=offset, reason=str(exc))
            return
        path = self._log_dir / piece.run_id / piece.task_id / f"{piece.attempt}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.pwrite(descriptor, data, piece.offset)
        finally:
            os.close(descriptor)
        self.pieces += 1
