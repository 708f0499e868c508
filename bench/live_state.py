"""The cost of live state: Redis writes per status event, as the relay hands them over.

Writes N status events (run.status and task.status, the mix of a 4-task run) through
LiveState.publish in relay-sized batches to a private redis-server, and prints the time per
event and per batch. The writes happen after commit, off the transaction's path: this is
the extra work per transition, not added latency on it.

    .venv/bin/python bench/live_state.py [--events 20000] [--batch 500]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

from service import devenv
from service.clock import utc_now
from service.engine.states import RunState, TaskState
from service.events import CloudEvent, RunStatus, TaskStatus, new_event
from service.live_state import LiveState

DAY = date(2026, 11, 21)


def events(count: int) -> list[CloudEvent]:
    made = []
    now = utc_now()
    for i in range(count):
        run_id = f"20261121-000000-{i // 10:04x}"
        payload: RunStatus | TaskStatus
        if i % 10 in (0, 9):
            payload = RunStatus(run_id, "p", DAY, RunState.RUNNING, None, "", "t", now)
        else:
            payload = TaskStatus(
                run_id, "p", f"t{i % 4}", 1, DAY, TaskState.SUCCESS, None, "", "t", now, exit_code=0
            )
        made.append(new_event(payload, "urn:b"))
    return made


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        port = devenv.free_port()
        server = devenv.start_redis(port, Path(tmp) / "redis.log")
        if server is None:
            raise SystemExit("redis-server is not installed")
        live = LiveState(f"redis://127.0.0.1:{port}/0", "bench", ttl_seconds=3600)
        try:
            messages = events(args.events)
            batches = [messages[i : i + args.batch] for i in range(0, len(messages), args.batch)]
            await live.publish(batches[0])  # connect
            per_batch = []
            started = time.perf_counter()
            for batch in batches:
                t0 = time.perf_counter()
                await live.publish(batch)
                per_batch.append(time.perf_counter() - t0)
            total = time.perf_counter() - started
        finally:
            await live.close()
            server.terminate()
            server.wait(timeout=10)
    print(
        f"{args.events} status events in batches of {args.batch}: {total:.2f} s, "
        f"{total / args.events * 1e6:.0f} us per event "
        f"({args.events / total:,.0f} events/s); batch median "
        f"{statistics.median(per_batch) * 1000:.1f} ms"
    )


if __name__ == "__main__":
    asyncio.run(main())
