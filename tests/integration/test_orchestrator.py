"""The orchestrator against the real database: one transaction per batch, exactly once."""

from __future__ import annotations

import asyncio

import asyncpg
import orjson

from service.events import validate_data
from service.orchestrator.reliable import apply_reliably
from service.store.records import ClaimBudget
from tests.support import LEASE, Orchestrate, completed, eventually, ready, requested


async def states(pg: asyncpg.Connection) -> dict[str, str]:
    rows = await pg.fetch("SELECT task_id, state FROM task_instances")
    return {r["task_id"]: r["state"] for r in rows}


async def test_a_partition_makes_one_run_whatever_is_redelivered(
    orchestrate: Orchestrate, pg: asyncpg.Connection
) -> None:
    rig = await orchestrate("orders")
    event = ready("orders_raw", "2026-11-21")
    first = await rig.apply([event])
    assert (first.runs_created, first.tasks_queued, first.outbox_written) == (1, 1, 3)
    again = await rig.apply([event, ready("orders_raw", "2026-11-21")])
    assert again.duplicates == 1
    assert again.runs_created == 0
    assert await pg.fetchval("SELECT count(*) FROM runs") == 1
    tasks = rig.registry.current["orders"].graph.order
    assert await states(pg) == {t: "queued" if t == "ingest" else "pending" for t in tasks}
    for row in await pg.fetch("SELECT payload FROM outbox ORDER BY id"):
        body = orjson.loads(row["payload"])
        validate_data(body["type"], body["data"])


async def test_claim_complete_and_advance(orchestrate: Orchestrate, pg: asyncpg.Connection) -> None:
    rig = await orchestrate("orders")
    await rig.apply([ready("orders_raw", "2026-11-21")])
    [claim] = await rig.claim("w1")
    assert (claim.task_id, claim.attempt) == ("ingest", 1)
    assert await rig.claim("w1") == []
    outcome = await rig.apply([completed(claim.run_id, "ingest", 1)])
    assert outcome.tasks_queued == 1
    now = await states(pg)
    assert (now["ingest"], now["clean"], now["join_customers"]) == ("success", "queued", "pending")
    attempt = await pg.fetchrow("SELECT * FROM task_attempts")
    assert (attempt["task_id"], attempt["state"], attempt["exit_code"]) == ("ingest", "success", 0)
    status = await pg.fetch("SELECT payload FROM outbox ORDER BY id")
    ended = [orjson.loads(row["payload"]) for row in status][-2]
    # The task's status event says which version the run follows and how many tries it has.
    assert ended["data"]["state"] == "success"
    assert ended["data"]["spec_hash"] == rig.registry.current["orders"].spec_hash
    assert ended["data"]["max_attempts"] == 3


async def test_stale_and_unknown_completions_are_ignored(
    orchestrate: Orchestrate, pg: asyncpg.Connection
) -> None:
    rig = await orchestrate("orders")
    await rig.apply([ready("orders_raw", "2026-11-21")])
    [claim] = await rig.claim("w1", 1)
    outcome = await rig.apply(
        [completed(claim.run_id, "ingest", 2), completed("no-such-run", "ingest", 1)]
    )
    assert (outcome.applied, outcome.ignored) == (0, 2)
    assert (await states(pg))["ingest"] == "running"


async def test_a_failure_fails_downstream_but_all_done_tasks_still_run(
    orchestrate: Orchestrate, pg: asyncpg.Connection
) -> None:
    rig = await orchestrate("orders")
    await rig.apply([ready("orders_raw", "2026-11-21")])
    [claim] = await rig.claim("w1", 1)
    await rig.apply([completed(claim.run_id, "ingest", 1, "failed", retryable=False)])
    now = await states(pg)
    assert [now[t] for t in ("clean", "join_customers", "aggregate", "publish")] == [
        "upstream_failed"
    ] * 4
    assert (now["notify"], now["tidy_staging"]) == ("queued", "queued")
    assert await pg.fetchval("SELECT state FROM runs") == "running"
    finishers = await rig.claim("w1", 5)
    await rig.apply([completed(c.run_id, c.task_id, c.attempt) for c in finishers])
    assert await pg.fetchval("SELECT state FROM runs") == "failed"
    # A late completion after the run ended changes nothing.
    late = await rig.apply([completed(claim.run_id, "ingest", 1)])
    assert late.ignored == 1


