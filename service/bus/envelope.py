"""CloudEvents 1.0 envelopes (structured JSON mode): parsing with a clear reason, building.

Each event type's ``data`` has a JSON Schema in ``schemas/<type>.v1.json``, compiled once.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any

import fastjsonschema
import orjson

from service.errors import EventError
from service.resources import resource_dir

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/cloudevents+json; charset=UTF-8"

DATASET_READY = "dataset.ready"
RUN_REQUESTED = "run.requested"
TASK_COMPLETED = "task.completed"
TASK_REQUESTED = "task.requested"
TASK_HEARTBEAT = "task.heartbeat"
RUN_DEADLINE_MISSED = "run.deadline_missed"
RUN_STATUS = "run.status"
TASK_STATUS = "task.status"
DATASET_PRODUCED = "dataset.produced"
EVENT_TYPES = (
    DATASET_READY,
    RUN_REQUESTED,
    TASK_COMPLETED,
    RUN_STATUS,
    TASK_STATUS,
    DATASET_PRODUCED,
    TASK_REQUESTED,
    TASK_HEARTBEAT,
    RUN_DEADLINE_MISSED,
)

_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")

Validator = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class CloudEvent:
    id: str
    source: str
    type: str
    data: Mapping[str, Any]
    time: str | None = None
    subject: str | None = None
    extensions: Mapping[str, str] = field(default_factory=dict)

    @property
    def trace_id(self) -> str | None:
        """The W3C trace id of the ``traceparent`` extension, when the producer sent one."""
        match = _TRACEPARENT.match(self.extensions.get("traceparent", ""))
        return match.group(1) if match else None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "specversion": SPEC_VERSION,
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "datacontenttype": "application/json",
        }
        if self.time is not None:
            body["time"] = self.time
        if self.subject is not None:
            body["subject"] = self.subject
        body.update(self.extensions)
        body["data"] = self.data
        return body

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.to_json())


def new_event(
    event_type: str,
    source: str,
    data: Mapping[str, Any],
    subject: str | None = None,
    trace_id: str | None = None,
) -> CloudEvent:
    """A fresh event with a unique id and the current UTC time."""
    extensions = {"traceparent": f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"} if trace_id else {}
    return CloudEvent(
        id=str(uuid.uuid4()),
        source=source,
        type=event_type,
        data=data,
        time=utc_timestamp(),
        subject=subject,
        extensions=extensions,
    )


def parse_event(raw: bytes | None) -> CloudEvent:
    """Decode and validate one message; :class:`EventError` says what is wrong and where."""
    if raw is None:
        raise EventError("empty message (no value)")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise EventError(f"not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise EventError(f"not a CloudEvent: expected a JSON object, got {type(body).__name__}")
    try:
        _envelope_validator()(body)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise EventError(f"not a CloudEvent: {exc.message.replace('data', 'event', 1)}") from None
    event_type = body["type"]
    validators = _data_validators()
    if event_type not in validators:
        raise EventError(f"unknown event type {event_type!r} (known: {', '.join(EVENT_TYPES)})")
    try:
        validators[event_type](body["data"])
    except fastjsonschema.JsonSchemaValueException as exc:
        raise EventError(f"{event_type} event {body['id']!r}: {exc.message}") from None
    reserved = {"specversion", "id", "source", "type", "data", "time", "subject"}
    return CloudEvent(
        id=body["id"],
        source=body["source"],
        type=event_type,
        data=body["data"],
        time=body.get("time"),
        subject=body.get("subject"),
        extensions={k: v for k, v in body.items() if k not in reserved and isinstance(v, str)},
    )


def validate_data(event_type: str, data: Mapping[str, Any]) -> None:
    """Check ``data`` against its type's schema (used on what the service publishes, in tests)."""
    _data_validators()[event_type](dict(data))


def utc_timestamp(moment: datetime | None = None) -> str:
    """RFC 3339 in UTC with millisecond precision: ``2026-11-21T14:22:33.123Z``."""
    moment = moment or datetime.now(UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@cache
def _envelope_validator() -> Validator:
    return _compile("cloudevent.v1.json")


@cache
def _data_validators() -> dict[str, Validator]:
    return {event_type: _compile(f"{event_type}.v1.json") for event_type in EVENT_TYPES}


def _compile(file_name: str) -> Validator:
    schema = orjson.loads((resource_dir("schemas") / file_name).read_bytes())
    validator: Validator = fastjsonschema.compile(schema)
    return validator
