"""Order quality, written in Python with Tributary's task SDK: count the day's orders, gate on
what the count says (expect), take the full or the incremental branch by how many there were
(when), and announce the count from the upstream result (a template).

    tributary compile examples/sdk/orders_quality.py --out examples/pipelines
    tributary trigger orders_quality --date 2026-11-21 --param orders=1500

The tasks stand in for real work: the counts come from the run's params, so that the example
runs anywhere; a real task would read its input partition (``ctx.input(...)``).
"""

from __future__ import annotations

from service.sdk import Context, Pipeline, task


@task(
    expect={"rows": "> 0", "error_rate": "< 0.05"},
    retry={"max_attempts": 2, "backoff": {"base": "2s"}},
    tags=["quality"],
)
def count_orders(ctx: Context) -> dict[str, float]:
    """Count the day's orders and the share that fail validation."""
    rows = int(ctx.params["orders"])
    bad = int(ctx.params["bad_orders"])
    ctx.log.info("orders.counted", rows=rows, bad=bad, day=str(ctx.batch_date))
    return {"rows": rows, "error_rate": round(bad / rows, 4) if rows else 1.0}


@task
def full_refresh(ctx: Context) -> dict[str, int]:
    """Rebuild the day's facts from scratch (a big day)."""
    ctx.log.info("orders.full_refresh")
    return {"partitions_rebuilt": 24}


@task
def incremental(ctx: Context) -> dict[str, int]:
    """Merge only the new orders into the day's facts (a small day)."""
    ctx.log.info("orders.incremental")
    return {"partitions_merged": 1}


pipeline = Pipeline(
    "orders_quality",
    description="The day's order count, gated on quality, then the full or incremental load.",
    owner="data-platform@example.com",
    domain="sales",
    triggers={"manual": True},
    params={
        "orders": {"type": "integer", "default": 1200, "description": "Orders of the day."},
        "bad_orders": {"type": "integer", "default": 3, "description": "Orders failing checks."},
    },
)
pipeline.add_task(count_orders)
pipeline.add_task(
    full_refresh, depends_on=[count_orders], when="tasks.count_orders.result.rows > 1000"
)
pipeline.add_task(
    incremental, depends_on=[count_orders], when="tasks.count_orders.result.rows <= 1000"
)
pipeline.add_task(
    {
        "id": "announce",
        "description": "Say how the day went, with the count from upstream.",
        "command": ["echo", "orders_quality {batch_date}: {tasks.count_orders.result.rows} orders"],
    },
    depends_on=[full_refresh, incremental],
)
