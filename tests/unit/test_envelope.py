from __future__ import annotations

import dataclasses
import re
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.clock import parse_timestamp
from service.engine.states import RunState, TaskState
from service.errors import EventError
from service.events import (
    PAYLOAD_TYPES,
    CloudEvent,
    DatasetReady,
    RunRequested,
    RunStatus,
    TaskCompleted,
    TaskStatus,
    decode_event,
    new_event,
    parse_event,
    validate_data,
)
from service.events.envelope import random_uuid

DATASET_READY = DatasetReady.TYPE


def envelope(**overrides: Any) -> bytes:
    body: dict[str, Any] = {
        "specversion": "1.0",
        "id": "e-1",
        "source": "urn:test",
        "type": DATASET_READY,
        "data": {"dataset": "orders_raw", "partition": "2026-11-21"},
    }
    body.update(overrides)
    return orjson.dumps({k: v for k, v in body.items() if v is not None})


def test_a_valid_event_parses() -> None:
    event = parse_event(envelope(time="2026-11-21T10:00:00Z"))
    assert event.id == "e-1"
    assert event.payload == DatasetReady("orders_raw", "2026-11-21")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "empty message"),
        (b"not json", "not JSON"),
        (b"[1, 2]", "expected a JSON object, got list"),
        (envelope(id=None), "not a CloudEvent: event must contain"),
        (envelope(specversion="0.3"), "not a CloudEvent"),
        (envelope(type="made.up"), "unknown event type 'made.up'"),
        (
            envelope(data={"dataset": "x"}),
            "dataset.ready event 'e-1': data must contain ['partition']",
        ),
        (envelope(data={"dataset": "x", "partition": 5}), "data.partition must be string"),
        (envelope(data={"dataset": "x", "partition": "p", "extra": 1}), "must not contain"),
        (
            envelope(type="run.requested", data={"pipeline_id": "p", "batch_date": "2026-02-30"}),
            "run.requested event 'e-1'",
        ),
        (
            envelope(data={"dataset": "a\x00b", "partition": "p"}),
            "dataset.ready event 'e-1': event.data.dataset contains a NUL character",
        ),
        (envelope(subject="\x00"), "event.subject contains a NUL character"),
    ],
)
def test_bad_events_say_what_is_wrong(raw: bytes | None, reason: str) -> None:
    with pytest.raises(EventError) as caught:
        parse_event(raw)
    assert reason in str(caught.value)


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def parsed_or_reason(raw: bytes) -> CloudEvent | str:
    """The event, or the reason it is refused (any other exception fails the test)."""
    try:
        return parse_event(raw)
    except EventError as exc:
        return str(exc)


@given(st.binary(max_size=300))
def test_any_bytes_parse_or_are_refused_with_a_reason(raw: bytes) -> None:
    assert parsed_or_reason(raw)


@given(
    st.sampled_from(sorted(PAYLOAD_TYPES)),
    st.dictionaries(st.sampled_from(["dataset", "partition", "run_id", "task_id"]), JSON),
    st.dictionaries(st.text(max_size=8), JSON, max_size=3),
)
def test_any_json_parses_or_is_refused_and_what_parses_holds_no_nul(
    event_type: str, data: dict[str, Any], extensions: dict[str, Any]
) -> None:
    raw = orjson.dumps({**extensions, **orjson.loads(envelope(type=event_type, data=data))})
    parsed = parsed_or_reason(raw)
    assert parsed
    if not isinstance(parsed, str):
        assert b"\\u0000" not in raw


def test_new_events_round_trip_with_their_trace() -> None:
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    event = new_event(DatasetReady("d", "p"), "urn:t", trace_id=trace)
    parsed = parse_event(event.to_bytes())
    assert parsed.id == event.id
    assert parsed.trace_id == trace
    assert parsed.time is not None
    assert parsed.time.endswith("Z")


def test_published_data_is_checked_against_its_schema() -> None:
    with pytest.raises(ValueError, match="must contain"):
        validate_data("run.status", {"run_id": "r"})


EXAMPLES = [
    DatasetReady("orders_raw", "2026-11-21", version="v3"),
    RunStatus(
        "r1",
        "orders_daily",
        date(2026, 11, 21),
        RunState.QUEUED,
        None,  # created: the contract's required null
        "orders_raw 2026-11-21 is ready",
        "t" * 32,
        parse_timestamp("2026-11-21T10:00:00Z"),
        spec_hash="abc",
    ),
    RunRequested("orders_daily", date(2026, 11, 21), {"region": "north"}, "ops", "backfill"),
    TaskCompleted(
        "r1",
        "a",
        2,
        TaskState.FAILED,
        exit_code=3,
        started_at=parse_timestamp("2026-11-21T10:00:00.250Z"),
        ended_at=parse_timestamp("2026-11-21T10:00:01.500Z"),
        retryable=False,
    ),
    TaskStatus(
        "r1",
        "orders_daily",
        "a",
        1,
        date(2026, 11, 21),
        TaskState.UP_FOR_RETRY,
        TaskState.RUNNING,
        "attempt 1 ended failed",
        "t" * 32,
        parse_timestamp("2026-11-21T10:00:01.500Z"),
        max_attempts=3,
        retry_at=parse_timestamp("2026-11-21T10:00:11.500Z"),
    ),
]


@pytest.mark.parametrize("payload", EXAMPLES, ids=lambda p: p.TYPE)
def test_each_type_is_its_schema_and_round_trips(payload: Any) -> None:
    event = new_event(payload, "urn:t")
    validate_data(event.type, event.to_json()["data"])
    assert parse_event(event.to_bytes()).payload == payload
    assert decode_event(event.to_bytes()).payload == payload


def test_a_required_null_stays_and_optional_nones_are_left_out() -> None:
    created = dataclasses.replace(EXAMPLES[4], previous_state=None, retry_at=None)
    data = created.to_data()
    assert data["previous_state"] is None  # the contract requires the key
    assert "retry_at" not in data
    assert "exit_code" not in data
    assert EXAMPLES[4].to_data()["retry_at"] == "2026-11-21T10:00:11.500Z"


def test_every_schema_has_a_type() -> None:
    schemas = Path(__file__).resolve().parents[2] / "schemas"
    found = {p.name.removesuffix(".v1.json") for p in schemas.glob("*.v1.json")} - {"cloudevent"}
    assert found == set(PAYLOAD_TYPES)


def test_random_ids_are_version_4_uuids_in_their_canonical_text() -> None:
    ids = [random_uuid() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
        assert str(parsed) == text


def test_an_event_with_a_trace_gets_a_fresh_span_in_its_traceparent() -> None:
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    spans = {
        new_event(DatasetReady("d", "p"), "urn:t", trace_id=trace).extensions["traceparent"]
        for _ in range(50)
    }
    assert len(spans) == 50
    assert all(re.fullmatch(rf"00-{trace}-[0-9a-f]{{16}}-01", span) for span in spans)
