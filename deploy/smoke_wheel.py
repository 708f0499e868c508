"""The service as a user installs it: build the wheel, install it into a clean virtualenv
(with the lock as constraints), and run ``tributary serve`` from there — away from the
checkout, so the migrations and schemas must come from the package — against the real
PostgreSQL and Redis and a Kafka-compatible broker (Tansu); then announce a dataset and wait
for the run it starts to succeed. What the container's entry point does, without the image.

    .venv/bin/python deploy/smoke_wheel.py
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import asyncpg

from service import devenv

ROOT = Path(__file__).resolve().parents[1]
POSTGRES = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PIPELINE = """\
id: smoke
triggers: {datasets: [{dataset: smoke_ready}]}
tasks:
  - {id: hello, command: [echo, "hello {batch_date}"]}
  - {id: bye, requires: [hello], command: [echo, bye]}
"""
TOKEN = secrets.token_urlsafe(24)
T = TypeVar("T")


def sh(*argv: str | Path, **kwargs: Any) -> None:
    subprocess.run([str(a) for a in argv], check=True, **kwargs)


async def until(what: str, probe: Callable[[], Awaitable[T]], seconds: float = 60.0) -> T:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = await probe()
        if found:
            return found
        await asyncio.sleep(0.25)
    raise SystemExit(f"smoke: timed out waiting for {what}")


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sh(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", work / "dist", ROOT)
        [wheel] = (work / "dist").glob("tributary-*.whl")
        sh(sys.executable, "-m", "venv", work / "venv")
        pip = work / "venv" / "bin" / "pip"
        sh(pip, "install", "-q", "-c", ROOT / "requirements.lock", wheel)
        (work / "pipelines").mkdir()
        (work / "pipelines" / "smoke.yaml").write_text(PIPELINE)
        database = f"tributary_smoke_{secrets.token_hex(4)}"
        admin = await asyncpg.connect(POSTGRES)
        await admin.execute(f'CREATE DATABASE "{database}"')
        kafka_port, http_port = devenv.free_port(), devenv.free_port()
        broker = devenv.start_tansu(kafka_port, work / "tansu.log")
        env = {
            "PATH": os.environ["PATH"],
            "TRIBUTARY_DATABASE_URL": POSTGRES.rsplit("/", 1)[0] + "/" + database,
            "TRIBUTARY_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{kafka_port}",
            "TRIBUTARY_KAFKA_ENABLE_IDEMPOTENCE": "false",
            "TRIBUTARY_REDIS_URL": os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
            "TRIBUTARY_REDIS_KEY_PREFIX": database,
            "TRIBUTARY_PIPELINES_DIR": str(work / "pipelines"),
            "TRIBUTARY_TASK_LOG_DIR": str(work / "logs"),
            "TRIBUTARY_ATTEMPT_STATE_DIR": str(work / "attempts"),
            "TRIBUTARY_HTTP_PORT": str(http_port),
            "TRIBUTARY_API_TOKENS": f'{{"smoke": {{"token": "{TOKEN}", "role": "operator"}}}}',
            "TRIBUTARY_CLI_TOKEN": TOKEN,
        }
        tributary = work / "venv" / "bin" / "tributary"
        service = start(tributary, work, env)
        try:
            await check(tributary, work, env, http_port)
        except BaseException:
            print((work / "service.log").read_text()[-4000:], file=sys.stderr)
            raise
        finally:
            service.terminate()
            service.wait(timeout=60)
            broker.terminate()
            broker.wait(timeout=10)
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            await admin.close()


def start(tributary: Path, work: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with (work / "service.log").open("wb") as log:
        return subprocess.Popen([tributary, "serve"], cwd=work, env=env, stdout=log, stderr=log)


async def check(tributary: Path, work: Path, env: dict[str, str], port: int) -> None:
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as http:

        async def ready() -> bool:
            try:
                async with http.get(f"{base}/readyz") as response:
                    return response.status == 200
            except aiohttp.ClientError:
                return False

        await until("the installed service to be ready", ready)
        sh(tributary, "emit-ready", "smoke_ready", "2026-11-21", cwd=work, env=env)

        async def succeeded() -> list[dict[str, str]]:
            async with http.get(f"{base}/api/runs?pipeline=smoke") as response:
                runs = (await response.json())["runs"]
            return [r for r in runs if r["state"] == "success"]

        [run] = await until("the run to succeed", succeeded)
        async with http.get(f"{base}/api/runs/{run['run_id']}/tasks/hello/log") as response:
            log = await response.text()
        if log != "hello 2026-11-21\n":
            raise SystemExit(f"smoke: the task's log is {log!r}")
        async with http.get(f"{base}/") as response:
            if response.status != 200 or "smoke" not in await response.text():
                raise SystemExit(f"smoke: the dashboard answered {response.status}")
    print(f"smoke: the installed wheel served, migrated and ran {run['run_id']} to success")


if __name__ == "__main__":
    asyncio.run(main())
