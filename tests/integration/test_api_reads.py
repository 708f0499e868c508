"""The API's reads: runs chosen by pipeline, state and batch dates and paged; a run's history
(every change, who and why); a task's attempts; partitions; dead letters; and the OpenAPI
document, which lists exactly the routes the app answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient, TestServer

from service.dashboard.web import make_web_app
from service.store import Store
from service.store.records import ArchivedLetter
from tests.support import Orchestrate, completed, ready, requested


async def nothing() -> dict[str, Any]:
    return {}


def is_page(path: str) -> bool:
    """The dashboard's HTML pages, sign-in and static files: not the API."""
    return not path.startswith("/api/") and path not in ("/healthz", "/readyz", "/metrics")


async def test_reads_choose_page_and_explain(
    orchestrate: Orchestrate, store: Store, pg: asyncpg.Connection, tmp_path: Path
) -> None:
    rig = await orchestrate("roomy", "one_at_a_time")
    await rig.apply([requested("roomy", f"2026-11-{day}") for day in (20, 21, 22)])
    [claim, *_] = await rig.claim()
    await rig.apply([completed(claim.run_id, claim.task_id, claim.attempt, "failed")])
    await rig.apply([ready("slow_raw", "2026-11-21", version="v7")])
    await store.archive_dead_letters(
        [ArchivedLetter("t", 0, 42, "k", "not JSON", 3, "abc", "{{{", None)]
    )
    app = make_web_app(store, nothing, None, rig.registry, rig.applier, log_dir=tmp_path)
    async with TestClient(TestServer(app)) as client:

        async def get(path: str) -> Any:
            response = await client.get(path)
            assert response.status == 200, await response.text()
            return await response.json()

        page = await get("/api/runs?pipeline=roomy&limit=2")
        assert len(page["runs"]) == 2
        rest = await get(page["next"])
        assert len(rest["runs"]) == 1
        roomy = await pg.fetch("SELECT run_id FROM runs WHERE pipeline_id = 'roomy'")
        paged = [r["run_id"] for r in page["runs"] + rest["runs"]]
        assert sorted(paged) == sorted(r["run_id"] for r in roomy)  # each once
        failed = await get("/api/runs?state=failed")
        assert [r["run_id"] for r in failed["runs"]] == [claim.run_id]
        dated = await get("/api/runs?pipeline=roomy&from=2026-11-21&to=2026-11-22")
        assert sorted(r["batch_date"] for r in dated["runs"]) == ["2026-11-21", "2026-11-22"]
        bad = await client.get("/api/runs?state=lost")
        assert bad.status == 400

        history = (await get(f"/api/runs/{claim.run_id}/history"))["history"]
        assert [(h["task_id"], h["to_state"]) for h in history][-2:] == [
            ("work", "failed"),
            (None, "failed"),
        ]
        assert {h["actor"] for h in history} == {"test", "w"}  # the service, the claimer
        assert all(h["reason"] for h in history)
        attempts = await get(f"/api/runs/{claim.run_id}/tasks/work/attempts")
        assert [(a["attempt"], a["state"], a["exit_code"]) for a in attempts["attempts"]] == [
            (1, "failed", 1)
        ]
        partitions = (await get("/api/datasets?dataset=slow_raw"))["partitions"]
        assert [(p["partition"], p["version"]) for p in partitions] == [("2026-11-21", "v7")]
        [failure] = (await get("/api/tasks/failed?since=1h"))["failed"]
        assert (failure["run_id"], failure["task_id"], failure["state"]) == (
            claim.run_id,
            "work",
            "failed",
        )
        assert failure["retry"] == f"tributary runs retry {claim.run_id} --task work"
        assert (await client.get("/api/tasks/failed?since=lots")).status == 400
        assert (await get(f"/api/runs/{claim.run_id}/outputs"))["outputs"] == []
        [letter] = (await get("/api/dead-letters?limit=5"))["dead_letters"]
        assert (letter["reason"], letter["offset"], letter["head"]) == ("not JSON", 42, "{{{")

        document = await get("/api/openapi.json")
        served = {
            (resource.canonical, route.method.lower())
            for resource in app.router.resources()
            for route in resource
            if route.method != "HEAD" and not is_page(resource.canonical)
        }
        described = {(path, method) for path, item in document["paths"].items() for method in item}
        assert described == served
