"""Two thousand hostile records among fifty good triggers: every bad one is dead-lettered once,
whole or as a bounded envelope, every good run succeeds, the consumer ends with no lag, and
the service never stops."""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import asyncpg
import orjson
import pytest

from tests.chaos.rig import (
    Deploy,
    check_marked,
    marked_triggers,
    readiness,
    report,
    succeeded,
)
from tests.support import ServiceProcess, completed, eventually, produce, ready, settled

pytestmark = pytest.mark.chaos
GOOD_RUNS = 50
HOSTILE = 2_000
HUGE = 5 * 1024 * 1024  # bytes: one record of this size, over the dead-letter topic's limit
HUGE_RECORD = b'{"data": "' + b"x" * HUGE + b'"}'
IGNORED_DATES = ("1899-12-31", "3000-01-01")  # valid triggers, refused by the date range


def _event(template: bytes, **changes: object) -> bytes:
    envelope = orjson.loads(template)
    envelope.update(changes)
    return orjson.dumps(envelope)


def _data(template: bytes, **changes: object) -> bytes:
    envelope = orjson.loads(template)
    envelope["data"].update(changes)
    return orjson.dumps(envelope)


TRIGGER = ready("marked_ready", "2025-01-01").to_bytes()
COMPLETION = completed("r-1", "first", 1).to_bytes()

# Each makes the n-th hostile record of its kind (n keeps them apart).
KINDS: list[Callable[[int], bytes]] = [
    lambda n: b"",
    lambda n: b"not json %d" % n,
    lambda n: b"\x00" * (n % 64 + 1),
    lambda n: b"[" * (5_000 + n),  # deeper than any parser should follow
    lambda n: b'"a string %d"' % n,
    lambda n: b"{}" + b" " * n,
    lambda n: b"\xff\xfe\xfd%d" % n,  # not UTF-8
    lambda n: _event(TRIGGER, type="com.example.unknown", id=f"u-{n}"),
    lambda n: _event(TRIGGER, specversion="0.3", id=f"v-{n}"),
    lambda n: _data(TRIGGER, dataset=f"nul\u0000{n}"),
    lambda n: _data(TRIGGER, dataset="x" * 501, partition=str(n)),
    lambda n: _data(TRIGGER, partition=""),
    lambda n: _data(TRIGGER, extra=n),
    lambda n: TRIGGER.replace(b'"marked_ready"', b'"\\ud800%d"' % n),  # a lone surrogate
    lambda n: _data(COMPLETION, attempt=2**63 + n),
    lambda n: _data(COMPLETION, outcome="exploded", task_id=f"t{n}"),
    lambda n: _data(COMPLETION, run_id=None, task_id=f"t{n}"),
]


def hostile_records() -> Iterator[tuple[bytes | None, bytes]]:
    kinds = itertools.cycle(KINDS)
    for n in range(HOSTILE - 1):
        yield (None if n % 3 else b"\x00key", next(kinds)(n))
    yield b"huge", HUGE_RECORD


def interleaved() -> list[tuple[bytes | None, bytes]]:
    good = marked_triggers(GOOD_RUNS)
    ignored = [(b"marked_ready", ready("marked_ready", d).to_bytes()) for d in IGNORED_DATES]
    records: list[tuple[bytes | None, bytes]] = []
    every = HOSTILE // GOOD_RUNS
    for n, record in enumerate(hostile_records()):
        records.append(record)
        if n % every == 0 and good:
            records.append(good.pop())
    return records + good + ignored


async def lag(service: ServiceProcess) -> int:
    url = f"http://127.0.0.1:{service.http_port()}/metrics"
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        text = await response.text()
    found = re.findall(r"^tributary_consumer_lag_messages\{.*\} (\S+)$", text, re.MULTILINE)
    assert found, "the lag is measured"
    return int(sum(float(value) for value in found))


async def test_hostile_input_is_dead_lettered_and_jams_nothing(
    database_url: str, kafka_bootstrap: str, marks: Path, deploy: Deploy
) -> None:
    service = await deploy(
        ["marked"],
        database_url=database_url,
        kafka=kafka_bootstrap,
        mark_seconds="0",
        max_parallel_tasks=8,
    )
    records = interleaved()
    await produce(
        kafka_bootstrap,
        service.setting("topic_triggers"),
        records,
        max_request_size=HUGE + 1024 * 1024,
    )
    produced = time.monotonic()
    conn = await asyncpg.connect(database_url)
    try:
        letters = "SELECT count(*) FROM dead_letters"
        await eventually(lambda: conn.fetchval(letters), lambda n: n >= HOSTILE, 120, "letters")
        await succeeded(conn, GOOD_RUNS, 120)
        all_done = time.monotonic() - produced
        await check_marked(conn, marks, GOOD_RUNS)
        assert await conn.fetchval(letters) == HOSTILE  # each once, none of the good ones
        huge = await conn.fetchrow("SELECT size, head FROM dead_letters WHERE key = 'huge'")
        assert huge["size"] == len(HUGE_RECORD)  # kept as an envelope: its size, hash, head
        assert huge["head"] == HUGE_RECORD[:1024].decode()
        nul_key = "SELECT count(*) FROM dead_letters WHERE key = $1"
        assert await conn.fetchval(nul_key, "\\u0000key") > 0  # a NUL in a key loses nothing
    finally:
        await conn.close()
    await eventually(
        lambda: settled(len(service.events("trigger.date_out_of_range"))),
        lambda n: n == len(IGNORED_DATES),
        30,
        "the triggers out of range to be refused",
    )
    await eventually(lambda: lag(service), lambda n: n == 0, 30, "no lag")
    status, _ = await readiness(service)
    assert status == 200
    assert service.alive
    assert not service.events("service.task_died")
    report(
        "hostile input",
        hostile=HOSTILE,
        largest=f"{HUGE // 2**20} MiB",
        good_runs=GOOD_RUNS,
        dead_letters=HOSTILE,
        all_through_after=f"{all_done:.1f} s",
    )
