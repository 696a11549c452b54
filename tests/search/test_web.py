"""The search page over the archive job's index, through a real uvicorn server: search, thumbnails,
the video page and its timeline, clip playback, escaping, nothing outside the index (the secret, CSRF,
Origin and Host checks: test_security.py)."""

from __future__ import annotations

import hashlib
import os
import urllib.parse

import pytest

from serving import AUTH, get, running

pytestmark = pytest.mark.slow


def _tree_digest(root: str) -> dict[str, str]:
    out = {}
    for dirpath, _, names in os.walk(root):
        for n in names:
            p = os.path.join(dirpath, n)
            with open(p, "rb") as f:
                out[os.path.relpath(p, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


def test_page_search_video_timeline_clip(index_copy, tmp_path):
    from exvad_ray.search.engine import SegmentIndex

    before = _tree_digest(index_copy)
    ix = SegmentIndex(index_copy)
    top = ix.search(limit=1).to_pylist()[0]
    labels = str(tmp_path / "fb" / "labels")
    with running(index_copy, labels) as url:
        status, body, _ = get(url + "/?" + urllib.parse.urlencode({"cls": top["label"], "limit": 50}), AUTH)
        html = body.decode()
        assert status == 200 and html.count('class="card result"') == ix.search(classes=[top["label"]], limit=50).num_rows
        assert urllib.parse.quote(top["segment_id"]) in html
        status, jpg, headers = get(f"{url}/thumb/{urllib.parse.quote(top['segment_id'])}.jpg", AUTH)
        assert status == 200 and jpg[:2] == b"\xff\xd8" and headers["content-type"] == "image/jpeg"
        status, body, _ = get(f"{url}/video/{top['video_id']}?segment={urllib.parse.quote(top['segment_id'])}", AUTH)
        assert status == 200 and 'id="timeline"' in body.decode() and 'id="clip"' in body.decode()
        status, png, _ = get(f"{url}/timeline/{top['video_id']}.png", AUTH)
        assert status == 200 and png[:8] == b"\x89PNG\r\n\x1a\n"
        status, mp4, headers = get(f"{url}/clip/{urllib.parse.quote(top['segment_id'])}.mp4?download=1", AUTH)
        assert status == 200 and mp4[4:8] == b"ftyp" and "attachment" in headers["content-disposition"]
        # user errors: one line on the page, not a traceback
        status, body, _ = get(url + "/?since=yesterday", AUTH)
        assert status == 400 and "malformed --since" in body.decode() and "Traceback" not in body.decode()
        status, body, _ = get(url + "/?" + urllib.parse.urlencode({"cls": "<script>alert(1)</script>"}), AUTH)
        assert status == 400 and "<script>alert" not in body.decode() and "&lt;script&gt;" in body.decode()
        for bad in ("/video/..%2F..%2Fetc%2Fpasswd", "/thumb/..%2F..%2Fetc%2Fpasswd.jpg", "/clip/%2Fetc%2Fpasswd.mp4",
                    "/video/nonexistent", "/static/../../etc/passwd", "/timeline/..%2Fvideos.png"):
            status, body, _ = get(url + bad, AUTH)
            assert status in (400, 404), bad
            assert b"root:" not in body
    assert _tree_digest(index_copy) == before  # read-only: not one byte of the index changed
