"""The dashboard in a real browser (Debian's chromium, headless) against the real service:
the example pipelines listed after a dev-style start; a run's graph turning green live; the
heat map's cells; cancelling from the run page stops the running task; a viewer's click is
refused with the 403 shown in the page. Each page is photographed (see conftest)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from playwright.async_api import Browser, Page, expect

from service.events import DatasetReady, new_event
from tests.support import RunService, ServiceProcess, eventually, produce

OPERATOR, VIEWER = "browser-operator-token-01", "browser-viewer-token-0001"
TOKENS = orjson.dumps(
    {
        "ops": {"token": OPERATOR, "role": "operator"},
        "dash": {"token": VIEWER, "role": "viewer"},
    }
).decode()
VIEWPORT = {"width": 1400, "height": 900}
SECONDS = 15_000  # milliseconds an expectation of the page may take


async def signed_in(browser: Browser, service: ServiceProcess, token: str) -> Page:
    context = await browser.new_context(viewport=VIEWPORT)  # its own cookies
    page = await context.new_page()
    page.set_default_timeout(SECONDS)
    base = f"http://127.0.0.1:{service.http_port()}"
    await page.goto(base + "/")
    await expect(page).to_have_url(base + "/login?next=/")
    await page.get_by_label("Token").fill(token)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(base + "/")
    return page


async def api(service: ServiceProcess, method: str, path: str, body: Any = None) -> Any:
    url = f"http://127.0.0.1:{service.http_port()}{path}"
    headers = {"Authorization": f"Bearer {OPERATOR}"}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, json=body, headers=headers) as response,
    ):
        assert response.status < 300, await response.text()
        return await response.json()


async def start_run(service: ServiceProcess, pipeline: str, day: str) -> str:
    made = await api(service, "POST", "/api/runs", {"pipeline_id": pipeline, "batch_date": day})
    run_id: str = made["run_id"]
    return run_id


async def run_state(service: ServiceProcess, run_id: str) -> str:
    state: str = (await api(service, "GET", f"/api/runs/{run_id}"))["run"]["state"]
    return state


async def test_the_pipelines_page_lists_the_example_pipelines(
    run_service: RunService, browser: Browser, kafka_bootstrap: str, screenshots: Path
) -> None:
    service = await run_service(api_tokens=TOKENS)
    announced = [("customers_raw", "20261120"), ("orders_raw", "2026-11-21")]
    await produce(
        kafka_bootstrap,
        service.setting("topic_triggers"),
        [
            (None, new_event(DatasetReady(d, p), "urn:test:upstream").to_bytes())
            for d, p in announced
        ],
    )

    async def finished() -> list[str]:
        runs = (await api(service, "GET", "/api/runs"))["runs"]
        return sorted(r["pipeline_id"] for r in runs if r["state"] == "success")

    ended = ["customer_dimension", "orders_daily", "revenue_report"]
    await eventually(finished, lambda done: done == ended, 60, "the example runs")
    page = await signed_in(browser, service, OPERATOR)
    rows = page.locator("tr[data-pipeline]")
    await expect(rows).to_have_count(4)
    shown = [await r.get_attribute("data-pipeline") for r in await rows.all()]
    assert shown == ["customer_dimension", "orders_daily", "orders_quality", "revenue_report"]
    for pipeline in ended:
        squares = page.locator(f'[data-pipeline-runs="{pipeline}"] .square.state-success')
        await expect(squares).to_have_count(1)
    await expect(page.locator("#live")).to_have_text("live")  # fed by Redis
    await page.screenshot(path=screenshots / "pipelines.png", full_page=True)
    await page.get_by_label("Domain").select_option("sales")
    await page.get_by_role("button", name="Filter").click()
    await expect(rows).to_have_count(2)  # orders_daily and orders_quality
    await page.get_by_role("link", name="Datasets").click()
    await expect(page.locator("h1")).to_have_text("Datasets")
    await expect(page.get_by_role("link", name="dim_customer")).to_be_visible()
    await page.screenshot(path=screenshots / "datasets.png", full_page=True)
    await page.get_by_role("link", name="Dead letters").click()
    await page.screenshot(path=screenshots / "dead-letters.png", full_page=True)


async def test_a_runs_graph_turns_green_live_and_the_heat_map_has_a_cell_per_task_and_date(
    run_service: RunService, browser: Browser, tmp_path: Path, screenshots: Path
) -> None:
    gates = tmp_path / "gates"
    gates.mkdir()
    service = await run_service("gated", env={"GATE_DIR": str(gates)}, api_tokens=TOKENS)
    for day in ("2026-11-19", "2026-11-20"):
        (gates / day).touch()
        run_id = await start_run(service, "gated", day)
        await eventually(lambda r=run_id: run_state(service, r), "success".__eq__, 30, "a run")
    run_id = await start_run(service, "gated", "2026-11-21")
    page = await signed_in(browser, service, OPERATOR)
    await page.goto(page.url + f"runs/{run_id}")
    extract = page.locator('.node[data-task="extract"]')
    await expect(extract).to_have_class("node state-running")
    await page.evaluate("window.notReloaded = true")
    log = await page.context.new_page()
    await log.goto(page.url + "/tasks/extract")
    await expect(log.locator("#log-status")).to_have_text("following live…")
    (gates / "2026-11-21").touch()  # the gate opens: the rest of the run goes through
    await expect(log.locator("#log")).to_have_text("extracted 2026-11-21\n")
    await expect(log.locator("#log-status")).to_have_text("the attempt ended")
    for task in ("extract", "transform", "load"):
        node = page.locator(f'.node[data-task="{task}"]')
        await expect(node).to_have_class("node state-success")
        await expect(node.locator(".state-icon")).to_have_text("✓")
    await expect(page.locator("h1 .state")).to_have_class("state state-success")
    assert await page.evaluate("window.notReloaded") is True  # live, not a reload
    await page.reload()  # the Gantt and the history are drawn from PostgreSQL
    await expect(page.locator(".bar.state-success")).to_have_count(3)
    await page.screenshot(path=screenshots / "run.png", full_page=True)

    await page.locator('.node[data-task="extract"]').click()
    await expect(page.locator("#log")).to_contain_text("extracted 2026-11-21")
    await page.screenshot(path=screenshots / "attempt.png", full_page=True)

    await page.goto(page.url.split("/runs/")[0] + "/pipelines/gated")
    cells = page.locator("a[data-cell]")
    await expect(cells).to_have_count(3 * 3)
    title = await cells.first.get_attribute("title")
    assert title is not None
    assert "duration" in title
    assert "1 attempt" in title
    await page.screenshot(path=screenshots / "pipeline.png", full_page=True)


async def test_cancel_from_the_run_page_stops_the_task_and_a_viewer_is_refused(
    run_service: RunService, browser: Browser, tmp_path: Path
) -> None:
    gates = tmp_path / "gates"
    gates.mkdir()
    service = await run_service("sleeper", env={"GATE_DIR": str(gates)}, api_tokens=TOKENS)
    run_id = await start_run(service, "sleeper", "2026-11-21")
    pid_file = gates / "2026-11-21.pid"
    await eventually(lambda: asyncio.to_thread(pid_file.exists), bool, 30, "the task to start")
    pid = int(pid_file.read_text())

    viewer = await signed_in(browser, service, VIEWER)
    await viewer.goto(viewer.url + f"runs/{run_id}")
    await viewer.get_by_role("button", name="Cancel run").click()
    await viewer.get_by_label("Reason").fill("looks stuck")
    await viewer.get_by_role("button", name="Confirm").click()
    await expect(viewer.locator("#flash")).to_have_text("commands need an operator token (403)")
    assert await run_state(service, run_id) == "running"

    page = await signed_in(browser, service, OPERATOR)
    await page.goto(page.url + f"runs/{run_id}")
    await expect(page.locator('.node[data-task="sleep"]')).to_have_class("node state-running")
    await page.get_by_role("button", name="Cancel run").click()
    await expect(page.locator("#confirm")).to_be_visible()
    await page.get_by_label("Reason").fill("wrong day")
    await page.get_by_role("button", name="Confirm").click()
    await expect(page.locator("#flash")).to_contain_text("Cancel run: applied")
    await expect(page.locator("h1 .state")).to_have_class("state state-cancelled")
    await expect(page.locator('.node[data-task="sleep"]')).to_have_class("node state-cancelled")
    await expect(viewer.locator("h1 .state")).to_have_class("state state-cancelled")  # live too

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    await eventually(lambda: asyncio.to_thread(gone), bool, 30, f"process {pid} to be stopped")
