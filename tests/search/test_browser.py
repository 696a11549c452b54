"""The search page in a real headless Chromium (Debian's `chromium`, driven by Playwright through its
executable path - no browser download): sign in with the printed URL (the token moves to an HttpOnly
SameSite cookie and leaves the address), search, see thumbnails letterboxed at their own aspect
ratio, open a result, see the timeline image, play the clip, give feedback (the form's CSRF token
and the browser's Origin pass the checks); a normality scoring's evidence block (the flagged and the
nearest normal thumbnails side by side, the sentence); screenshots are saved (tests/search/artifacts/ or
$EXVAD_SCREENSHOT_DIR).

`make test` / `.ci/run` install chromium; outside CI a machine without it skips with the reason,
in CI (EXVAD_CI or CI set) its absence fails."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from serving import TOKEN, running

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
IN_CI = bool(os.environ.get("EXVAD_CI") or os.environ.get("CI"))


def launch(p):
    if not CHROMIUM:
        if IN_CI:
            pytest.fail("chromium is not installed (CI installs it: apt-get install -y chromium)")
        pytest.skip("chromium is not installed: apt-get install -y chromium (make test does it)")
    args = ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-default-apps", "--disable-gpu"]
    return p.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)


def wait_until(target, js: str, timeout_s: float = 30.0) -> None:
    """Poll `target.evaluate(js)` (a page or an element; `js` a function of the element, or an
    expression) until it is true. Not `page.wait_for_function`: once its predicate is not true at
    once, Playwright polls it by compiling the string inside the page, which the page's CSP
    (script-src 'none', no unsafe-eval) refuses - a failure that came only when the machine was busy
    enough for an image to be still loading."""
    import time

    end = time.monotonic() + timeout_s
    while not target.evaluate(js):
        if time.monotonic() > end:
            raise AssertionError(f"not true after {timeout_s} s: {js}")
        time.sleep(0.1)


WIDE = (200, 50)  # a thumbnail four times as wide as high, written into one segment's row


def _wide_thumbnail(index: str, segment_id: str) -> None:
    """Rewrite `segment_id`'s thumbnail in its Parquet file as a solid green WIDE image."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", WIDE, (0, 200, 0)).save(buf, format="JPEG", quality=95)
    from exvad_ray import index as idx

    # the segments file that holds the segment (a Delta table's files hold batches of videos)
    path, = [f for f in idx.list_files(index, "segments")
             if segment_id in pq.read_table(f, columns=["segment_id"]).column(0).to_pylist()]
    table = pq.read_table(path)
    thumbs = [buf.getvalue() if s == segment_id else t for s, t in
              zip(table.column("segment_id").to_pylist(), table.column("thumbnail_jpeg").to_pylist())]
    i = table.column_names.index("thumbnail_jpeg")
    table = table.set_column(i, table.schema.field(i), pa.array(thumbs, table.schema.field(i).type))
    pq.write_table(table, path)


def _green_box(png: bytes) -> tuple[int, int, int, int]:
    """(width, height) of the element's screenshot and of the green area in it."""
    import io

    import numpy as np
    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    green = (img[..., 1] > 150) & (img[..., 0] < 80) & (img[..., 2] < 80)
    ys, xs = np.nonzero(green)
    return img.shape[1], img.shape[0], int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


