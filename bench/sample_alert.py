"""Print the Feishu card the real service sends when a task fails for good.

Runs the service in-process (embedded Tansu, a fresh database) with a pipeline whose task
fails, its Feishu sink pointed at a local server that checks the signature as Feishu does,
and prints the body that server received.

    .venv/bin/python bench/sample_alert.py
"""

from __future__ import annotations

import asyncio
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from scratch import create_database, drop_database

from service import devenv
from service.alerts.feishu import sign
from service.app import Service
from service.config import load_settings
from service.events import RunRequested, new_event
from service.observability import configure_logging
from service.orchestrator.core import Orchestrator
from service.orchestrator.outgoing import Outgoing
from service.pipelines import PipelineRegistry
from service.store import connect

SECRET = "sample-secret"
PIPELINE = """\
id: orders_daily
domain: sales
tasks:
  - id: load
    shell: true
    command: >-
      echo 'loading mart.orders_daily';
      echo 'psycopg.OperationalError: connection to server at db.internal refused' >&2;
      exit 2
    exit_codes: {fatal: [2]}
"""


async def main() -> None:
    configure_logging("WARNING")
    received: list[dict[str, Any]] = []

    async def bot(request: web.Request) -> web.Response:
        body = await request.json()
        assert body["sign"] == sign(int(body["timestamp"]), SECRET), "bad signature"
        received.append(body)
        return web.json_response({"code": 0, "msg": "success"})

    app = web.Application()
    app.router.add_post("/open-apis/bot/v2/hook/sample", bot)
    runner = web.AppRunner(app)
    await runner.setup()
    bot_port = devenv.free_port()
    await web.TCPSite(runner, "127.0.0.1", bot_port).start()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "pipelines").mkdir()
        (work / "pipelines" / "orders.yaml").write_text(PIPELINE)
        port = devenv.free_port()
        broker = devenv.start_tansu(port, work / "tansu.log")
        url = await create_database("tributary_sample")
        sinks = {
            "ops": {
                "type": "feishu",
                "secret": SECRET,
                "url": f"http://127.0.0.1:{bot_port}/open-apis/bot/v2/hook/sample",
            }
        }
        env = {
            "TRIBUTARY_ENV": "bench",
            "TRIBUTARY_DATABASE_URL": url,
            "TRIBUTARY_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
            "TRIBUTARY_KAFKA_ENABLE_IDEMPOTENCE": "false",
            "TRIBUTARY_KAFKA_FETCH_MAX_WAIT_MS": "25",
            "TRIBUTARY_HTTP_PORT": "0",
            "TRIBUTARY_PIPELINES_DIR": str(work / "pipelines"),
            "TRIBUTARY_TASK_LOG_DIR": str(work / "logs"),
            "TRIBUTARY_ATTEMPT_STATE_DIR": str(work / "attempts"),
            "TRIBUTARY_LOG_LEVEL": "WARNING",
            "TRIBUTARY_ALERT_SINKS": orjson.dumps(sinks).decode(),
            "TRIBUTARY_ALERT_DASHBOARD_URL_TEMPLATE": "https://tributary.example.com/runs/{run_id}",
            "TRIBUTARY_ALERT_LOGS_URL_TEMPLATE": "https://kibana.example.com/app/discover#/?_a=(query:(query_string:(query:'trace_id:{trace_id}')))",
        }
        settings = load_settings(environ=env)
        service = Service(settings)
        stop = asyncio.Event()
        running = asyncio.create_task(service.run(stop))
        await service.started.wait()
        store = await connect(url, 2)
        registry = PipelineRegistry(store)
        await registry.load(work / "pipelines")
        outgoing = Outgoing(settings.topic_status, settings.topic_requests, settings.event_source)
        core = Orchestrator.build(store=store, registry=registry, outgoing=outgoing, actor="sample")
        request = RunRequested("orders_daily", date(2026, 11, 21))
        await core.applier.apply([new_event(request, "urn:sample")])
        try:
            for _ in range(300):
                if any("Task failed" in str(b) for b in received):
                    break
                await asyncio.sleep(0.1)
        finally:
            await store.close()
            stop.set()
            await running
            broker.terminate()
            await drop_database(url)
            await runner.cleanup()
    card = next(b for b in received if "Task failed" in str(b))
    print(orjson.dumps(card, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    asyncio.run(main())