async def test_concurrent_claimers_never_share_a_task(
    orchestrate: Orchestrate, pg: asyncpg.Connection
) -> None:
    rig = await orchestrate("orders")
    await rig.apply([ready("orders_raw", f"2026-01-{day:02d}") for day in range(1, 21)])
    claimed: list[tuple[str, str]] = []
    for _ in range(5):  # as executors do: claim again while there is work
        claims = await asyncio.gather(*(rig.claim(f"w{i}", 3) for i in range(8)))
        claimed += [(c.run_id, c.task_id) for batch in claims for c in batch]
    assert len(claimed) == len(set(claimed)) == 20  # every task, none twice
    assert await pg.fetchval("SELECT count(*) FROM task_instances WHERE state = 'running'") == 20


async def test_an_event_the_database_refuses_is_isolated(
    orchestrate: Orchestrate, pg: asyncpg.Connection
) -> None:
    rig = await orchestrate("orders")
    # Valid JSON and valid against the schema, but PostgreSQL text cannot hold NUL.
    poison = ready("orders_raw", "2026-11-22", producer="bad\u0000producer")
    events = [ready("orders_raw", "2026-11-21"), poison, ready("orders_raw", "2026-11-23")]
    refused = await apply_reliably(rig.applier, events)
    assert [(r.event.id, r.reason.startswith("the database refused it")) for r in refused] == [
        (poison.id, True)
    ]
    assert refused[0].traceback is None  # the data's fault, not a bug
    batch_dates = await pg.fetch("SELECT batch_date::text FROM runs ORDER BY batch_date")
    assert [r["batch_date"] for r in batch_dates] == ["2026-11-21", "2026-11-23"]


async def test_a_failed_attempt_is_retried_when_its_time_comes(
    orchestrate: Orchestrate, pg: asyncpg.Connection
) -> None:
    rig = await orchestrate("orders")
    await rig.apply([ready("orders_raw", "2026-11-21")])
    [claim] = await rig.claim("w1", 1)
    outcome = await rig.apply([completed(claim.run_id, "ingest", 1, "failed")])
    assert outcome.retries_scheduled == 1
    row = await pg.fetchrow(
        "SELECT state, retry_at, now() AS now FROM task_instances WHERE task_id = 'ingest'"
    )
    assert row["state"] == "up_for_retry"
    # orders: backoff base 10s, jitter 20% -> the first retry 8 to 12 s later.
    assert 7.5 <= (row["retry_at"] - row["now"]).total_seconds() <= 12.5
    assert await rig.timers.fire_due_retries(10) == 0  # not due yet
    await pg.execute("UPDATE task_instances SET retry_at = now() WHERE task_id = 'ingest'")
    assert await rig.timers.fire_due_retries(10) == 1
    assert (await states(pg))["ingest"] == "queued"
    [again] = await rig.claim("w2", ClaimBudget(1))
    assert (again.task_id, again.attempt) == ("ingest", 2)
    log = await pg.fetch("SELECT to_state FROM transitions WHERE task_id = 'ingest' ORDER BY id")
    assert [r["to_state"] for r in log] == [
        "queued",
        "running",
        "up_for_retry",
        "queued",
        "running",
    ]


