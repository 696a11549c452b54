"""The search page against other web sites, in plain HTTP through a real uvicorn server: each attack of
docs/SEARCH.md "Security" is refused and writes nothing (the labels table and the audit log unchanged,
byte for byte); the secret is needed and moves to an HttpOnly SameSite cookie; `exvad serve` makes and
prints one when none is given. The happy path in a real browser is test_browser.py."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
import urllib.parse

import pytest

from serving import AUTH, TOKEN, cookie_header, cookies_of, csrf_of, free_port, get, running, sign_in

pytestmark = pytest.mark.slow


def _digest(*roots: str) -> dict[str, str]:
    out = {}
    for root in roots:
        for dirpath, _, names in os.walk(root):
            for n in names:
                p = os.path.join(dirpath, n)
                with open(p, "rb") as f:
                    out[p] = hashlib.sha256(f.read()).hexdigest()
    return out


def _form(csrf: str | None, segment_id: str, verdict: str = "false-alarm") -> bytes:
    fields = {"segment_id": segment_id, "verdict": verdict, "author": "mallory"}
    if csrf is not None:
        fields["csrf"] = csrf
    return urllib.parse.urlencode(fields).encode()


def test_cross_origin_and_csrf_less_posts_are_refused_and_write_nothing(index_copy, tmp_path):
    from exvad_ray.index.labels import read_labels
    from exvad_ray.search.audit import audit_uri
    from exvad_ray.search.engine import SegmentIndex

    labels = str(tmp_path / "fb" / "labels")
    seg = SegmentIndex(index_copy).search(limit=1).to_pylist()[0]
    with running(index_copy, labels) as url:
        own = {"Origin": url}
        jar = sign_in(url)
        assert set(jar) == {"exvad_token", "exvad_session"}
        status, body, _ = get(f"{url}/video/{seg['video_id']}?segment={urllib.parse.quote(seg['segment_id'])}",
                              cookie_header(jar))
        csrf = csrf_of(body.decode())
        # the page's own form: accepted (one labels row)
        status, _, headers = get(url + "/feedback", {**cookie_header(jar), **own}, _form(csrf, seg["segment_id"], "confirmed"))
        assert status == 303 and "feedback+recorded" in headers["location"]
        assert read_labels(labels, current=False).num_rows == 1
        before = _digest(labels, audit_uri(labels))
        other = sign_in(url)  # a second browser session: its CSRF token is not this one's
        assert other["exvad_session"] != jar["exvad_session"]
        attacks = {
            "foreign Origin, no token, no cookie (a form on evil.example)":
                ({"Origin": "http://evil.example"}, _form(None, seg["segment_id"])),
            "foreign Origin with the analyst's cookies and a valid CSRF token":
                ({**cookie_header(jar), "Origin": "http://evil.example"}, _form(csrf, seg["segment_id"])),
            "Origin null (sandboxed frame, data: URL)":
                ({**cookie_header(jar), "Origin": "null"}, _form(csrf, seg["segment_id"])),
            "no Origin at all": (cookie_header(jar), _form(csrf, seg["segment_id"])),
            "own Origin and cookies, no CSRF token": ({**cookie_header(jar), **own}, _form(None, seg["segment_id"])),
            "own Origin and cookies, another session's CSRF token":
                ({**cookie_header(jar), **own}, _form(csrf_of_session(url, other, seg), seg["segment_id"])),
            "own Origin, the token header, a CSRF token but no session cookie":
                ({**AUTH, **own}, _form(csrf, seg["segment_id"])),
        }
        for name, (headers, data) in attacks.items():
            status, body, _ = get(url + "/feedback", headers, data)
            assert status == 403, (name, status, body[:200])
            assert b"refused" in body
        # no token: refused before any route (401), whatever the Origin
        assert get(url + "/feedback", own, _form(csrf, seg["segment_id"]))[0] == 401
    assert _digest(labels, audit_uri(labels)) == before  # labels table and audit log: not one byte changed
    assert read_labels(labels, current=False).to_pylist()[0]["verdict"] == "confirmed"


def csrf_of_session(url: str, jar: dict[str, str], seg: dict) -> str:
    _, body, _ = get(f"{url}/video/{seg['video_id']}?segment={urllib.parse.quote(seg['segment_id'])}", cookie_header(jar))
    return csrf_of(body.decode())


def test_foreign_host_is_refused_dns_rebinding(index_copy, tmp_path):
    with running(index_copy, str(tmp_path / "labels")) as url:
        port = urllib.parse.urlsplit(url).port
        for host in (f"evil.example:{port}", "evil.example", f"127.0.0.1.evil.example:{port}", f"10.0.0.7:{port}"):
            status, body, _ = get(url + "/?limit=5", {**AUTH, "Host": host})
            assert status == 400, host
            assert b"card result" not in body
        for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
            assert get(url + "/?limit=5", {**AUTH, "Host": host})[0] == 200
    with running(index_copy, str(tmp_path / "labels"), hosts=["127.0.0.1", "exvad.lan"]) as url:  # --allow-host
        port = urllib.parse.urlsplit(url).port
        assert get(url + "/?limit=5", {**AUTH, "Host": f"exvad.lan:{port}"})[0] == 200
        assert get(url + "/?limit=5", {**AUTH, "Host": f"localhost:{port}"})[0] == 400


def test_secret_required_and_moved_to_a_strict_httponly_cookie(index_copy, tmp_path):
    from exvad_ray.errors import ExvadError
    from exvad_ray.search.web import serve

    with pytest.raises(ExvadError, match="without --token"):
        serve(index_copy, host="0.0.0.0")
    with running(index_copy, str(tmp_path / "labels")) as url:
        for path in ("/", "/?token=wrong", "/timeline/x.png", "/thumb/x.jpg", "/clip/x.mp4", "/video/x"):
            assert get(url + path)[0] == 401, path
        status, body, headers = get(url + f"/?token={TOKEN}&cls=Fire")
        assert status == 200
        cookies = headers.get_all("Set-Cookie")
        token_cookie = next(c for c in cookies if c.startswith("exvad_token="))
        assert "HttpOnly" in token_cookie and "SameSite=strict" in token_cookie
        # the page continues to the same query without the token in the address
        assert re.search(r'http-equiv="refresh" content="0;url=/\?cls=Fire"', body.decode())
        assert TOKEN not in body.decode()
        jar = cookies_of(headers)
        status, body, headers = get(url + "/", cookie_header(jar))
        assert status == 200 and TOKEN not in body.decode()  # links no longer carry it
        assert headers["x-frame-options"] == "DENY" and "frame-ancestors 'none'" in headers["content-security-policy"]
        assert get(url + "/", AUTH)[0] == 200


def test_exvad_serve_makes_and_prints_a_token(index_copy):
    """`exvad serve` without --token: a random secret, printed in the URL; the URL opens the page,
    the bare address does not."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "exvad_ray.cli", "serve", "--index", index_copy, "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()
        m = re.search(r"(http://127\.0\.0\.1:\d+/)\?token=([A-Za-z0-9_-]{20,})", line)
        assert m, line
        deadline = time.time() + 60
        while True:
            try:
                status = get(m.group(1))[0]
                break
            except OSError:
                assert time.time() < deadline and proc.poll() is None, "server did not start"
                time.sleep(0.2)
        assert status == 401
        assert get(m.group(0))[0] == 200
        assert get(m.group(1), {"X-Exvad-Token": m.group(2)})[0] == 200
    finally:
        proc.terminate()
        proc.wait(20)
