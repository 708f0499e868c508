"""Reruns are safe: the shipped orders_daily, run for a date and then again for the same date,
leaves the published partition intact and correct — whether its aggregate is cached (the
example as it ships) or not — and a publish that fails puts back what it replaced."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from tests.support import EXAMPLE_PIPELINES, ROOT, RunService, eventually, produce, ready, requested

DAY = "2026-10-05"
ETL = ROOT / "examples" / "scripts" / "etl.py"


def example_in(directory: Path, warehouse: Path, cache: bool) -> Path:
    """orders_daily as it ships, writing to ``warehouse``; with ``cache`` false, uncached."""
    text = (EXAMPLE_PIPELINES / "orders_daily.yaml").read_text()
    text = text.replace("WAREHOUSE_DIR: .tributary/warehouse", f"WAREHOUSE_DIR: {warehouse}")
    if not cache:
        text = text.replace("    cache: true\n", "    cache: false\n")
    directory.mkdir(parents=True)
    (directory / "orders_daily.yaml").write_text(text)
    return directory


async def runs_ended(conn: asyncpg.Connection, count: int) -> list[asyncpg.Record]:
    async def ended() -> list[asyncpg.Record]:
        return await conn.fetch(
            "SELECT run_id, state FROM runs WHERE state IN ('success', 'failed') "
            "ORDER BY created_at"
        )

    return await eventually(ended, lambda rows: len(rows) >= count, 60, f"{count} runs to end")


@pytest.mark.parametrize("cache", [True, False], ids=["cached", "uncached"])
async def test_a_rerun_of_a_date_leaves_the_published_partition_intact(
    tmp_path: Path, run_service: RunService, database_url: str, kafka_bootstrap: str, cache: bool
) -> None:
    warehouse = tmp_path / "warehouse"
    pipelines = example_in(tmp_path / "pipelines", warehouse, cache)
    service = await run_service(pipelines_dir=pipelines)
    triggers = service.setting("topic_triggers")
    mart = warehouse / "mart.orders_daily" / f"{DAY}.json"
    conn = await asyncpg.connect(database_url)
    try:
        await produce(
            kafka_bootstrap,
            triggers,
            [
                (b"orders_raw", ready("orders_raw", DAY).to_bytes()),
                (b"dim_customer", ready("dim_customer", "2026-10-04").to_bytes()),
            ],
        )
        [first] = await runs_ended(conn, 1)
        assert first["state"] == "success"
        published = json.loads(mart.read_text())
        assert sum(int(row["orders"]) for row in published) > 0
        # The first run's tidy_staging removed the staging files the cache would lean on.
        assert not list((warehouse / "staging.orders_by_region").glob("*.json"))

        rerun = requested("orders_daily", DAY, reason="rerun")
        await produce(kafka_bootstrap, triggers, [(b"orders_daily", rerun.to_bytes())])
        second = (await runs_ended(conn, 2))[1]
        assert second["state"] == "success"
        aggregate = await conn.fetchval(
            "SELECT state FROM task_instances WHERE run_id = $1 AND task_id = 'aggregate'",
            second["run_id"],
        )
        assert aggregate == "success"  # ran: its upstream tasks ran again in this run
    finally:
        await conn.close()
    assert json.loads(mart.read_text()) == published
    assert sorted(p.name for p in mart.parent.iterdir()) == [mart.name]  # no swap left over


def etl(warehouse: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ETL), *args],
        env={**os.environ, "WAREHOUSE_DIR": str(warehouse)},
        capture_output=True,
        text=True,
        check=False,
    )


def test_a_failed_publish_puts_back_what_it_replaced_and_touches_nothing_else(
    tmp_path: Path,
) -> None:
    staged = tmp_path / "staging.orders_by_region" / f"{DAY}.json"
    mart = tmp_path / "mart.orders_daily" / f"{DAY}.json"
    staged.parent.mkdir(parents=True)
    staged.write_text(json.dumps([{"region": "north", "orders": 3}]))
    assert etl(tmp_path, "publish", "--date", DAY, "--run", "a").returncode == 0
    good = mart.read_text()

    # Run b's publish fails before the swap (its input is gone); its rollback leaves run a's.
    staged.unlink()
    assert etl(tmp_path, "publish", "--date", DAY, "--run", "b").returncode != 0
    assert etl(tmp_path, "unpublish", "--date", DAY, "--run", "b").returncode == 0
    assert mart.read_text() == good

    # Run c dies in the middle of its swap; its rollback restores run a's partition.
    (mart.parent / f"{DAY}.json.publishing").write_text(
        json.dumps({"run": "c", "had_previous": True})
    )
    mart.rename(mart.parent / f"{DAY}.json.previous")
    mart.write_text("[half")
    assert etl(tmp_path, "unpublish", "--date", DAY, "--run", "c").returncode == 0
    assert mart.read_text() == good
    assert sorted(p.name for p in mart.parent.iterdir()) == [mart.name]
