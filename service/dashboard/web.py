"""The service's whole HTTP app: the API (``service.api``) plus the dashboard's pages, its
static files, its live feed and signing in. Pages need a signed-in token whenever API tokens
are configured, as the API does; signing in sets the token as an HttpOnly, SameSite=Strict
cookie (see ``service.api.auth``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import quote

from aiohttp import web

from service.api.auth import ANONYMOUS, COOKIE, WHO, Tokens
from service.api.http import BadRequest, ReadinessCheck, make_app
from service.api.responses import TITLES, ProblemError
from service.dashboard.feed import LiveFeed
from service.dashboard.live import LiveEvents
from service.dashboard.pages import Pages
from service.dashboard.run_pages import RunPages
from service.dashboard.templates import Templates
from service.live_state import LiveState
from service.orchestrator.batch import BatchApplier
from service.pipelines import PipelineRegistry
from service.store import Store

STATIC = Path(__file__).with_name("static")
SIGN_IN_DAYS = 7


def make_web_app(
    store: Store,
    readiness: ReadinessCheck,
    live: LiveState | None = None,
    registry: PipelineRegistry | None = None,
    applier: BatchApplier | None = None,
    tokens: Tokens | None = None,
    log_dir: Path | None = None,
) -> web.Application:
    tokens = tokens or Tokens({})
    app = make_app(store, readiness, live, registry, applier, tokens, log_dir)
    templates = Templates()
    feed = LiveFeed(store, live)
    guard = SignIn(tokens, templates)
    app.add_routes(guard.routes())
    app.add_routes(LiveEvents(feed).routes())
    if registry is not None:
        app.add_routes(guard.protect(Pages(store, registry, templates).routes()))
        app.add_routes(guard.protect(RunPages(store, registry, templates).routes()))
    app.router.add_static("/static/", STATIC, append_version=False)
    app.on_shutdown.append(lambda _: feed.close())
    return app


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class SignIn:
    """The sign-in page, signing out, and the guard of every page."""

    def __init__(self, tokens: Tokens, templates: Templates) -> None:
        self._tokens = tokens
        self._templates = templates

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/login", self.form),
            web.post("/login", self.sign_in),
            web.post("/logout", self.sign_out),
        ]

    def protect(self, routes: list[web.RouteDef]) -> list[web.RouteDef]:
        return [web.route(r.method, r.path, self._guarded(r.handler)) for r in routes]

    def _guarded(self, handler: Handler) -> Handler:
        async def page(request: web.Request) -> web.StreamResponse:
            if self._tokens.configured and request.get(WHO, ANONYMOUS) == ANONYMOUS:
                raise web.HTTPSeeOther(f"/login?next={quote(request.path_qs)}")
            try:
                return await handler(request)
            except (ProblemError, BadRequest) as exc:
                status = exc.status if isinstance(exc, ProblemError) else 400
                title = TITLES.get(status, "Error")
                return self._templates.render(
                    request, "error.html", status=status, title=title, detail=str(exc)
                )

        page.__doc__ = handler.__doc__
        return page

    async def form(self, request: web.Request) -> web.Response:
        return self._templates.render(
            request, "login.html", next=_local(request.query.get("next", "/")), error=""
        )

    async def sign_in(self, request: web.Request) -> web.Response:
        form = await request.post()
        token, target = str(form.get("token", "")), _local(str(form.get("next", "/")))
        if self._tokens.holder(token) is None:
            return self._templates.render(
                request, "login.html", status=401, next=target, error="That token is not known."
            )
        response = web.HTTPSeeOther(target)
        response.set_cookie(
            COOKIE,
            token,
            max_age=SIGN_IN_DAYS * 86400,
            httponly=True,
            samesite="Strict",
            secure=request.secure,
            path="/",
        )
        raise response

    async def sign_out(self, request: web.Request) -> web.Response:
        response = web.HTTPSeeOther("/login" if self._tokens.configured else "/")
        response.del_cookie(COOKIE, path="/")
        raise response


def _local(target: str) -> str:
    """Only a path of this site: never send a signed-in person elsewhere."""
    local = target.startswith("/") and not target.startswith(("//", "/\\"))
    return target if local else "/"
