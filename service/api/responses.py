"""What the API answers: JSON, and errors as ``application/problem+json`` (RFC 9457) — a
status, a title, and a detail a person can act on (``error`` repeats it for clients of the
first API)."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS),
        status=status,
        content_type="application/json",
    )


def problem(status: int, title: str, detail: str, **extra: Any) -> web.Response:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return web.Response(
        body=orjson.dumps({**body, "error": detail, **extra}),
        status=status,
        content_type="application/problem+json",
    )


TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    503: "Service Unavailable",
}


class ProblemError(Exception):
    """Raised by a handler: answered as a problem (see :func:`problem_responses`)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail

    def response(self) -> web.Response:
        return problem(self.status, TITLES.get(self.status, "Error"), self.detail)
