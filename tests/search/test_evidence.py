"""The evidence of a normality scoring (issue 22) in search: the engine's result rows and `segment`
carry it (also from a scoring whose older files lack the columns), the page shows the nearest normal
moment's thumbnail beside the flagged one with the sentence, `/snippet/<video_id>:<n>.jpg` serves
that snippet's stored JPEG behind the same checks as every route, `exvad search` prints the sentence,
and rows without evidence render and print exactly as before. The scoring is written by hand
(tests/search/evidence.py); the browser check is test_browser.py."""

from __future__ import annotations

import csv
import io
import json
import re
import urllib.parse

import pytest

from exvad_ray.cli import main
from exvad_ray.index import scorings as sc
from exvad_ray.search.engine import EVIDENCE_COLUMNS, RESULT_COLUMNS, SegmentIndex
from evidence import CAPTION
from serving import AUTH, get, running

pytestmark = pytest.mark.slow


def test_engine_rows_carry_the_evidence(evidence_index):
    ev = evidence_index
    ix = SegmentIndex(ev["index"])
    assert ix.scoring == ev["scoring"]
    rows = ix.search(limit=100).to_pylist()
    process = SegmentIndex(ev["index"], scoring="process").search(limit=100)
    assert process.column_names == list(RESULT_COLUMNS)  # the index's own scoring: no evidence columns
    assert [r["segment_id"] for r in rows] == process.column("segment_id").to_pylist()
    assert list(rows[0]) == list(RESULT_COLUMNS) + list(EVIDENCE_COLUMNS)
    by_id = {r["segment_id"]: r for r in rows}
    flagged = by_id[ev["flagged"]]
    assert flagged["evidence"] == ev["sentence"] and flagged["unusual_half"] == "motion"
    assert flagged["nearest_video_id"] == ev["nearest_video_id"] and flagged["nearest_snippet"] == ev["nearest_snippet"]
    assert flagged["normality"] == pytest.approx(0.9973) and flagged["nearest_similarity"] == pytest.approx(0.61)
    assert ev["plain"] and all(by_id[i][c] is None for i in ev["plain"] for c in EVIDENCE_COLUMNS)
    assert any(r["video_id"] == ev["old_video"] for r in rows)  # its file has no evidence columns: read by name
    # one segment's row: every column, the evidence included; null keys for the older file's rows
    assert ix.segment(ev["flagged"])["evidence"] == ev["sentence"]
    old = next(r["segment_id"] for r in rows if r["video_id"] == ev["old_video"])
    row = ix.segment(old)
    assert all(row[c] is None for c in EVIDENCE_COLUMNS) and "visual_embedding" in row
    # similarity ranking (SQL path, then the vector sidecar) carries it too
    like = ix.search(like=ev["flagged"], limit=2).to_pylist()
    assert like[0]["segment_id"] == ev["flagged"] and like[0]["evidence"] == ev["sentence"]
    ix.update_vectors()
    side = SegmentIndex(ev["index"]).search(like=ev["flagged"], limit=2).to_pylist()
    assert side[0]["segment_id"] == ev["flagged"] and side[0]["evidence"] == ev["sentence"]
    assert ix.search(limit=3, evidence=False).column_names == list(RESULT_COLUMNS)
    # the nearest normal moment's stored thumbnail
    assert ix.snippet_thumbnail(ev["nearest_video_id"], ev["nearest_snippet"]) == ev["jpeg"]
    assert ix.snippet_thumbnail(ev["nearest_video_id"], 99999) is None
    assert ix.snippet_thumbnail("no-such-video", 0) is None
    assert ix.last_unreadable == {}


def _cards(html: str) -> dict[str, str]:
    """segment id -> its card's HTML."""
    out = {}
    for card in html.split('<div class="card result">')[1:]:
        m = re.search(r"/thumb/([^\"]+)\.jpg", card)
        out[urllib.parse.unquote(m.group(1))] = card
    return out


