"""GET /api/pipelines: the deployed pipelines with their triggers and next scheduled runs."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from service.api.http import make_app
from service.pipelines import PipelineRegistry
from service.store import Store
from tests.support import pipelines_dir


async def ready() -> dict[str, str]:
    return {}


async def test_the_pipelines_endpoint_shows_the_next_scheduled_runs(
    store: Store, tmp_path: Path
) -> None:
    registry = PipelineRegistry(store)
    await registry.load(pipelines_dir(tmp_path, ["nightly", "one_at_a_time", "described"]))
    app = make_app(store, ready, None, registry)
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/api/pipelines")
        assert response.status == 200
        body = await response.json()
    by_id = {p["pipeline_id"]: p for p in body["pipelines"]}
    described = by_id["described"]
    assert (described["version"], described["domain"], described["owner"]) == (
        "7",
        "finance_daily",
        "fin-data@example.com",
    )
    assert described["description"] == "Ledger balances per day."
    assert described["params"]["book"]["description"] == "Which ledger book."
    assert described["tasks"] == [
        {
            "task_id": "balance",
            "description": "Sum the day's postings.",
            "tags": ["ledger", "daily"],
        }
    ]
    assert by_id["one_at_a_time"]["max_active_runs"] == 1
    assert by_id["one_at_a_time"]["triggers"]["schedule"] is None
    schedule = by_id["nightly"]["triggers"]["schedule"]
    assert (schedule["cron"], schedule["timezone"], schedule["catchup"]) == (
        "0 3 * * *",
        "UTC",
        "latest",
    )
    fires = [datetime.fromisoformat(f["at"]) for f in schedule["next_fires"]]
    assert len(fires) == 5
    assert all(f.astimezone(UTC).hour == 3 for f in fires)
    assert all(f > datetime.now(UTC) for f in fires)
    first = schedule["next_fires"][0]
    assert date.fromisoformat(first["batch_date"]) == fires[0].date() - timedelta(days=1)
