"""Stand-in ETL steps for the example pipelines: small JSON files in $WAREHOUSE_DIR.

Each step reads what the step before it wrote and writes its own table partition, so a run
leaves a trail you can look at: <warehouse>/<table>/<date>.json. Every write replaces the file
at once (a reader sees the old partition or the new one, never half of one).

``publish`` swaps the mart partition in: it keeps what was there as ``<date>.json.previous``
and notes, in ``<date>.json.publishing``, which run is swapping, until it is done; its
rollback (``unpublish``) puts back what that run replaced, and never touches a partition
another run published.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from collections import Counter
from pathlib import Path

WAREHOUSE = Path(os.environ.get("WAREHOUSE_DIR", ".tributary/warehouse"))
REGIONS = ["north", "south", "east", "west"]


def table(name: str, date: str) -> Path:
    return WAREHOUSE / name / f"{date}.json"


def write(name: str, date: str, rows: list[dict[str, object]]) -> None:
    path = table(name, date)
    replace(path, json.dumps(rows))
    print(f"wrote {len(rows)} rows to {path}")


def replace(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` in one step: a temporary file, synced, then renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with temporary.open("w") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)


def publish(date: str, run: str) -> None:
    """Swap the day's mart partition in, keeping the one it replaces until it is done."""
    rows = read("staging.orders_by_region", date)  # fails before anything is touched
    target = table("mart.orders_daily", date)
    previous = target.with_name(target.name + ".previous")
    swapping = target.with_name(target.name + ".publishing")
    if swapping.exists():  # a swap that never finished (its rollback did not run): undo it
        unpublish(date, json.loads(swapping.read_text())["run"])
    replace(swapping, json.dumps({"run": run, "had_previous": target.exists()}))
    if target.exists():
        os.replace(target, previous)  # kept: the rollback puts it back
    write("mart.orders_daily", date, rows)
    previous.unlink(missing_ok=True)
    swapping.unlink()


def unpublish(date: str, run: str) -> None:
    """Undo what ``run``'s publish did to the day's partition, and nothing else."""
    target = table("mart.orders_daily", date)
    previous = target.with_name(target.name + ".previous")
    swapping = target.with_name(target.name + ".publishing")
    if not swapping.exists() or json.loads(swapping.read_text())["run"] != run:
        print(f"run {run} did not touch {target}: nothing to undo")
        return
    if json.loads(swapping.read_text())["had_previous"]:
        if previous.exists():
            os.replace(previous, target)
            print(f"restored the partition {target} had before run {run}")
    else:
        target.unlink(missing_ok=True)
        print(f"removed {target}: there was none before run {run}")
    swapping.unlink()


def read(name: str, date: str) -> list[dict[str, object]]:
    path = table(name, date)
    if not path.exists():
        sys.exit(f"missing input {path}: has the upstream step run?")
    rows: list[dict[str, object]] = json.loads(path.read_text())
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("step")
    parser.add_argument("--date", required=True)
    parser.add_argument("--dim-date")
    parser.add_argument("--table")
    parser.add_argument("--region", default="all")
    parser.add_argument("--min-orders", type=int, default=1)
    parser.add_argument("--run")
    args = parser.parse_args()
    rng = random.Random(args.date)

    if args.step == "customers":
        write(
            "dim_customer",
            args.date,
            [{"customer": c, "region": rng.choice(REGIONS)} for c in range(50)],
        )
    elif args.step == "ingest":
        write(
            "staging.orders_raw",
            args.date,
            [
                {"order": i, "customer": rng.randrange(60), "amount": rng.randrange(5, 500)}
                for i in range(200)
            ],
        )
    elif args.step == "clean":
        rows = [r for r in read("staging.orders_raw", args.date) if int(str(r["amount"])) >= 10]
        if not rows:
            print("no orders that day", file=sys.stderr)
            sys.exit(99)  # declared as a skip code
        write("staging.orders", args.date, rows)
    elif args.step == "join":
        dimension = table("dim_customer", args.dim_date or args.date)
        regions = {}
        if dimension.exists():
            regions = {r["customer"]: r["region"] for r in json.loads(dimension.read_text())}
        else:
            print(f"note: {dimension} not found, customers get region 'unknown'", file=sys.stderr)
        write(
            "staging.orders_enriched",
            args.date,
            [
                {**r, "region": regions.get(r["customer"], "unknown")}
                for r in read("staging.orders", args.date)
            ],
        )
    elif args.step == "aggregate":
        rows = read("staging.orders_enriched", args.date)
        if args.region != "all":
            rows = [r for r in rows if r["region"] == args.region]
        counts = Counter(str(r["region"]) for r in rows)
        write(
            "staging.orders_by_region",
            args.date,
            [{"region": k, "orders": v} for k, v in counts.items() if v >= args.min_orders],
        )
    elif args.step == "publish":
        publish(args.date, args.run or "")
    elif args.step == "unpublish":
        unpublish(args.date, args.run or "")
    elif args.step == "report":
        rows = read("mart.orders_daily", args.date)
        print(f"revenue report {args.date}: {sum(int(str(r['orders'])) for r in rows)} orders")
    elif args.step == "notify":
        published = table("mart.orders_daily", args.date).exists()
        print(
            f"run {args.run}: orders for {args.date} "
            f"{'published' if published else 'NOT published'}"
        )
    elif args.step == "drop":
        path = table(args.table, args.date)
        path.unlink(missing_ok=True)
        print(f"dropped {path}")
    else:
        sys.exit(f"unknown step {args.step!r}")


if __name__ == "__main__":
    main()