def test_search_open_timeline_feedback(index_copy, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    from exvad_ray.index.labels import read_labels
    from exvad_ray.search.engine import SegmentIndex

    labels = str(tmp_path / "feedback" / "labels")
    top = SegmentIndex(index_copy).search(limit=1).to_pylist()[0]
    _wide_thumbnail(index_copy, top["segment_id"])
    shots = Path(os.environ.get("EXVAD_SCREENSHOT_DIR") or Path(__file__).parent / "artifacts")
    shots.mkdir(parents=True, exist_ok=True)
    with running(index_copy, labels) as url, playwright.sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        assert page.goto(url + "/").status == 401  # no secret, no page
        page.goto(url + "/?token=" + TOKEN)  # the URL `exvad serve` prints
        page.wait_for_url(url + "/")  # continued without the token in the address
        page.wait_for_selector("form.search")
        cookie = next(c for c in page.context.cookies() if c["name"] == "exvad_token")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert page.evaluate("document.cookie") == ""  # HttpOnly: no script on the page can read it
        page.select_option("select[name=cls]", top["label"])
        page.fill("input[name=min_score]", f"{top['score'] - 1e-4:.4f}")
        page.click("#search")
        page.wait_for_selector("#count")
        cards = page.locator(".card.result")
        assert cards.count() >= 1
        # the thumbnails are real images the browser decoded
        assert page.evaluate("document.querySelector('.card img').naturalWidth") > 0
        # the wide thumbnail keeps its 4:1 shape, letterboxed in the card's 16:9 box (not stretched to fill it)
        card_img = page.locator(f".card a[href*='{top['segment_id'].replace(':', '%3A')}'] img")
        wait_until(card_img, "img => img.complete && img.naturalWidth > 0")
        box_w, box_h, green_w, green_h = _green_box(card_img.screenshot())
        assert abs(box_w / box_h - 16 / 9) < 0.05, (box_w, box_h)
        assert abs(green_w / green_h - WIDE[0] / WIDE[1]) < 0.15 and green_w >= box_w - 2 and green_h < box_h * 0.6, \
            (box_w, box_h, green_w, green_h)
        page.screenshot(path=str(shots / "search_results.png"), full_page=True)
        cards.first.locator("a").click()
        page.wait_for_selector("#timeline")
        wait_until(page, "document.getElementById('timeline').complete")
        assert page.evaluate("document.getElementById('timeline').naturalWidth") >= 400
        wait_until(page, "document.getElementById('clip').readyState >= 1", 30.0)
        duration = page.evaluate("document.getElementById('clip').duration")
        assert duration > 0
        page.screenshot(path=str(shots / "search_video_page.png"), full_page=True)
        page.select_option("#verdict", "confirmed")
        page.select_option("#feedback select[name=cls]", "Fighting")
        page.fill("#author", "analyst-7")
        page.click("#send")
        page.wait_for_selector("#message")
        assert "feedback recorded: confirmed" in page.inner_text("#message")
        page.screenshot(path=str(shots / "search_feedback.png"), full_page=True)
        browser.close()
    rows = read_labels(labels, current=False).to_pylist()
    assert len(rows) == 1 and rows[0]["verdict"] == "confirmed" and rows[0]["author"] == "analyst-7"
    assert rows[0]["source"] == "feedback" and rows[0]["segment_id"] == top["segment_id"]
    assert rows[0]["labels"] == ["Fighting"] and rows[0]["segments"][0]["label"] == "Fighting"
    assert (shots / "search_video_page.png").stat().st_size > 10000
    # the loop closes: training's data loader (what `exvad train --labels` reads) sees the verdict as a
    # Fighting video with the segment as its temporal annotation
    from exvad_ray.search.audit import audit_uri, read_audit
    from exvad_ray.train.data import load_index_records

    records = load_index_records(os.path.join(index_copy, "snippets"), os.path.join(index_copy, "videos"), labels)
    assert len(records) == 1 and records[0].labels == ["Fighting"]
    (start, end, label), = records[0].segments
    assert label == "Fighting" and end > start
    actions = [a["action"] for a in read_audit(audit_uri(labels)).to_pylist()]
    assert actions.count("search") >= 2 and actions[-1] == "feedback"


def test_evidence_block_renders_both_thumbnails(evidence_index, tmp_path):
    """A normality scoring's flagged segment (tests/search/evidence.py): its card shows the flagged
    thumbnail and the nearest normal moment's side by side, both decoded, both letterboxed in 16:9
    boxes, with the sentence; its video page shows the same block. Cards without evidence keep one
    thumbnail."""
    playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    ev = evidence_index
    shots = Path(os.environ.get("EXVAD_SCREENSHOT_DIR") or Path(__file__).parent / "artifacts")
    shots.mkdir(parents=True, exist_ok=True)
    with running(ev["index"], str(tmp_path / "labels")) as url, playwright.sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(url + "/?token=" + TOKEN)
        page.wait_for_url(url + "/")
        page.fill("input[name=limit]", "50")
        page.click("#search")
        page.wait_for_selector("#count")
        cards = page.locator(".card.result")
        blocks = page.locator(".card .pair.evidence")
        assert blocks.count() == 1 and cards.count() >= 2

        def decoded_in_16_9(scope, selector: str) -> dict:
            img = scope.locator(selector)
            wait_until(img, "img => img.complete && img.naturalWidth > 0")
            box = img.locator("xpath=..").bounding_box()  # the .thumb box around it
            assert abs(box["width"] / box["height"] - 16 / 9) < 0.05, box
            assert img.evaluate("i => getComputedStyle(i).objectFit") == "contain"  # letterboxed, not stretched
            return box

        flagged = decoded_in_16_9(blocks, "img.flagged")
        nearest = decoded_in_16_9(blocks, "img.nearest")
        assert nearest["x"] >= flagged["x"] + flagged["width"] - 1 and abs(nearest["y"] - flagged["y"]) < 2  # beside
        card = cards.filter(has=page.locator(".pair.evidence"))
        assert card.locator(".why").inner_text() == ev["sentence"]
        assert "more unusual than 99.7 % of normal footage" in card.inner_text()
        assert f"closest normal: {ev['nearest_name']}" in card.inner_text()
        for i in range(cards.count()):  # the other cards as before: one thumbnail, no evidence
            if cards.nth(i).locator(".pair").count() == 0:
                assert cards.nth(i).locator("img").count() == 1 and cards.nth(i).locator(".why").count() == 0
        page.screenshot(path=str(shots / "search_evidence_results.png"), full_page=True)
        blocks.locator("a:has(img.flagged)").click()
        page.wait_for_selector("#evidence")
        decoded_in_16_9(page.locator("#evidence"), "img.flagged")
        decoded_in_16_9(page.locator("#evidence"), "img.nearest")
        assert page.inner_text("#evidence-sentence") == ev["sentence"]
        page.screenshot(path=str(shots / "search_evidence_video_page.png"), full_page=True)
        browser.close()
    assert (shots / "search_evidence_video_page.png").stat().st_size > 10000
