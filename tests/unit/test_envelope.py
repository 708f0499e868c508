from __future__ import annotations

from typing import Any

import orjson
import pytest

from service.bus.envelope import DATASET_READY, new_event, parse_event, validate_data
from service.errors import EventError


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
    assert event.data["dataset"] == "orders_raw"


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
    ],
)
def test_bad_events_say_what_is_wrong(raw: bytes | None, reason: str) -> None:
    with pytest.raises(EventError) as caught:
        parse_event(raw)
    assert reason in str(caught.value)


def test_new_events_round_trip_with_their_trace() -> None:
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    event = new_event(DATASET_READY, "urn:t", {"dataset": "d", "partition": "p"}, trace_id=trace)
    parsed = parse_event(event.to_bytes())
    assert parsed.id == event.id
    assert parsed.trace_id == trace
    assert parsed.time is not None
    assert parsed.time.endswith("Z")


def test_published_data_is_checked_against_its_schema() -> None:
    with pytest.raises(ValueError, match="must contain"):
        validate_data("run.status", {"run_id": "r"})
