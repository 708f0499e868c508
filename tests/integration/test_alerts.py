"""Alerts to a real local HTTP server that behaves like a Feishu custom bot."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import logging
import time
from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import pytest
import structlog
from aiohttp import web

from service import devenv, metrics
from service.alerts.sender import AlertSender, ErrorAlerts, dead_letter_alert
from service.alerts.sinks import DingTalkSink, FeishuSink, SlackSink, WebhookSink, WeComSink
from service.bus.dead_letter import DeadLetter
from service.clock import parse_timestamp
from service.engine.states import RunState, TaskState
from service.events import CloudEvent, RunStatus, TaskStatus, new_event
from service.observability import configure_logging, get_logger
from tests.support import Background, eventually, settled

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


BASE: dict[str, Any] = {
    "run_id": "20261121-010203-abcd",
    "pipeline_id": "orders_daily",
    "batch_date": date(2026, 11, 21),
    "trace_id": "t" * 32,
    "at": parse_timestamp("2026-11-21T01:02:03Z"),
    "reason": "attempt 3 ended failed: exit code 2",
}


def task_status(state: str, **data: Any) -> CloudEvent:
    fields = {**BASE, "previous_state": TaskState.RUNNING, **data}
    return new_event(TaskStatus(state=TaskState(state), **fields), "urn:t")


def run_status(state: str, **data: Any) -> CloudEvent:
    fields = {**BASE, "previous_state": RunState.RUNNING, **data}
    return new_event(RunStatus(state=RunState(state), **fields), "urn:t")


FAILED = task_status(
    "failed",
    task_id="load",
    attempt=3,
    max_attempts=3,
    exit_code=2,
    error_snippet="psycopg.OperationalError: connection refused",
)


def permanent_failures() -> float:
    labels = {"sink": "feishu", "why": "permanent"}
    return metrics.REGISTRY.get_sample_value("tributary_alerts_failed_total", labels) or 0.0


def sender_for(url: str, secret: str = SECRET, window: float = 300) -> AlertSender:
    sink = FeishuSink(url=url, secret=secret, min_interval=0.01)
    return AlertSender(
        {"default": [sink]},
        "https://tributary.example/runs/{run_id}",
        "https://logs.example/search?trace={trace_id}",
        window,
    )


async def test_a_failed_task_becomes_one_signed_card(
    bot: tuple[FeishuBot, str], background: Background
) -> None:
    fake, url = bot
    sender = sender_for(url)
    background(sender.run())
    sender.offer([FAILED, task_status("running", task_id="x", attempt=1)])
    await eventually(lambda: settled(len(fake.cards)), lambda n: n == 1, 10, "a card")
    card = fake.cards[0]
    text = str(card)
    assert card["msg_type"] == "interactive"
    assert card["card"]["header"]["title"]["content"] == "Task failed: orders_daily / load"
    assert "connection refused" in text
    assert "exit code 2" in text
    assert "attempt 3 of 3" in text  # the attempts its own version allows, from the event
    assert "more like this" not in text  # the first of its window
    assert "https://tributary.example/runs/20261121-010203-abcd" in text
    assert f"https://logs.example/search?trace={'t' * 32}" in text


async def test_rate_limits_are_retried_and_bad_signatures_given_up(
    bot: tuple[FeishuBot, str], background: Background
) -> None:
    fake, url = bot
    fake.rate_limit_first = 2
    sender = sender_for(url)
    background(sender.run())
    sender.offer([FAILED])
    await eventually(lambda: settled(len(fake.cards)), lambda n: n == 1, 20, "a card")
    assert fake.requests == 3  # two 11232 answers, then accepted
    failed_before = permanent_failures()
    wrong = sender_for(url, secret="not-the-secret")
    background(wrong.run())
    wrong.offer([FAILED])
    await eventually(
        lambda: settled(permanent_failures()),
        lambda n: n == failed_before + 1,
        10,
        "the sign mismatch to be given up",
    )
    assert fake.requests == 4  # a permanent error is not retried


async def test_repeats_fold_into_one_summary_and_recovery_is_announced(
    bot: tuple[FeishuBot, str], background: Background
) -> None:
    fake, url = bot
    sender = sender_for(url, window=0.5)
    background(sender.run())
    sender.offer([FAILED, FAILED, FAILED])
    await eventually(
        lambda: settled(len(fake.cards)), lambda n: n == 2, 10, "the first card and the summary"
    )
    assert "more like this" not in str(fake.cards[0])
    assert "2 more like this" in str(fake.cards[1])
    sender.offer([run_status("success")])
    await eventually(lambda: settled(len(fake.cards)), lambda n: n == 3, 10, "the recovery")
    assert fake.cards[2]["card"]["header"]["title"]["content"] == "Recovered: orders_daily"


class OtherBots:
    """Slack, DingTalk (its own signing), WeCom and a generic signed webhook, as real servers."""

    def __init__(self) -> None:
        self.got: dict[str, list[Any]] = {"slack": [], "dingtalk": [], "wecom": [], "webhook": []}

    async def slack(self, request: web.Request) -> web.Response:
        self.got["slack"].append(await request.json())
        return web.Response(text="ok")

    async def dingtalk(self, request: web.Request) -> web.Response:
        stamp, sign = request.query["timestamp"], request.query["sign"]
        digest = hmac.new(SECRET.encode(), f"{stamp}\n{SECRET}".encode(), hashlib.sha256).digest()
        if sign != base64.b64encode(digest).decode():
            return web.json_response({"errcode": 310000, "errmsg": "sign not match"})
        self.got["dingtalk"].append(await request.json())
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def wecom(self, request: web.Request) -> web.Response:
        self.got["wecom"].append(await request.json())
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def webhook(self, request: web.Request) -> web.Response:
        body = await request.read()
        stamp = request.headers["X-Tributary-Timestamp"]
        digest = hmac.new(SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256)
        if request.headers["X-Tributary-Signature"] != f"sha256={digest.hexdigest()}":
            return web.Response(status=401)
        self.got["webhook"].append(await request.json())
        return web.Response(status=204)


async def test_every_sink_signs_its_own_way_and_routes_pick_them(background: Background) -> None:
    bots = OtherBots()
    app = web.Application()
    for name in bots.got:
        app.router.add_post(f"/{name}", getattr(bots, name))
    runner = web.AppRunner(app)
    await runner.setup()
    port = devenv.free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    base = f"http://127.0.0.1:{port}"
    slack = SlackSink(url=f"{base}/slack", min_interval=0.01)
    ding = DingTalkSink(url=f"{base}/dingtalk?access_token=x", secret=SECRET, min_interval=0.01)
    wecom = WeComSink(url=f"{base}/wecom?key=x", min_interval=0.01)
    hook = WebhookSink(url=f"{base}/webhook", secret=SECRET, min_interval=0.01)
    routes = {"sales": [slack, ding], "orders_daily": [wecom, hook], "default": [slack]}
    domains = {"orders_daily": "sales", "ledger": "finance"}
    sender = AlertSender(
        routes, "https://t.example/{run_id}", "https://l.example/{trace_id}", 300, domains.get
    )
    background(sender.run())
    try:
        sender.offer([FAILED])  # orders_daily: its own route wins over its domain's
        ledger = task_status("timed_out", pipeline_id="ledger", task_id="post", attempt=1)
        sender.offer([ledger])  # finance has no route: default
        await eventually(lambda: settled(sender.sent), lambda n: n == 3, 10, "three deliveries")
    finally:
        await runner.cleanup()
    assert len(bots.got["wecom"]) == len(bots.got["webhook"]) == len(bots.got["slack"]) == 1
    assert bots.got["dingtalk"] == []
    assert bots.got["webhook"][0]["task_id"] == "load"
    assert "Task timed out: ledger / post" in bots.got["slack"][0]["text"]
    assert "connection refused" in bots.got["wecom"][0]["markdown"]["content"]


def test_feishu_and_dingtalk_each_sign_as_their_documentation_says() -> None:
    from urllib.parse import parse_qs, urlsplit

    from service.alerts.feishu import sign as feishu_sign
    from service.alerts.sinks import dingtalk_url

    stamp = 1700000000
    # Feishu: HMAC-SHA256 keyed by "timestamp\nsecret", of an empty message, base64.
    feishu_key = f"{stamp}\n{SECRET}".encode()
    feishu = base64.b64encode(hmac.new(feishu_key, b"", hashlib.sha256).digest()).decode()
    assert feishu_sign(stamp, SECRET) == feishu
    # DingTalk: HMAC-SHA256 keyed by the secret, of "timestamp\nsecret", base64, in the URL.
    message = f"{stamp}\n{SECRET}".encode()
    dingtalk = base64.b64encode(hmac.new(SECRET.encode(), message, hashlib.sha256).digest())
    url = dingtalk_url("https://oapi.dingtalk.com/robot/send?access_token=x", SECRET, stamp)
    query = parse_qs(urlsplit(url).query)
    assert query["timestamp"] == [str(stamp)]
    assert query["sign"] == [dingtalk.decode()]
    # The same timestamp and secret sign differently: one function for both would be a bug.
    assert query["sign"] != [feishu]


async def test_dead_letters_and_service_errors_alert_too(
    bot: tuple[FeishuBot, str], background: Background
) -> None:
    fake, url = bot
    sender = sender_for(url)
    configure_logging("INFO", stream=io.StringIO())  # as the service does: via stdlib logging
    handler = ErrorAlerts(sender)
    logging.getLogger().addHandler(handler)
    background(sender.run())
    try:
        # The alerting's own error first: had it become an alert, it would be the first card.
        get_logger("service.alerts.sender").error("alert.failed", reason="code 19021")
        sender.raise_alert(
            dead_letter_alert(
                DeadLetter(b"k", b"{oops", "not JSON: unexpected", "tributary.triggers", 2, 41)
            )
        )
        get_logger("service.loops.relay").error("relay.broken", error="KafkaTimeoutError()")
        await eventually(lambda: settled(len(fake.cards)), lambda n: n == 2, 10, "two cards")
    finally:
        for each in logging.getLogger().handlers:
            each.close()
        logging.getLogger().handlers[:] = []
        structlog.reset_defaults()
    titles = [c["card"]["header"]["title"]["content"] for c in fake.cards]
    assert titles == [
        "Event dead-lettered: (service) / tributary.triggers",
        "Service error: (service) / relay.broken",
    ]
    assert "tributary.triggers[2]@41" in str(fake.cards[0])
    assert "KafkaTimeoutError" in str(fake.cards[1])


async def test_a_dead_or_slow_sink_gives_up_and_holds_back_no_other(
    bot: tuple[FeishuBot, str], background: Background
) -> None:
    fake, url = bot

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.json_response({"code": 0})

    app = web.Application()
    app.router.add_post("/slow", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    port = devenv.free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    dead = WebhookSink(
        url=f"http://127.0.0.1:{devenv.free_port()}/gone", name="dead", min_interval=0.01
    )
    sluggish = FeishuSink(
        url=f"http://127.0.0.1:{port}/slow", name="slow", min_interval=0.01, timeout=0.2
    )
    healthy = FeishuSink(url=url, secret=SECRET, min_interval=0.01)
    sender = AlertSender(
        {"default": [dead, sluggish, healthy]},
        "https://t/{run_id}",
        "https://l/{trace_id}",
        300,
        first_backoff=0.05,
        max_tries=3,
    )
    background(sender.run())
    try:
        sender.offer([FAILED])  # returns at once, whatever the sinks do
        await eventually(
            lambda: settled(len(fake.cards)),
            lambda n: n == 1,
            5,
            "the healthy sink's card",
        )

        def gave_up(name: str) -> float:
            labels = {"sink": name, "why": "gave up"}
            return metrics.REGISTRY.get_sample_value("tributary_alerts_failed_total", labels) or 0

        await eventually(
            lambda: settled(gave_up("dead") + gave_up("slow")),
            lambda n: n == 2,
            10,
            "the dead and the slow sink to give up",
        )
    finally:
        await runner.cleanup()
    assert "attempt 3" in str(fake.cards[0])
