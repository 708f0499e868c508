"""The dashboard's pages and reads on a real database: every pipeline with its last runs and
figures, filters, the heat map (a cell per task and date, the newest run of each date), a
run's graph and history, an attempt, datasets and dead letters; HTML errors; and signing in
(pages need a token when tokens are configured, the cookie never acts without the header)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from service.api.auth import Tokens
from service.dashboard.web import make_web_app
from service.store import Store
from service.store.records import ArchivedLetter
from tests.support import Orchestrate, Orchestration, completed, ready, requested

OPERATOR, VIEWER = "dash-operator-token-0001", "dash-viewer-token-00001"
TOKENS = Tokens({OPERATOR: ("ops", "operator"), VIEWER: ("dash", "viewer")})


async def nothing() -> dict[str, Any]:
    return {}


async def run_days(rig: Orchestration, pipeline: str, days: list[str]) -> dict[str, str]:
    """One run of ``pipeline`` per day, every task run to success; run id by day."""
    await rig.apply([requested(pipeline, day) for day in days])
    await drain(rig)
    runs = await rig.store.list_runs(100, pipeline, None, (None, None), 0)
    return {str(run.batch_date): run.run_id for run in runs}


async def drain(rig: Orchestration) -> None:
    """Run every claimable task to success, until none is left."""
    while claims := await rig.claim(budget=50):
        await rig.apply([completed(c.run_id, c.task_id, c.attempt) for c in claims])


async def html(response: ClientResponse, status: int = 200) -> str:
    text = await response.text()
    assert response.status == status, text[:2000]
    assert response.content_type == "text/html"
    return text


async def test_pages_show_pipelines_heat_maps_runs_and_attempts(
    orchestrate: Orchestrate, store: Store, tmp_path: Path
) -> None:
    rig = await orchestrate("roomy", "described", "diamond", "orders")
    runs = await run_days(rig, "crash_diamond", ["2026-11-19", "2026-11-20", "2026-11-21"])
    await run_days(rig, "roomy", ["2026-11-21"])
    await rig.apply([ready("orders_raw", "2026-11-21")])
    await drain(rig)  # up to join_customers, which waits for the customer dimension
    await store.archive_dead_letters(
        [ArchivedLetter("triggers", 0, 42, "k", "not JSON", 3, "abc", "{{{", None)]
    )
    app = make_web_app(store, nothing, None, rig.registry, rig.applier, log_dir=tmp_path)
    async with TestClient(TestServer(app)) as client:
        overview = await html(await client.get("/"))
        for pipeline in ("roomy", "described", "crash_diamond", "orders"):
            assert f'data-pipeline="{pipeline}"' in overview
        row = overview.split('data-pipeline="crash_diamond"')[1].split("</tr>")[0]
        assert row.count('class="square state-success"') == 3
        assert "100% of 3" in row
        chosen = await html(await client.get("/?domain=finance_daily"))
        assert 'data-pipeline="described"' in chosen
        assert 'data-pipeline="roomy"' not in chosen
        searched = await html(await client.get("/?q=ledger"))
        assert re.findall(r'data-pipeline="(\w+)"', searched) == ["described"]

        heat = await (await client.get("/api/pipelines/crash_diamond/heatmap?dates=2")).json()
        assert heat["dates"] == ["2026-11-20", "2026-11-21"]
        assert heat["tasks"] == ["extract", "left", "right", "load"]
        assert len(heat["cells"]) == 4 * 2
        assert {c["run_id"] for c in heat["cells"]} == {runs["2026-11-20"], runs["2026-11-21"]}
        assert all(c["attempts"] == 1 and c["duration_seconds"] >= 0 for c in heat["cells"])
        assert (await client.get("/api/pipelines/crash_diamond/heatmap?dates=0")).status == 400
        assert (await client.get("/api/pipelines/nope/heatmap")).status == 404
        page = await html(await client.get("/pipelines/crash_diamond?metric=queue_wait"))
        assert page.count("data-cell") == 4 * 3

        run_id = runs["2026-11-21"]
        run = await html(await client.get(f"/runs/{run_id}"))
        nodes = re.findall(r'class="node state-(\w+)" data-run="[^"]+" data-task="(\w+)"', run)
        assert sorted(nodes) == [
            (s, t)
            for s, t in sorted(
                [
                    ("success", "extract"),
                    ("success", "left"),
                    ("success", "right"),
                    ("success", "load"),
                ]
            )
        ]
        assert run.count('class="bar state-success"') == 4  # the Gantt: one bar per attempt
        assert "every task succeeded" in run  # the history, with its reasons
        attempt = await html(await client.get(f"/runs/{run_id}/tasks/left"))
        assert "attempt 1" in attempt
        assert f"/api/runs/{run_id}/tasks/left/log?attempt=1" in attempt

        waiting = await store.list_runs(1, "orders", None, (None, None), 0)
        orders = await html(await client.get(f"/runs/{waiting[0].run_id}"))
        assert "dim_customer 2026-11-20" in orders  # what its waiting task waits for

        datasets = await html(await client.get("/datasets"))
        row = datasets.split('href="/datasets?dataset=orders_raw"')[1].split("</tr>")[0]
        assert '<a href="/pipelines/orders">orders</a>' in row
        assert "2026-11-21" in row
        letters = await html(await client.get("/dead-letters"))
        assert "not JSON" in letters
        assert "{{{" in letters

        whole = await client.get(f"/runs/{run_id}/tasks/", allow_redirects=False)
        assert whole.headers["Location"] == f"/runs/{run_id}#tasks"  # an alert about a run

        missing = await html(await client.get("/runs/no-such-run"), 404)
        assert "no run &#39;no-such-run&#39;" in missing
        bad = await html(await client.get("/runs?state=lost"), 400)
        assert "state must be one of" in bad
        static = await client.get("/static/dashboard.js")
        assert static.status == 200
        assert "EventSource" in await static.text()


async def test_pages_need_a_signed_in_token_and_the_cookie_never_acts_alone(
    orchestrate: Orchestrate, store: Store, tmp_path: Path
) -> None:
    rig = await orchestrate("roomy")
    await rig.apply([requested("roomy", "2026-11-21")])
    [run] = await store.list_runs(1, "roomy", None, (None, None), 0)
    app = make_web_app(store, nothing, None, rig.registry, rig.applier, TOKENS, tmp_path)
    cancel = f"/api/runs/{run.run_id}/cancel"
    async with TestClient(TestServer(app)) as client:
        away = await client.get("/runs?state=queued", allow_redirects=False)
        location = URL(away.headers["Location"])
        assert (away.status, location.path, location.query["next"]) == (
            303,
            "/login",
            "/runs?state=queued",
        )
        assert (await client.get("/api/live")).status == 401
        assert (await client.get("/healthz")).status == 200

        refused = await client.post("/login", data={"token": "guess", "next": "/"})
        assert "That token is not known." in await html(refused, 401)
        signed = await client.post(
            "/login", data={"token": VIEWER, "next": "//evil.example/"}, allow_redirects=False
        )
        assert (signed.status, signed.headers["Location"]) == (303, "/")  # never off-site
        cookie = signed.headers["Set-Cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie
        assert "dash (viewer)" in await html(await client.get("/"))

        forged = await client.post(cancel, json={"reason": "x"})  # as a page elsewhere would
        assert forged.status == 403
        assert "X-Tributary-Action" in (await forged.json())["detail"]
        viewer = await client.post(
            cancel, json={"reason": "x"}, headers={"X-Tributary-Action": "1"}
        )
        assert (viewer.status, (await viewer.json())["detail"]) == (
            403,
            "commands need an operator token",
        )

        await client.post("/login", data={"token": OPERATOR, "next": "/"})
        done = await client.post(
            cancel, json={"reason": "test"}, headers={"X-Tributary-Action": "1"}
        )
        assert done.status == 200, await done.text()
        assert (await done.json())["run"]["state"] == "cancelled"

        await client.post("/logout")
        assert (await client.get("/", allow_redirects=False)).status == 303
