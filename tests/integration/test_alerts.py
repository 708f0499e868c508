"""Alerts to a real local HTTP server that behaves like a Feishu custom bot."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from service import devenv, metrics
from service.alerts.sender import AlertSender, FeishuSink
from service.bus.envelope import RUN_STATUS, TASK_STATUS, new_event
from service.store.records import OutboxMessage
from tests.support import eventually

SECRET = "bot-secret"


class FeishuBot:
    """Checks the signature as Feishu does and answers with its codes (a real HTTP server)."""

    def __init__(self) -> None:
        self.cards: list[dict[str, Any]] = []
        self.requests = 0
        self.rate_limit_first = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        body = await request.json()
        timestamp = int(body.get("timestamp", 0))
        key = f"{timestamp}\n{SECRET}".encode()  # Feishu: HMAC-SHA256 of an empty message
        expected = base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
        if abs(time.time() - timestamp) > 3600 or body.get("sign") != expected:
            return web.json_response(
                {
                    "code": 19021,
                    "msg": "sign match fail or timestamp is not within one hour from current time",
                }
            )
        if self.rate_limit_first > 0:
            self.rate_limit_first -= 1
            return web.json_response({"code": 11232, "msg": "frequency limited"})
        self.cards.append(body)
        return web.json_response({"code": 0, "msg": "success", "data": {}})


@pytest.fixture
async def bot() -> AsyncIterator[tuple[FeishuBot, str]]:
    fake = FeishuBot()
    app = web.Application()
    app.router.add_post("/open-apis/bot/v2/hook/token", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = devenv.free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield fake, f"http://127.0.0.1:{port}/open-apis/bot/v2/hook/token"
    await runner.cleanup()


def status(kind: str, **data: Any) -> OutboxMessage:
    base = {
        "run_id": "20261121-010203-abcd",
        "pipeline_id": "orders_daily",
        "batch_date": "2026-11-21",
        "trace_id": "t" * 32,
        "at": "2026-11-21T01:02:03Z",
        "reason": "attempt 3 ended failed: exit code 2",
    }
    return OutboxMessage(
        1, "s", base["run_id"], new_event(kind, "urn:t", {**base, **data}).to_bytes()
    )


FAILED = status(
    TASK_STATUS,
    task_id="load",
    attempt=3,
    state="failed",
    exit_code=2,
    error_snippet="psycopg.OperationalError: connection refused",
)


async def sending(sender: AlertSender) -> asyncio.Task[None]:
    return asyncio.create_task(sender.run())


def permanent_failures() -> float:
    labels = {"sink": "feishu", "why": "permanent"}
    return metrics.REGISTRY.get_sample_value("tributary_alerts_failed_total", labels) or 0.0


def sender_for(url: str, secret: str = SECRET, window: float = 300) -> AlertSender:
    return AlertSender(
        FeishuSink(url, secret, min_interval=0.01),
        "https://tributary.example/runs/{run_id}",
        "https://logs.example/search?trace={trace_id}",
        window,
    )


async def test_a_failed_task_becomes_one_signed_card(bot: tuple[FeishuBot, str]) -> None:
    fake, url = bot
    sender = sender_for(url)
    loop = await sending(sender)
    try:
        sender.offer([FAILED, status(TASK_STATUS, task_id="x", attempt=1, state="running")])
        await eventually(lambda: asyncio.sleep(0, len(fake.cards)), lambda n: n == 1, 10, "a card")
    finally:
        loop.cancel()
    card = fake.cards[0]
    text = str(card)
    assert card["msg_type"] == "interactive"
    assert card["card"]["header"]["title"]["content"] == "Task failed: orders_daily / load"
    assert "connection refused" in text
    assert "exit code 2" in text
    assert "attempt 3" in text
    assert "more like this" not in text  # the first of its window
    assert "https://tributary.example/runs/20261121-010203-abcd" in text
    assert f"https://logs.example/search?trace={'t' * 32}" in text


async def test_rate_limits_are_retried_and_bad_signatures_given_up(
    bot: tuple[FeishuBot, str],
) -> None:
    fake, url = bot
    fake.rate_limit_first = 2
    sender = sender_for(url)
    loop = await sending(sender)
    try:
        sender.offer([FAILED])
        await eventually(lambda: asyncio.sleep(0, len(fake.cards)), lambda n: n == 1, 20, "a card")
        assert fake.requests == 3  # two 11232 answers, then accepted
        failed_before = permanent_failures()
        wrong = sender_for(url, secret="not-the-secret")
        wrong_loop = await sending(wrong)
        wrong.offer([FAILED])
        await eventually(
            lambda: asyncio.sleep(0, permanent_failures()),
            lambda n: n == failed_before + 1,
            10,
            "the sign mismatch to be given up",
        )
        wrong_loop.cancel()
        assert fake.requests == 4  # a permanent error is not retried
    finally:
        loop.cancel()


async def test_repeats_fold_into_one_summary_and_recovery_is_announced(
    bot: tuple[FeishuBot, str],
) -> None:
    fake, url = bot
    sender = sender_for(url, window=0.5)
    loop = await sending(sender)
    try:
        sender.offer([FAILED, FAILED, FAILED])
        await eventually(
            lambda: asyncio.sleep(0, len(fake.cards)),
            lambda n: n == 2,
            10,
            "the first card and the summary",
        )
        assert "more like this" not in str(fake.cards[0])
        assert "2 more like this" in str(fake.cards[1])
        sender.offer([status(RUN_STATUS, state="success", previous_state="running")])
        await eventually(
            lambda: asyncio.sleep(0, len(fake.cards)), lambda n: n == 3, 10, "the recovery"
        )
        assert fake.cards[2]["card"]["header"]["title"]["content"] == "Recovered: orders_daily"
    finally:
        loop.cancel()
