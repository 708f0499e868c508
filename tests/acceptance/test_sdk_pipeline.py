"""The shipped SDK example end to end, through Kafka, PostgreSQL and real subprocesses:
Python tasks return their counts, an expect: gate fails a bad day with the value (and alerts
with it), a when: branch skips the branch that does not apply, and a command renders an
upstream result; the compiled JSON the service loads is what the module compiles to."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from aiohttp import web

from tests.support import EXAMPLE_PIPELINES, ROOT, RunService, eventually, produce, requested

MODULE = ROOT / "examples" / "sdk" / "orders_quality.py"


def tributary(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIBUTARY_")}
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_compiled_example_is_what_the_module_compiles_to() -> None:
    compiled = tributary("compile", str(MODULE))
    assert compiled.returncode == 0, compiled.stderr
    shipped = (EXAMPLE_PIPELINES / "orders_quality.json").read_text()
    assert orjson.loads(compiled.stdout) == orjson.loads(shipped)
    validated = tributary("validate", str(MODULE))
    assert validated.returncode == 0, validated.stdout + validated.stderr


async def test_python_tasks_report_gate_and_branch_through_the_real_service(
    run_service: RunService, database_url: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    alerts: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        alerts.append(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    sinks = {"hook": {"type": "webhook", "url": f"http://127.0.0.1:{port}/hook"}}
    service = await run_service(alert_sinks=orjson.dumps(sinks).decode())
    days = {
        "2026-11-19": {"orders": 1500, "bad_orders": 3},  # big: full refresh
        "2026-11-20": {"orders": 400, "bad_orders": 0},  # small: incremental
        "2026-11-21": {"orders": 100, "bad_orders": 50},  # half bad: the gate holds it
    }
    requests = [requested("orders_quality", day, params=p) for day, p in days.items()]
    await produce(
        kafka_bootstrap, service.setting("topic_triggers"), [(None, r.to_bytes()) for r in requests]
    )
    conn = await asyncpg.connect(database_url)
    try:
        await eventually(
            lambda: conn.fetchval(
                "SELECT count(*) FROM runs WHERE pipeline_id = 'orders_quality' "
                "AND state IN ('success', 'failed')"
            ),
            lambda ended: ended == 3,
            90,
            "the three runs to end",
        )
        rows = await conn.fetch(
            "SELECT r.batch_date::text AS day, r.state AS run, t.task_id, t.state, t.attempt, "
            "t.result::text AS result FROM task_instances t JOIN runs r USING (run_id) "
            "WHERE r.pipeline_id = 'orders_quality'"
        )
        found = {(r["day"], r["task_id"]): r for r in rows}
        runs = {r["day"]: r["run"] for r in rows}
        assert runs == {"2026-11-19": "success", "2026-11-20": "success", "2026-11-21": "failed"}
        big, small, bad = "2026-11-19", "2026-11-20", "2026-11-21"
        assert orjson.loads(found[big, "count_orders"]["result"]) == {
            "rows": 1500,
            "error_rate": 0.002,
        }
        states = {
            day: {t: found[day, t]["state"] for t in ("full_refresh", "incremental", "announce")}
            for day in days
        }
        assert states == {
            big: {"full_refresh": "success", "incremental": "skipped", "announce": "success"},
            small: {"full_refresh": "skipped", "incremental": "success", "announce": "success"},
            bad: {
                "full_refresh": "upstream_failed",
                "incremental": "upstream_failed",
                "announce": "upstream_failed",
            },
        }
        assert orjson.loads(found[small, "incremental"]["result"]) == {"partitions_merged": 1}
        skipped = await conn.fetchval(
            "SELECT reason FROM transitions t JOIN runs r USING (run_id) WHERE "
            "r.batch_date = '2026-11-20' AND t.task_id = 'full_refresh' AND to_state = 'skipped'"
        )
        assert skipped.startswith(
            "when: tasks.count_orders.result.rows > 1000 is false (rows = 400)"
        )
        gate = found[bad, "count_orders"]
        assert (gate["state"], gate["attempt"]) == ("failed", 1)  # not retried: the data is bad
        announced, counted = await asyncio.to_thread(logs, Path(service.setting("task_log_dir")))
        assert announced == [
            "orders_quality 2026-11-19: 1500 orders\n",
            "orders_quality 2026-11-20: 400 orders\n",
        ]  # a command rendered from an upstream result
        assert any(e.get("event") == "orders.counted" and e["rows"] == 1500 for e in counted)
        assert all(e["task_id"] == "count_orders" and e["run_id"] for e in counted)

        async def expectation_alerts() -> list[dict[str, Any]]:
            return [a for a in alerts if "expectation_failed" in a.get("reason", "")]

        [alert] = await eventually(expectation_alerts, bool, 30, "the gate's alert")
        assert "error_rate = 0.5, expected < 0.05" in alert["reason"]
        follow_up = tributary(
            "runs", "failed", "--since", "1h", "--url", f"http://127.0.0.1:{service.http_port()}"
        )
        assert follow_up.returncode == 0, follow_up.stderr
        assert "orders_quality 2026-11-21  count_orders: failed (attempt 1, exit 0)" in (
            follow_up.stdout
        )
        bad_run = await conn.fetchval(
            "SELECT run_id FROM runs WHERE batch_date = '2026-11-21' "
            "AND pipeline_id = 'orders_quality'"
        )
        assert f"retry: tributary runs retry {bad_run} --task count_orders" in follow_up.stdout
        assert "why: attempt 1 ended failed: expectation_failed: error_rate = 0.5" in (
            follow_up.stdout
        )
    finally:
        await conn.close()
        await runner.cleanup()


def logs(log_dir: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """What the announce tasks printed; the JSON lines the counting tasks logged."""
    announced = sorted(p.read_text() for p in log_dir.glob("*/announce/1.log"))
    counted = [
        orjson.loads(line)
        for p in log_dir.glob("*/count_orders/1.log")
        for line in p.read_text().splitlines()
        if line.startswith("{")
    ]
    return announced, counted
