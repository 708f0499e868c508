"""Chat sinks: each builds its own message, signs it its own way, and reads its own answers.

Facts per sink (shared/REFERENCE.md): Feishu and DingTalk sign differently (one function for
both would be a bug); Slack and WeCom put the secret in the URL; the generic webhook signs the
body with an HMAC header. Retryable answers: HTTP 429/5xx, Feishu 11232, DingTalk
410100/130101/-1, WeCom 45009. Everything else that is not success is permanent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import urllib.parse
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

import aiohttp
import orjson

from service.alerts import feishu
from service.alerts.rules import Alert

REQUEST_TIMEOUT = 10.0  # seconds per delivery attempt
WECOM_MARKDOWN_BYTES = 4096
DINGTALK_RETRYABLE = frozenset({410100, 130101, -1})
WECOM_RETRYABLE = frozenset({45009})
SinkType = Literal["feishu", "slack", "dingtalk", "wecom", "webhook"]


@dataclass(frozen=True, slots=True)
class Delivery:
    ok: bool
    retry: bool = False
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Message:
    alert: Alert
    folded: int  # how many more like it the fold window held back
    run_url: str
    logs_url: str

    @property
    def title(self) -> str:
        title, _ = feishu.TITLES.get(self.alert.kind, (self.alert.kind, ""))
        where = self.alert.pipeline_id + (f" / {self.alert.task_id}" if self.alert.task_id else "")
        return f"{title}: {where}"

    def lines(self) -> list[str]:
        a = self.alert
        lines = [f"batch date {a.batch_date}, run {a.run_id}"]
        if a.task_id:
            ended = a.signal or (f"exit code {a.exit_code}" if a.exit_code is not None else "")
            lines.append(f"task {a.task_id}, attempt {a.attempt}" + (f", {ended}" if ended else ""))
        if a.error_snippet:
            lines.append(a.error_snippet)
        if self.folded:
            lines.append(f"{self.folded} more like this since the last message")
        return lines


class Sink(Protocol):
    name: str
    min_interval: float  # seconds between two messages, within the service's own limits

    async def deliver(self, session: aiohttp.ClientSession, message: Message) -> Delivery: ...


async def _post(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: dict[str, str] | None = None,
    request_seconds: float = REQUEST_TIMEOUT,
) -> tuple[int, Any] | Delivery:
    """POST; a Delivery to retry on transport errors and HTTP 429/5xx, else (status, body)."""
    try:
        async with session.post(
            url,
            data=body,
            timeout=aiohttp.ClientTimeout(total=request_seconds),
            headers={"Content-Type": "application/json", **(headers or {})},
        ) as r:
            if r.status == 429 or r.status >= 500:
                return Delivery(False, retry=True, reason=f"HTTP {r.status}")
            text = await r.text()
    except (aiohttp.ClientError, TimeoutError) as exc:
        return Delivery(False, retry=True, reason=repr(exc))
    try:
        return r.status, orjson.loads(text) if text.strip()[:1] in ("{", "[") else text
    except orjson.JSONDecodeError:
        return r.status, text


def _by_code(answer: tuple[int, Any] | Delivery, key: str, retryable: frozenset[int]) -> Delivery:
    if isinstance(answer, Delivery):
        return answer
    status, body = answer
    if status != 200:
        return Delivery(False, reason=f"HTTP {status}: {str(body)[:200]}")
    code = body.get(key, -1) if isinstance(body, dict) else -1
    if code == 0:
        return Delivery(True)
    message = body.get("msg") or body.get("errmsg") or "" if isinstance(body, dict) else body
    return Delivery(False, retry=code in retryable, reason=f"{key} {code}: {message}")


@dataclass
class FeishuSink:
    url: str
    secret: str | None = None
    name: str = "feishu"
    min_interval: float = 0.25  # 5/s and 100/min per bot
    timeout: float = REQUEST_TIMEOUT  # seconds per delivery attempt

    async def deliver(self, session: aiohttp.ClientSession, message: Message) -> Delivery:
        body = feishu.card(message.alert, message.folded, message.run_url, message.logs_url)
        signed = feishu.signed_body(body, self.secret, int(time.time()))
        answer = await _post(session, self.url, orjson.dumps(signed), request_seconds=self.timeout)
        if not isinstance(answer, Delivery) and isinstance(answer[1], dict):
            answer = (
                answer[0],
                {
                    "code": answer[1].get("code", answer[1].get("StatusCode", -1)),
                    "msg": answer[1].get("msg", ""),
                },
            )
        return _by_code(answer, "code", feishu.RETRYABLE_CODES)


@dataclass
class SlackSink:
    url: str  # the URL is the secret
    name: str = "slack"
    min_interval: float = 1.0
    timeout: float = REQUEST_TIMEOUT  # seconds per delivery attempt

    async def deliver(self, session: aiohttp.ClientSession, message: Message) -> Delivery:
        text = f"*{message.title}*\n" + "\n".join(message.lines())
        body = {
            "text": text,
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": text}},
                {
                    "type": "actions",
                    "elements": [
                        {
                            "type": "button",
                            "text": {"type": "plain_text", "text": "Open run"},
                            "url": message.run_url,
                        },
                        {
                            "type": "button",
                            "text": {"type": "plain_text", "text": "Logs"},
                            "url": message.logs_url,
                        },
                    ],
                },
            ],
        }
        answer = await _post(session, self.url, orjson.dumps(body), request_seconds=self.timeout)
        if isinstance(answer, Delivery):
            return answer
        status, reply = answer
        if status == 200:
            return Delivery(True)
        return Delivery(False, reason=f"HTTP {status}: {str(reply)[:200]}")


def dingtalk_url(url: str, secret: str | None, now_ms: int) -> str:
    """DingTalk signs the URL: HMAC-SHA256 keyed by the secret, of "timestamp\\nsecret"."""
    if not secret:
        return url
    digest = hmac.new(secret.encode(), f"{now_ms}\n{secret}".encode(), hashlib.sha256).digest()
    sign = urllib.parse.quote_plus(base64.b64encode(digest))
    return f"{url}&timestamp={now_ms}&sign={sign}"


@dataclass
class DingTalkSink:
    url: str
    secret: str | None = None
    name: str = "dingtalk"
    min_interval: float = 3.0  # 20 per minute per robot
    timeout: float = REQUEST_TIMEOUT  # seconds per delivery attempt

    async def deliver(self, session: aiohttp.ClientSession, message: Message) -> Delivery:
        text = (
            f"### {message.title}\n\n"
            + "\n\n".join(message.lines())
            + f"\n\n[Open run]({message.run_url}) · [Logs]({message.logs_url})"
        )
        body = {"msgtype": "markdown", "markdown": {"title": message.title, "text": text}}
        url = dingtalk_url(self.url, self.secret, int(time.time() * 1000))
        return _by_code(
            await _post(session, url, orjson.dumps(body), request_seconds=self.timeout),
            "errcode",
            DINGTALK_RETRYABLE,
        )


@dataclass
class WeComSink:
    url: str  # the key in the URL is the secret
    name: str = "wecom"
    min_interval: float = 3.0  # 20 per minute
    timeout: float = REQUEST_TIMEOUT  # seconds per delivery attempt

    async def deliver(self, session: aiohttp.ClientSession, message: Message) -> Delivery:
        content = (
            f"**{message.title}**\n"
            + "\n".join(message.lines())
            + f"\n[Open run]({message.run_url})"
        )
        encoded = content.encode()[:WECOM_MARKDOWN_BYTES].decode(errors="ignore")
        body = {"msgtype": "markdown", "markdown": {"content": encoded}}
        return _by_code(
            await _post(session, self.url, orjson.dumps(body), request_seconds=self.timeout),
            "errcode",
            WECOM_RETRYABLE,
        )


@dataclass
class WebhookSink:
    """Any HTTP endpoint: the alert as JSON, signed with an HMAC-SHA256 header when a secret
    is set: ``X-Tributary-Signature: sha256=<hex of HMAC(secret, timestamp + "." + body)>``."""

    url: str
    secret: str | None = None
    name: str = "webhook"
    min_interval: float = 0.1
    timeout: float = REQUEST_TIMEOUT  # seconds per delivery attempt

    async def deliver(self, session: aiohttp.ClientSession, message: Message) -> Delivery:
        body = orjson.dumps(
            {
                **asdict(message.alert),
                "folded": message.folded,
                "run_url": message.run_url,
                "logs_url": message.logs_url,
                "title": message.title,
            }
        )
        headers = {}
        if self.secret:
            stamp = str(int(time.time()))
            digest = hmac.new(
                self.secret.encode(), stamp.encode() + b"." + body, hashlib.sha256
            ).hexdigest()
            headers = {"X-Tributary-Timestamp": stamp, "X-Tributary-Signature": f"sha256={digest}"}
        answer = await _post(session, self.url, body, headers, self.timeout)
        if isinstance(answer, Delivery):
            return answer
        status, reply = answer
        if 200 <= status < 300:
            return Delivery(True)
        return Delivery(False, reason=f"HTTP {status}: {str(reply)[:200]}")


def make_sink(name: str, config: dict[str, Any]) -> Sink:
    """A sink from its settings entry: {"type": ..., "url": ..., "secret": ...}."""
    kind, url, secret = config.get("type"), config.get("url"), config.get("secret")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValueError(f"alert sink {name!r}: 'url' must be an http(s) URL")
    sinks: dict[str, Any] = {
        "feishu": FeishuSink,
        "slack": SlackSink,
        "dingtalk": DingTalkSink,
        "wecom": WeComSink,
        "webhook": WebhookSink,
    }
    if kind not in sinks:
        raise ValueError(f"alert sink {name!r}: 'type' must be one of {sorted(sinks)}")
    sink: Sink = sinks[kind](
        url=url,
        name=name,
        **({"secret": secret} if kind in ("feishu", "dingtalk", "webhook") else {}),
    )
    return sink