def test_page_shows_the_evidence_and_the_nearest_moment(evidence_index, tmp_path):
    ev = evidence_index
    snippet = f"/snippet/{ev['nearest_video_id']}:{ev['nearest_snippet']}.jpg"
    flagged_q = urllib.parse.quote(ev["flagged"])
    assert SegmentIndex(ev["index"]).segment(ev["flagged"])["explanation"] == f"{ev['sentence']}. {CAPTION}"
    with running(ev["index"], str(tmp_path / "labels")) as url:
        status, body, _ = get(url + "/?limit=50", AUTH)
        html = body.decode()
        assert status == 200 and html.count('class="pair evidence"') == 1
        cards = _cards(html)
        card = cards[ev["flagged"]]
        # both images side by side, the sentence, the percentile and the half named
        assert f'src="/thumb/{flagged_q}.jpg"' in card and f'src="{snippet}"' in card
        assert card.index('class="flagged"') < card.index('class="nearest"')
        assert ev["sentence"] in card and "more unusual than 99.7 % of normal footage" in card
        assert "unusual: its motion" in card and f"closest normal: {ev['nearest_name']}" in card
        # the sentence leads, once, and the keyframes' tags follow it
        assert card.count(ev["sentence"]) == 1 and card.index(ev["sentence"]) < card.index(CAPTION)
        # the new route: that snippet's stored JPEG; unknown or malformed ids refused, nothing else read
        status, jpg, headers = get(url + snippet, AUTH)
        assert status == 200 and jpg == ev["jpeg"] and headers["content-type"] == "image/jpeg"
        assert headers["X-Content-Type-Options"] == "nosniff"
        for bad, want in ((f"/snippet/{ev['nearest_video_id']}:99999.jpg", {404}), ("/snippet/nosuchvideo:1.jpg", {404}),
                          (f"/snippet/{ev['nearest_video_id']}.jpg", {400}), ("/snippet/a:1;rm.jpg", {400}),
                          ("/snippet/..%2F..%2Fetc%2Fpasswd:1.jpg", {400, 404}), ("/snippet/%2Fetc%2Fpasswd.jpg", {400, 404})):
            status, body, _ = get(url + bad, AUTH)
            assert status in want and b"root:" not in body and b"Traceback" not in body, (bad, status)
        status, _, _ = get(url + snippet)  # no secret: refused like every route
        assert status == 401
        status, _, _ = get(url + snippet, {**AUTH, "Host": "evil.example"})
        assert status == 400
        status, _, _ = get(url + snippet, {**AUTH, "Origin": url}, data=b"", method="POST")
        assert status == 405  # GET only
        # the video page of the flagged segment: the evidence block with both images
        vid = ev["flagged"].rsplit(":", 1)[0]
        status, body, _ = get(f"{url}/video/{vid}?segment={flagged_q}", AUTH)
        page = body.decode()
        assert status == 200 and 'id="evidence"' in page and f'src="{snippet}"' in page
        assert f'src="/thumb/{flagged_q}.jpg"' in page and page.count(ev["sentence"]) == 1 and 'id="clip"' in page
        plain_vid = ev["old_video"]
        status, body, _ = get(f"{url}/video/{plain_vid}?segment={urllib.parse.quote(plain_vid + ':0')}", AUTH)
        assert status == 200 and 'id="evidence"' not in body.decode() and "/snippet/" not in body.decode()
    # rows without evidence render exactly as before: their cards equal the index's own scoring's
    sc.set_current(ev["index"], "process")
    with running(ev["index"], str(tmp_path / "labels")) as url:
        status, body, _ = get(url + "/?limit=50", AUTH)
        before = _cards(body.decode())
        assert status == 200 and 'class="pair' not in body.decode() and "/snippet/" not in body.decode()
    assert set(before) == set(cards) and ev["plain"]
    for sid in ev["plain"]:
        assert cards[sid] == before[sid], sid
    assert cards[ev["flagged"]] != before[ev["flagged"]]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_exvad_search_prints_the_evidence(evidence_index, capsys):
    ev = evidence_index
    index = ev["index"]
    code, out, _ = run(capsys, "search", "--index", index, "--limit", "50")
    lines = out.splitlines()
    assert code == 0 and f"    why: {ev['sentence']}" in lines
    row = next(i for i, line in enumerate(lines) if line.startswith(ev["flagged"]))
    assert lines[row + 1] == f"    why: {ev['sentence']}" and out.count("why:") == 1
    code, out, _ = run(capsys, "search", "--index", index, "--limit", "50", "--format", "json")
    rows = {r["segment_id"]: r for r in json.loads(out)}
    assert rows[ev["flagged"]]["evidence"] == ev["sentence"] and rows[ev["flagged"]]["nearest_snippet"] == ev["nearest_snippet"]
    assert all(rows[i]["evidence"] is None for i in ev["plain"])
    code, out, _ = run(capsys, "search", "--index", index, "--limit", "50", "--format", "csv")
    rows = {r["segment_id"]: r for r in csv.DictReader(io.StringIO(out))}
    assert rows[ev["flagged"]]["evidence"] == ev["sentence"] and rows[ev["flagged"]]["unusual_half"] == "motion"
    # no evidence in the answer (another video; or the index's own scoring): output exactly as before
    for fmt in ("table", "json", "csv"):
        _, with_scoring, _ = run(capsys, "search", "--index", index, "--video", ev["old_video"], "--format", fmt)
        _, process, _ = run(capsys, "search", "--index", index, "--video", ev["old_video"], "--format", fmt,
                            "--scoring", "process")
        assert with_scoring == process and "evidence" not in with_scoring and "why:" not in with_scoring, fmt


def test_segments_beyond_all_normal_footage_are_ordered_by_their_surprise(index_copy, capsys):
    """A calibrated scoring's segments far beyond normal footage all store the float32 score 1.0: the
    engine orders them by the surprise stored beside it (most unusual first), a file written before
    the column existed (the old video's) last, instead of by segment id."""
    from evidence import write_evidence_scoring

    ev = write_evidence_scoring(index_copy, beyond_normal=True)
    want = sorted(ev["surprise"], key=lambda i: (-ev["surprise"][i], i))  # ties (float32) by segment id, as search
    assert want != sorted(want)  # not the segment ids' order
    for old_first in (False, True):  # DuckDB takes the first file's columns unless told to match them by name
        ix = SegmentIndex(index_copy)
        ix._files = sorted(ix.files, key=lambda f: (ev["old_video"] in f[0]) != old_first)
        assert (ev["old_video"] in ix.files[0][0]) == old_first
        rows = ix.search(limit=100).to_pylist()
        assert rows and {r["score"] for r in rows} == {1.0}
        got = [r["segment_id"] for r in rows]
        assert got[:len(want)] == want, old_first
        assert {r["video_id"] for r in rows[len(want):]} == {ev["old_video"]}
    capsys.readouterr()
    code, out, _ = run(capsys, "search", "--index", index_copy, "--limit", "100", "--format", "json")
    assert code == 0 and [r["segment_id"] for r in json.loads(out)] == got  # the same order through `exvad search`
