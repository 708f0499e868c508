"""Logging: structlog events rendered as JSON lines on stdout, timestamps in ISO 8601 UTC.

Log lines are events, not prose: a fixed event name plus fields. Context that applies to a
stretch of work (``run_id``, ``task_id``, ``attempt``, ``trace_id``) is bound with
:func:`bound` and appears on every line logged inside it.
"""

from __future__ import annotations

import logging
import logging.handlers
import re
import sys
from collections.abc import Iterable, Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

import orjson
import structlog


def _dumps(obj: Any, default: Any = None) -> str:
    return orjson.dumps(obj, default=default).decode()


DEBUG_FILE_BYTES = 10 * 1024 * 1024  # one rotating debug file, before it rolls over
DEBUG_FILE_COUNT = 5
MASK = "***"
_SECRET_KEY = re.compile(r"(password|passwd|secret|token|api[_-]?key|sign|authorization)", re.I)
# user:password@ in URLs, and token-like query parameters (Slack, DingTalk, WeCom, Feishu).
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^/\s:@]+:)[^@\s/]+(?=@)", re.I)
_QUERY_SECRET = re.compile(
    r"(?P<head>[?&](?:access_token|token|key|sign|secret|password)=)[^&\s\"']+", re.I
)
_HOOK_PATH = re.compile(r"(?P<head>/(?:hook|services)/)[A-Za-z0-9_/-]{8,}")


class Redactor:
    """Masks secrets in log events: known secret values, secret-named fields, passwords in
    URLs and token-like query parameters or webhook paths."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def text(self, value: str) -> str:
        for secret in self.secrets:
            value = value.replace(secret, MASK)
        value = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, value)
        value = _QUERY_SECRET.sub(lambda m: m.group("head") + MASK, value)
        return _HOOK_PATH.sub(lambda m: m.group("head") + MASK, value)

    def __call__(self, logger: Any, method: str, event: MutableMapping[str, Any]) -> Any:
        for key, value in event.items():
            if _SECRET_KEY.search(key) and value is not None and key != "event":
                event[key] = MASK
            elif isinstance(value, str):
                event[key] = self.text(value)
            elif isinstance(value, list):
                event[key] = [self.text(v) if isinstance(v, str) else v for v in value]
        return event


def configure_logging(
    level: str = "INFO",
    stream: TextIO | None = None,
    debug_file: Path | None = None,
    secrets: Iterable[str] = (),
    console: bool = False,
) -> None:
    """JSON lines: ``level`` and above on stdout (for a log pipeline; readable and coloured
    for people with ``console``), everything from DEBUG in ``debug_file`` (rotating, JSON)
    when given; secrets masked in both."""
    stream = stream or sys.stdout
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
    ]
    renderer = structlog.processors.JSONRenderer(serializer=_dumps)
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = _formatter(shared, secrets, renderer)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    if console:
        colors = getattr(stream, "isatty", lambda: False)()
        handler.setFormatter(
            _formatter(shared, secrets, structlog.dev.ConsoleRenderer(colors=colors))
        )
    handler.setLevel(level)
    handlers: list[logging.Handler] = [handler]
    if debug_file is not None:
        debug_file.parent.mkdir(parents=True, exist_ok=True)
        rotating = logging.handlers.RotatingFileHandler(
            debug_file, maxBytes=DEBUG_FILE_BYTES, backupCount=DEBUG_FILE_COUNT
        )
        rotating.setFormatter(formatter)
        rotating.setLevel(logging.DEBUG)
        handlers.append(rotating)
    root = logging.getLogger()
    for previous in root.handlers:
        if previous not in handlers:
            previous.close()  # a reconfiguration must not leak the old file handles
    root.handlers[:] = handlers
    root.setLevel(logging.DEBUG if debug_file is not None else level)
    # aiokafka reports every reconnect attempt at WARNING/ERROR; keep it but not its chatter.
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, logging.getLevelName(level)))


def _formatter(
    shared: list[structlog.types.Processor],
    secrets: Iterable[str],
    renderer: structlog.types.Processor,
) -> structlog.stdlib.ProcessorFormatter:
    """Lines of the stdlib's loggers and ours alike: exceptions formatted, secrets masked."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            Redactor(secrets),
            renderer,
        ],
    )


@contextmanager
def bound(**context: Any) -> Iterator[None]:
    """Bind fields to every log line emitted inside the block (task-local under asyncio)."""
    with structlog.contextvars.bound_contextvars(**context):
        yield


get_logger = structlog.stdlib.get_logger
