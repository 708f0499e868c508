"""Operators' commands from the terminal against the real service: each waits for the
service's answer and says it — the run created, the refusal and its reason (exit 1)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import orjson

from tests.support import ROOT, RunService, eventually

OPERATOR = "cli-operator-token-0123"
VIEWER = "cli-viewer-token-012345"
TOKENS = {
    "ops": {"token": OPERATOR, "role": "operator"},
    "dash": {"token": VIEWER, "role": "viewer"},
}


def tributary(port: int, *args: str, token: str = OPERATOR) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIBUTARY_")}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "service",
            *args,
            "--url",
            f"http://127.0.0.1:{port}",
            "--token",
            token,
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_commands_say_what_the_service_did_or_why_it_refused(run_service: RunService) -> None:
    service = await run_service("roomy", "backfilled", api_tokens=orjson.dumps(TOKENS).decode())
    port = service.http_port()

    created = tributary(port, "trigger", "roomy", "--date", "2026-11-21", "--wait")
    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith("created run ")
    run_id = created.stdout.split()[2]
    assert "  work: success\n" in created.stdout  # followed, a line per change
    assert created.stdout.endswith(f"run {run_id} success\n")

    logged = await eventually(
        lambda: asyncio.to_thread(tributary, port, "logs", run_id, "work"),
        lambda done: done.returncode == 0,
        30,
        "the run's log",
    )
    assert logged.stdout == "2026-11-21\n"

    shown = tributary(port, "pipelines", "show", "roomy")
    assert shown.stdout.splitlines()[0].startswith("roomy (version 1, active)")
    assert shown.stdout.splitlines()[-1] == "  last runs: 2026-11-21 success"

    refused = tributary(port, "trigger", "romy", "--date", "2026-11-21")
    assert refused.returncode == 1
    assert "no pipeline 'romy' (did you mean 'roomy'?) (409)" in refused.stderr

    viewer = tributary(port, "runs", "cancel", run_id, token=VIEWER)
    assert viewer.returncode == 1
    assert "commands need an operator token (403)" in viewer.stderr

    paused = tributary(port, "pipelines", "pause", "backfilled", "--reason", "db upgrade")
    assert (paused.returncode, paused.stdout.strip()) == (0, "backfilled is paused")
    dry = tributary(
        port, "backfill", "backfilled", "--from", "2026-01-01", "--to", "2026-01-02", "--dry-run"
    )
    assert dry.stdout.strip() == "would create 2 run(s): 2026-01-01, 2026-01-02"
    listed = tributary(port, "pipelines", "list", "--json")
    paused_state = {p["pipeline_id"]: p["paused"] for p in orjson.loads(listed.stdout)["pipelines"]}
    assert paused_state == {"backfilled": True, "roomy": False}
    assert OPERATOR not in service.log_text()
