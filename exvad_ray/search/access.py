"""Who may use the search page, and from where: the secret, the CSRF token, the Origin and Host checks.

Why each piece (docs/SEARCH.md, "Security"):
- The page always has a secret (`exvad serve` makes one when none is given and prints the URL that
  carries it, as Jupyter does). A local page without one could be read and written by any program
  or web page that reaches 127.0.0.1.
- The secret moves at the first request from the URL to an HttpOnly, SameSite=Strict cookie, so
  other sites' requests (forms, images, scripts) reach the page without it.
- Every state-changing request (POST) must come from the page itself: its Origin must be the page's
  own, and it must carry the per-session CSRF token the page put in its form (an HMAC of the
  session cookie under a key made at start). Either check alone stops a cross-site form; both hold
  if one of them is ever weakened (an old browser, a same-site subdomain).
- The Host header must name the bound address (or a name given with `--allow-host`): a DNS
  rebinding site, whose requests say `Host: evil.example`, is refused before any route runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Sequence
from typing import Any

TOKEN_COOKIE = "exvad_token"
SESSION_COOKIE = "exvad_session"
TOKEN_HEADER = "x-exvad-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    # same-origin (not no-referrer): with no-referrer a browser sends `Origin: null` on the page's own
    # POST, which the Origin check must refuse; other sites still get no referrer
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",  # no framing: the feedback form cannot be clickjacked
    "Content-Security-Policy": "default-src 'self'; style-src 'unsafe-inline'; script-src 'none'; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
}


def new_token() -> str:
    """A random secret for the page (192 bits, URL-safe)."""
    return secrets.token_urlsafe(24)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def allowed_hosts(bind: str, extra: Sequence[str] = ()) -> list[str]:
    """Host names a request may carry: the bound address (a loopback bind: every loopback name),
    plus `extra` (`--allow-host`). A wildcard bind (0.0.0.0, ::) allows only loopback names and
    `extra`: the machine's other names must be given."""
    hosts = {h.strip().lower() for h in extra if h.strip()}
    if bind in ("0.0.0.0", "::", "") or is_loopback(bind):
        hosts.update(LOOPBACK_NAMES)
    else:
        hosts.add(bind.lower())
    return sorted(hosts)


@dataclasses.dataclass(frozen=True)
class Access:
    """The page's secret and the key its CSRF tokens are made with (both random per server start)."""

    token: str
    csrf_key: bytes = dataclasses.field(default_factory=lambda: secrets.token_bytes(32))

    def presented(self, request: Any) -> str:
        """The secret a request carries: header, `?token=`, or the cookie."""
        return (request.headers.get(TOKEN_HEADER) or request.query_params.get("token")
                or request.cookies.get(TOKEN_COOKIE) or "")

    def authorised(self, request: Any) -> bool:
        return hmac.compare_digest(self.presented(request).encode(), self.token.encode())

    def csrf_for(self, session: str) -> str:
        return hmac.new(self.csrf_key, session.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, session: str | None, value: str | None) -> bool:
        return bool(session and value) and hmac.compare_digest(self.csrf_for(session or "").encode(),
                                                               (value or "").encode())


def same_origin(request: Any) -> bool:
    """The request's Origin is the page's own (scheme and Host, which TrustedHostMiddleware checked).
    A missing Origin or `null` is refused: browsers send one on every POST."""
    origin = request.headers.get("origin")
    return bool(origin) and origin == f"{request.url.scheme}://{request.headers.get('host', '')}"


def install(app: Any, access: Access, hosts: Sequence[str]) -> None:
    """Add the checks to a FastAPI app, outermost first: Host (400), Origin of a state-changing
    request (403), the secret (401); then the session cookie and the security headers. A request
    that carries a valid `?token=` gets the cookies and a page that continues to the same URL
    without the token (a same-site navigation, so the Strict cookie goes with it)."""
    import html
    from urllib.parse import urlencode

    from fastapi.responses import HTMLResponse, PlainTextResponse
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    @app.middleware("http")
    async def guard(request: Any, call_next: Any) -> Any:
        if request.method not in SAFE_METHODS and not same_origin(request):
            return _secured(PlainTextResponse("refused: a state-changing request must come from this page "
                                              "(cross-origin or no Origin)", status_code=403))
        if not access.authorised(request):
            return _secured(PlainTextResponse("a valid token is required: open the URL that `exvad serve` "
                                              "printed (it carries ?token=)", status_code=401))
        session = request.cookies.get(SESSION_COOKIE)
        request.state.session = session or secrets.token_urlsafe(24)
        request.state.csrf = access.csrf_for(request.state.session)
        if request.method == "GET" and request.query_params.get("token"):
            rest = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "token"])
            target = html.escape(request.url.path + ("?" + rest if rest else ""), quote=True)
            response: Any = HTMLResponse(f'<!doctype html><meta http-equiv="refresh" content="0;url={target}">'
                                         f'<title>exvad search</title><p><a href="{target}">continue</a></p>')
            response.set_cookie(TOKEN_COOKIE, access.token, httponly=True, samesite="strict")
        else:
            response = await call_next(request)
        if session != request.state.session:
            response.set_cookie(SESSION_COOKIE, request.state.session, httponly=True, samesite="strict")
        return _secured(response)

    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(hosts))


def _secured(response: Any) -> Any:
    for k, v in SECURITY_HEADERS.items():
        response.headers[k] = v
    return response