async def test_an_attempt_whose_lease_expires_is_lost_and_retried_once(
    orchestrate: Orchestrate, pg: asyncpg.Connection
) -> None:
    rig = await orchestrate("orders")
    await rig.apply([ready("orders_raw", "2026-11-21")])
    [claim] = await rig.claim("w1", 1)
    assert await rig.timers.reap_expired_leases(10, LEASE) == 0
    await pg.execute("UPDATE task_instances SET lease_expires_at = now() - interval '20 seconds'")
    # Expired, but not a whole lease ago: its holder may still be stopping it.
    assert await rig.timers.reap_expired_leases(10, LEASE) == 0
    await pg.execute("UPDATE task_instances SET lease_expires_at = now() - interval '31 seconds'")
    # Two replicas reaping at once: the lost-attempt event has one id, so it applies once.
    await asyncio.gather(
        rig.timers.reap_expired_leases(10, LEASE), rig.timers.reap_expired_leases(10, LEASE)
    )
    row = await pg.fetchrow(
        "SELECT state, attempt, lost_attempts, retry_at <= now() AS due FROM task_instances"
        " WHERE task_id = 'ingest'"
    )
    # Lost, not failed: retried at once, and its retries are untouched.
    assert (row["state"], row["attempt"], row["lost_attempts"], row["due"]) == (
        "up_for_retry",
        1,
        1,
        True,
    )
    assert (
        await pg.fetchval("SELECT count(*) FROM transitions WHERE to_state = 'up_for_retry'") == 1
    )
    attempt = await pg.fetchrow("SELECT * FROM task_attempts WHERE task_id = 'ingest'")
    assert "stopped renewing its lease" in attempt["error_snippet"]
    # The lost worker's completion arrives late: it is ignored, and the reason is kept.
    late = await rig.apply([completed(claim.run_id, "ingest", 1)])
    assert late.ignored == 1
    reason = await pg.fetchval("SELECT reason FROM ignored_events")
    assert "stale completion" in reason


async def test_lost_attempts_have_a_budget_of_their_own(
    orchestrate: Orchestrate, pg: asyncpg.Connection
) -> None:
    rig = await orchestrate("orders")  # max_attempts 3; lost attempts: 3 (the default)
    await rig.apply([ready("orders_raw", "2026-11-21")])
    for attempt in range(1, 5):
        [claim] = await rig.claim("w1", 1)
        assert claim.attempt == attempt
        await rig.apply([completed(claim.run_id, "ingest", attempt, "failed", lost=True)])
        await pg.execute("UPDATE task_instances SET retry_at = now()")
        await rig.timers.fire_due_retries(10)
    # Three lost attempts retried for free; the fourth counted as the task's first try.
    row = await pg.fetchrow(
        "SELECT state, lost_attempts FROM task_instances WHERE task_id = 'ingest'"
    )
    assert (row["state"], row["lost_attempts"]) == ("queued", 3)
    reasons = await pg.fetch(
        "SELECT reason FROM transitions WHERE to_state = 'up_for_retry' ORDER BY id"
    )
    assert "without using its retries (3 of 3 such retries)" in reasons[2]["reason"]
    assert "try 2 of 3" in reasons[3]["reason"]


async def test_remote_requests_nobody_picked_up_are_requested_again(
    orchestrate: Orchestrate, pg: asyncpg.Connection
) -> None:
    rig = await orchestrate("backlog")
    assert (await rig.claimer.dispatch_remote("d", 10, LEASE, 60)).sent == 0  # nothing queued
    await rig.apply([requested("backlog", "2026-11-21")])
    sent = await rig.claimer.dispatch_remote("d", 10, LEASE, pickup_seconds=0.05)
    assert sent.sent == 3
    attempts = "SELECT task_id, attempt, pickup_by FROM task_instances ORDER BY task_id"
    first = await pg.fetch(attempts)
    assert await rig.claimer.redispatch("d", 10, 0.05, 60) == 0  # their time is not up yet
    await eventually(
        lambda: pg.fetchval(
            "SELECT count(*) FROM task_instances WHERE pickup_by < now() - interval '50 ms'"
        ),
        lambda late: late == 3,
        5.0,
        "the pickup times to pass",
    )
    assert await rig.claimer.redispatch("d", 10, 0.05, 60) == 3
    again = await pg.fetch(attempts)
    assert [(r["task_id"], r["attempt"]) for r in again] == [("a", 1), ("b", 1), ("c", 1)]
    assert all(a["pickup_by"] > f["pickup_by"] for a, f in zip(again, first, strict=True))
    requests = [
        orjson.loads(row["payload"])["data"]
        for row in await pg.fetch("SELECT payload FROM outbox WHERE topic = 'requests'")
    ]
    assert sorted((r["task_id"], r["attempt"]) for r in requests) == sorted(
        [(t, 1) for t in "abc"] * 2
    )  # the same attempts, requested twice
