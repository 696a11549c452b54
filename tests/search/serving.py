"""Run the search page on a random loopback port in a thread (a real uvicorn server), and plain HTTP
requests to it (no redirects followed, every Set-Cookie kept)."""

from __future__ import annotations

import contextlib
import http.client
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

TOKEN = "t0k3n-for-tests"
AUTH = {"X-Exvad-Token": TOKEN}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running(index: str, labels: str, token: str = TOKEN, hosts: list[str] | None = None, **app: Any) -> Iterator[str]:
    import uvicorn

    from exvad_ray.search.web import create_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(index, labels, token=token, hosts=hosts, **app), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        assert thread.is_alive() and time.time() < deadline, "server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # noqa: ANN002, ANN003 - urllib's signature
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def get(url: str, headers: dict | None = None, data: bytes | None = None,
        method: str | None = None) -> tuple[int, bytes, http.client.HTTPMessage]:
    """(status, body, headers) - headers is the message: case-insensitive, `get_all("Set-Cookie")`."""
    req = urllib.request.Request(url, headers=headers or {}, data=data, method=method)
    try:
        with _OPENER.open(req, timeout=60) as r:
            return r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers


def cookies_of(headers: http.client.HTTPMessage) -> dict[str, str]:
    """name -> value of every Set-Cookie."""
    return dict(c.split(";", 1)[0].split("=", 1) for c in headers.get_all("Set-Cookie") or [])


def cookie_header(cookies: dict[str, str]) -> dict[str, str]:
    return {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}


def sign_in(url: str, token: str = TOKEN) -> dict[str, str]:
    """What a browser does with the printed URL: the cookies `/?token=` sets."""
    status, _, headers = get(url + "/?token=" + token)
    assert status == 200, status
    return cookies_of(headers)


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert m, "no CSRF token in the page"
    return m.group(1)
