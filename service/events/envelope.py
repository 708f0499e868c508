"""CloudEvents 1.0 envelopes (structured JSON mode): parsing with a clear reason, building.

What arrives from outside is parsed once by :func:`parse_event`: checked against the envelope
schema and its type's schema (``schemas/<type>.v1.json``, compiled once) and turned into a
typed payload. Events Tributary wrote itself (outbox rows) are read back with
:func:`decode_event`, without the schema checks.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import fastjsonschema
import orjson

from service.clock import utc_timestamp
from service.errors import EventError
from service.events.payloads import PAYLOAD_TYPES, Payload
from service.packaged import packaged_dir

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/cloudevents+json; charset=UTF-8"
EVENT_TYPES = tuple(PAYLOAD_TYPES)
_RESERVED = frozenset({"specversion", "id", "source", "type", "data", "time", "subject"})
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")

Validator = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class CloudEvent:
    id: str
    source: str
    payload: Payload
    time: str | None = None
    subject: str | None = None
    extensions: Mapping[str, str] = field(default_factory=dict)

    @property
    def type(self) -> str:
        return self.payload.TYPE

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
        body["data"] = self.payload.to_data()
        return body

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.to_json())


def random_uuid() -> str:
    """``str(uuid.uuid4())``, built without the ``UUID`` object: twice as fast, per event."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # the RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def new_event(
    payload: Payload,
    source: str,
    subject: str | None = None,
    trace_id: str | None = None,
    event_id: str | None = None,
) -> CloudEvent:
    """An event with the current UTC time and a fresh id (or ``event_id``, when the id must
    be derived from what the event is about, so that whoever builds it builds the same one)."""
    extensions = {"traceparent": f"00-{trace_id}-{os.urandom(8).hex()}-01"} if trace_id else {}
    return CloudEvent(
        id=event_id or random_uuid(),
        source=source,
        payload=payload,
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
    nul = _nul_at(body, "event")
    if nul is not None:  # PostgreSQL text cannot hold it: refused here, not by the database
        raise EventError(
            f"{event_type} event {body['id']!r}: {nul} contains a NUL character (\\u0000), "
            "which text cannot hold"
        )
    validators = _data_validators()
    if event_type not in validators:
        raise EventError(f"unknown event type {event_type!r} (known: {', '.join(EVENT_TYPES)})")
    try:
        validators[event_type](body["data"])
    except fastjsonschema.JsonSchemaValueException as exc:
        raise EventError(f"{event_type} event {body['id']!r}: {exc.message}") from None
    try:
        return _event(body)
    except ValueError as exc:  # a date the schema's format does not catch (2026-02-30)
        raise EventError(f"{event_type} event {body['id']!r}: {exc}") from None


def _nul_at(value: object, path: str) -> str | None:
    """Where the first string (or key) holding a NUL character is, if any."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                return f"a key of {path}"
            found = _nul_at(item, f"{path}.{key}")
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _nul_at(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def decode_event(raw: bytes) -> CloudEvent:
    """An event Tributary serialized itself (an outbox row): trusted, not validated again."""
    return _event(orjson.loads(raw))


def validate_data(event_type: str, data: Mapping[str, Any]) -> None:
    """Check ``data`` against its type's schema (what the service publishes, in tests)."""
    _data_validators()[event_type](dict(data))


def _event(body: dict[str, Any]) -> CloudEvent:
    return CloudEvent(
        id=body["id"],
        source=body["source"],
        payload=PAYLOAD_TYPES[body["type"]].from_data(body["data"]),
        time=body.get("time"),
        subject=body.get("subject"),
        extensions={k: v for k, v in body.items() if k not in _RESERVED and isinstance(v, str)},
    )


@cache
def _envelope_validator() -> Validator:
    return _compile("cloudevent.v1.json")


@cache
def _data_validators() -> dict[str, Validator]:
    return {event_type: _compile(f"{event_type}.v1.json") for event_type in EVENT_TYPES}


def _compile(file_name: str) -> Validator:
    schema = orjson.loads((packaged_dir("schemas") / file_name).read_bytes())
    validator: Validator = fastjsonschema.compile(schema)
    return validator
