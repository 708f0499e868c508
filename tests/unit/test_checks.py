"""Checks: how often one is poked (its interval, grown by its backoff, never past its max),
and how a run's values are quoted into each kind."""

from __future__ import annotations

from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from service.engine.triggers import task_waits
from service.spec.loader import pipeline_from_data
from service.store.records import DueCheck


def due(pokes: int, poke: float = 60.0, backoff: float = 2.0, most: float = 600.0) -> DueCheck:
    return DueCheck("r", "t", 0, {"kind": "path"}, poke, backoff, most, pokes, 0)


def test_pokes_back_off_up_to_their_max() -> None:
    assert [due(n).next_wait() for n in range(6)] == [60, 120, 240, 480, 600, 600]
    assert [due(n, backoff=1.0).next_wait() for n in range(3)] == [60, 60, 60]


@given(
    pokes=st.integers(0, 10_000),
    poke=st.floats(0.01, 3600),
    backoff=st.floats(1.0, 10.0),
)
def test_the_next_poke_is_never_sooner_than_the_interval_nor_later_than_the_max(
    pokes: int, poke: float, backoff: float
) -> None:
    wait = due(pokes, poke, backoff, most=max(poke, 7200.0)).next_wait()
    assert poke <= wait <= max(poke, 7200.0)


def test_values_in_a_check_are_quoted_for_where_they_go() -> None:
    pipeline = pipeline_from_data(
        {
            "id": "p",
            "params": {"who": {"type": "string", "default": "o'brien & co"}},
            "tasks": [
                {
                    "id": "t",
                    "command": ["true"],
                    "wait_for": [
                        {"check": "test -e /in/{params.who}", "shell": True},
                        {"sql": "SELECT {params.who} = 'x'", "database": "wh"},
                        {"url": "https://m/p/{params.who}/{batch_date}"},
                        {"path": "/in/{batch_date:%Y/%m/%d}", "marker": "_SUCCESS"},
                    ],
                }
            ],
        },
        "p.yaml",
    )
    params = {"who": "o'brien & co"}
    _, checks = task_waits(pipeline, "r", date(2026, 11, 21), params)
    probes = [c.probe for c in checks]
    assert probes[0]["argv"] == ["/bin/sh", "-c", "test -e /in/'o'\"'\"'brien & co'"]
    assert probes[1]["sql"] == "SELECT 'o''brien & co' = 'x'"
    assert probes[2]["url"] == "https://m/p/o%27brien%20%26%20co/2026-11-21"
    assert probes[3] == {"kind": "path", "path": "/in/2026/11/21", "marker": "_SUCCESS"}
    assert [c.timeout_seconds for c in checks] == [6 * 3600.0] * 4
