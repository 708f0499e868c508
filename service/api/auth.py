"""Who may do what over HTTP: bearer tokens from the api_tokens setting, each with a name and a
role — ``viewer`` reads, ``operator`` reads and acts. With tokens configured, every ``/api``
route needs one; commands always need an operator's. Tokens are compared in constant time and
never logged; the token's *name* is what the audit trail records.

Browsers (the dashboard) sign in once and send the token as an HttpOnly, SameSite=Strict
cookie instead of a header. A command carried by that cookie must also carry the
``X-Tributary-Action`` header, which no other site can make a browser send (no CORS here):
a page elsewhere cannot act in a signed-in operator's name."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from service.api.responses import ProblemError, problem

OPERATOR = "operator"
VIEWER = "viewer"
ANONYMOUS = "anonymous"
WHO = web.RequestKey("who", str)  # the token's name
ROLE = web.RequestKey("role", str)
COOKIE = "tributary_token"
ACTION_HEADER = "X-Tributary-Action"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Tokens:
    def __init__(self, roles: Mapping[str, tuple[str, str]]) -> None:
        self._roles = dict(roles)  # token -> (name, role)

    @property
    def configured(self) -> bool:
        return bool(self._roles)

    def who(self, header: str | None) -> tuple[str, str] | None:
        """(name, role) for an ``Authorization: Bearer …`` header, or None."""
        if not header or not header.startswith("Bearer "):
            return None
        return self.holder(header.removeprefix("Bearer ").strip())

    def holder(self, token: str) -> tuple[str, str] | None:
        """(name, role) of a token, or None."""
        given = token.encode()
        found = None
        for known, holder in self._roles.items():  # every token compared: constant time
            if hmac.compare_digest(given, known.encode()):
                found = holder
        return found


def authenticate(tokens: Tokens) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Middleware: who asks (``WHO``, ``ROLE``) for every request; 401 for an /api request
    without a token when tokens are configured (pages decide for themselves)."""

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        holder = tokens.who(request.headers.get("Authorization"))
        by_cookie = holder is None and COOKIE in request.cookies
        if by_cookie:
            holder = tokens.holder(request.cookies[COOKIE])
        request[WHO], request[ROLE] = holder or (ANONYMOUS, VIEWER)
        if not request.path.startswith("/api/"):
            return await handler(request)
        if (
            by_cookie
            and request.method not in SAFE_METHODS
            and ACTION_HEADER not in request.headers
        ):
            return problem(
                403,
                "Forbidden",
                f"a command sent with the sign-in cookie needs the {ACTION_HEADER} header "
                "(requests from other sites are refused)",
            )
        if holder is None and tokens.configured:
            response = problem(
                401, "Unauthorized", "this API needs a bearer token (Authorization: Bearer …)"
            )
            response.headers["WWW-Authenticate"] = 'Bearer realm="tributary"'
            return response
        return await handler(request)

    return middleware


def operator(request: web.Request) -> str:
    """The operator's name; raises 403 for anyone else."""
    if request.get(ROLE) != OPERATOR:
        why = (
            "commands need an operator token"
            if request.get(WHO) != ANONYMOUS
            else "commands need an operator token: set api_tokens and send one"
        )
        raise ProblemError(403, why)
    return request[WHO]
