"""Feishu / Lark custom bot: an interactive card, signed as Feishu specifies.

Signing (open.feishu.cn, custom bot security settings): ``timestamp`` in Unix seconds;
key = ``f"{timestamp}\\n{secret}"``; HMAC-SHA256 of an **empty** message with that key;
base64. Both go top-level in the body. Feishu answers HTTP 200 and puts the result in
``code``: 0 ok, 11232 rate limited (retry); 9499, 19021, 19022, 19024 are configuration
problems (give up). DingTalk signs differently: this function is Feishu's only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from service.alerts.rules import RECOVERED, RUN_CANCELLED, RUN_FAILED, TASK_TIMED_OUT, Alert

RETRYABLE_CODES = frozenset({11232})
PERMANENT_CODES = frozenset({9499, 19021, 19022, 19024})
TITLES = {
    "task_failed": ("Task failed", "red"),
    TASK_TIMED_OUT: ("Task timed out", "orange"),
    RUN_FAILED: ("Run failed", "red"),
    RUN_CANCELLED: ("Run cancelled", "grey"),
    RECOVERED: ("Recovered", "green"),
    "dead_letter": ("Event dead-lettered", "orange"),
    "service_error": ("Service error", "red"),
    "sla_missed": ("SLA missed", "orange"),
}


def sign(timestamp: int, secret: str) -> str:
    key = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


def card(alert: Alert, folded: int, dashboard_url: str, logs_url: str) -> dict[str, Any]:
    """The interactive card for ``alert``; ``folded``: how many more like it the fold window
    held back (0 for the first of a window)."""
    title, color = TITLES.get(alert.kind, (alert.kind, "blue"))
    where = f"{alert.pipeline_id}" + (f" / {alert.task_id}" if alert.task_id else "")
    elements: list[dict[str, Any]] = [
        {
            "tag": "div",
            "fields": [
                {"is_short": True, "text": {"tag": "lark_md", "content": f"**{k}**\n{v}"}}
                for k, v in facts(alert, folded)
            ],
        }
    ]
    if alert.error_snippet:
        elements.append(
            {
                "tag": "div",
                "text": {"tag": "lark_md", "content": f"```\n{alert.error_snippet}\n```"},
            }
        )
    if alert.reason:
        elements.append(
            {"tag": "note", "elements": [{"tag": "plain_text", "content": alert.reason[:300]}]}
        )
    elements.append({"tag": "action", "actions": [_button("Open run", dashboard_url, True)]})
    elements[-1]["actions"].append(_button("Logs", logs_url))
    return {
        "msg_type": "interactive",
        "card": {
            "config": {"wide_screen_mode": True},
            "header": {
                "template": color,
                "title": {"tag": "plain_text", "content": f"{title}: {where}"},
            },
            "elements": elements,
        },
    }


def facts(alert: Alert, folded: int) -> list[tuple[str, str]]:
    """What a card says in its short fields, in order."""
    found = [
        ("Pipeline", alert.pipeline_id),
        ("Batch date", alert.batch_date),
        ("Run", alert.run_id),
    ]
    if alert.task_id:
        of = f" of {alert.max_attempts}" if alert.max_attempts else ""
        found.append(("Task", f"{alert.task_id} (attempt {alert.attempt}{of})"))
    if alert.duration_seconds is not None:
        found.append(("Duration", f"{alert.duration_seconds:g} s"))
    if alert.signal or alert.exit_code is not None:
        found.append(("Ended", alert.signal or f"exit code {alert.exit_code}"))
    if folded:
        found.append(("Folded", f"{folded} more like this since the last card"))
    return found


def _button(label: str, url: str, primary: bool = False) -> dict[str, Any]:
    button: dict[str, Any] = {"tag": "button", "text": {"tag": "plain_text", "content": label}}
    if primary:
        button["type"] = "primary"
    button["url"] = url
    return button


def signed_body(body: dict[str, Any], secret: str | None, now: int) -> dict[str, Any]:
    if not secret:
        return body
    return {"timestamp": str(now), "sign": sign(now, secret), **body}
