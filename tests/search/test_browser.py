"""The search page in a real headless Chromium (Debian's `chromium`, driven by Playwright through its
executable path - no browser download): search, open a result, see the timeline image, play the
clip, give feedback; a screenshot is saved (tests/search/artifacts/ or $EXVAD_SCREENSHOT_DIR).

`make test` / `.ci/run` install chromium; outside CI a machine without it skips with the reason,
in CI (EXVAD_CI or CI set) its absence fails."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from serving import running

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


def test_search_open_timeline_feedback(index_copy, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    from exvad_ray.index.labels import read_labels
    from exvad_ray.search.engine import SegmentIndex

    labels = str(tmp_path / "feedback" / "labels")
    top = SegmentIndex(index_copy).search(limit=1).to_pylist()[0]
    shots = Path(os.environ.get("EXVAD_SCREENSHOT_DIR") or Path(__file__).parent / "artifacts")
    shots.mkdir(parents=True, exist_ok=True)
    with running(index_copy, labels) as url, playwright.sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(url + "/")
        page.select_option("select[name=cls]", top["label"])
        page.fill("input[name=min_score]", f"{top['score'] - 1e-4:.4f}")
        page.click("#search")
        page.wait_for_selector("#count")
        cards = page.locator(".card.result")
        assert cards.count() >= 1
        # the thumbnails are real images the browser decoded
        assert page.evaluate("document.querySelector('.card img').naturalWidth") > 0
        cards.first.locator("a").click()
        page.wait_for_selector("#timeline")
        page.wait_for_function("document.getElementById('timeline').complete")
        assert page.evaluate("document.getElementById('timeline').naturalWidth") >= 400
        page.wait_for_function("document.getElementById('clip').readyState >= 1", timeout=30000)
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
