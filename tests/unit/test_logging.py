"""Logs: JSON lines, levels per destination, and secrets masked wherever they show up."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import orjson
import pytest

from service.observability import Redactor, configure_logging, get_logger


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://etl:hunter2@db:5432/w", "postgresql://etl:***@db:5432/w"),
        (
            "https://oapi.dingtalk.com/robot/send?access_token=abc123&timestamp=1",
            "https://oapi.dingtalk.com/robot/send?access_token=***&timestamp=1",
        ),
        (
            "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k-123",
            "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=***",
        ),
        (
            "https://open.feishu.cn/open-apis/bot/v2/hook/0123456789abcdef",
            "https://open.feishu.cn/open-apis/bot/v2/hook/***",
        ),
        (
            "https://hooks.slack.com/services/T000/B000/XXXXXXXX",
            "https://hooks.slack.com/services/***",
        ),
        ("the sasl password is s3cr3t-value", "the sasl password is ***"),
        ("nothing to hide here", "nothing to hide here"),
    ],
)
def test_texts_are_masked(text: str, expected: str) -> None:
    assert Redactor(["s3cr3t-value"]).text(text) == expected


def test_secret_named_fields_are_masked() -> None:
    event = Redactor()(
        None,
        "info",
        {"event": "x", "password": "p", "api_key": "k", "n": 3, "urls": ["redis://u:pw@h:6379/0"]},
    )
    assert event == {
        "event": "x",
        "password": "***",
        "api_key": "***",
        "n": 3,
        "urls": ["redis://u:***@h:6379/0"],
    }


def test_info_goes_to_the_stream_and_debug_to_the_rotating_file(tmp_path: Path) -> None:
    stream = io.StringIO()
    debug_file = tmp_path / "logs" / "debug.log"
    try:
        configure_logging("INFO", stream=stream, debug_file=debug_file, secrets=["tok-9876"])
        log = get_logger("test")
        log.debug("detail.step", token_hint="tok-9876")
        log.info("run.created", run_id="r1", url="https://x/hook/abcdefgh12345678?k=tok-9876")
    finally:
        for handler in logging.getLogger().handlers:
            handler.close()
        logging.getLogger().handlers[:] = []
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["run.created"]
    assert lines[0]["level"] == "info"
    assert lines[0]["ts"].endswith("Z")
    assert "tok-9876" not in stream.getvalue()
    written = debug_file.read_text()
    assert "detail.step" in written
    assert "run.created" in written
    assert "tok-9876" not in written


def test_console_lines_are_for_people_and_the_debug_file_stays_json(tmp_path: Path) -> None:
    stream = io.StringIO()
    debug_file = tmp_path / "debug.log"
    try:
        configure_logging(
            "INFO", stream=stream, debug_file=debug_file, secrets=["tok-9876"], console=True
        )
        get_logger("test").info("run.created", run_id="r1", token="tok-9876")
    finally:
        for handler in logging.getLogger().handlers:
            handler.close()
        logging.getLogger().handlers[:] = []
    [line] = stream.getvalue().splitlines()
    assert "run.created" in line
    assert "run_id=r1" in line
    assert not line.startswith("{")  # not JSON
    assert "tok-9876" not in line
    assert orjson.loads(debug_file.read_text().splitlines()[0])["event"] == "run.created"
