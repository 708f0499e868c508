"""The dashboard's HTML: Jinja2 templates (autoescaped) and the filters they use, rendered
into responses that carry who is signed in and a strict content security policy (scripts
and styles only from this service: no inline script, no CDN)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from aiohttp import web
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from service.api.auth import ROLE, WHO
from service.dashboard import figures

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def when(value: datetime | None) -> str:
    return figures.NOTHING if value is None else f"{value:%Y-%m-%d %H:%M:%S} UTC"


def pretty(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()


def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("service.dashboard"),
        autoescape=select_autoescape(default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        icon=figures.icon,
        word=figures.word,
        duration=figures.duration_text,
        when=when,
        pretty=pretty,
    )
    return env


class Templates:
    def __init__(self) -> None:
        self._env = environment()

    def render(
        self, request: web.Request, name: str, status: int = 200, **context: Any
    ) -> web.Response:
        context.setdefault("section", "")
        page = self._env.get_template(name).render(
            who=request.get(WHO, "anonymous"), role=request.get(ROLE, "viewer"), **context
        )
        return web.Response(
            text=page, status=status, content_type="text/html", headers=SECURITY_HEADERS
        )
