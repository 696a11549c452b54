"""Search and the page survive index files that vanish (compaction replaces part files while a page
serves) or are damaged: the query skips them, the page names how many, the audit log records which,
and the next query sees the table as it is now - no restart, never an HTTP 500."""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import urllib.parse

import pyarrow.parquet as pq
import pytest

from serving import AUTH, get, running

pytestmark = pytest.mark.slow


def _count(html: str) -> int:
    return html.count('class="card result"')


def _banner(html: str) -> int | None:
    m = re.search(r'id="unreadable">(\d+) index file', html)
    return int(m.group(1)) if m else None


def test_page_skips_vanished_and_damaged_files_while_serving(files_index_copy, tmp_path):
    """The per-video layout: files vanish (compaction) or break under a serving page."""
    index_copy = files_index_copy
    from exvad_ray.search.audit import audit_uri, read_audit

    labels = str(tmp_path / "fb" / "labels")
    files = sorted(glob.glob(os.path.join(index_copy, "segments", "**", "*.parquet"), recursive=True))
    rows = {f: pq.read_metadata(f).num_rows for f in files}
    gone, damaged = sorted(files, key=lambda f: (-rows[f], f))[:2]
    total = sum(rows.values())
    assert len(files) >= 3 and rows[gone] and rows[damaged]
    everything = "/?limit=1000"
    with running(index_copy, labels, list_ttl_s=0.0) as url:  # relist on every request
        status, body, _ = get(url + everything, AUTH)
        assert status == 200 and _count(body.decode()) == total and _banner(body.decode()) is None

        os.rename(gone, str(tmp_path / "moved-away.parquet"))  # vanished, as compaction does
        with open(damaged, "r+b") as f:  # damaged: the footer overwritten with garbage
            f.seek(-64, os.SEEK_END)
            f.write(b"\x00garbage" * 8)
        status, body, _ = get(url + everything, AUTH)
        html = body.decode()
        assert status == 200, html[:500]
        assert _banner(html) == 1 and _count(html) == total - rows[gone] - rows[damaged]
        search = [a for a in read_audit(audit_uri(labels)).to_pylist() if a["action"] == "search"][-1]
        assert json.loads(search["query"])["unreadable_files"] == [damaged]

        # a video page whose segments sit in the damaged file: no 500, the banner, no row of it
        vid = re.search(r"part-([0-9a-f-]{36})", damaged).group(1)
        status, body, _ = get(f"{url}/video/{vid}", AUTH)
        assert status == 200 and _banner(body.decode()) == 1 and "<td>" not in body.decode()
        assert get(f"{url}/thumb/{urllib.parse.quote(vid)}:0.jpg", AUTH)[0] == 404

        # the damaged file is deleted, the vanished one's rows come back under a compaction's name: the next
        # query sees the table as it is now, without a restart
        shutil.copyfile(str(tmp_path / "moved-away.parquet"), os.path.join(os.path.dirname(gone), "compact-0001.parquet"))
        os.remove(damaged)
        status, body, _ = get(url + everything, AUTH)
        assert status == 200 and _banner(body.decode()) is None
        assert _count(body.decode()) == total - rows[damaged]

        # a damaged videos file: the search page still answers
        vfile = sorted(glob.glob(os.path.join(index_copy, "videos", "**", "*.parquet"), recursive=True))[0]
        with open(vfile, "wb") as f:
            f.write(b"not parquet at all")
        status, body, _ = get(url + everything, AUTH)
        assert status == 200 and _banner(body.decode()) == 1, body[:300]


def test_engine_skips_unreadable_files_and_relists(files_index_copy):
    """The library (CLI, notebooks): same skipping, `last_unreadable` says which (per-video layout:
    files removed from under the engine)."""
    index_copy = files_index_copy
    from exvad_ray.search.engine import SegmentIndex

    ix = SegmentIndex(index_copy)
    n = ix.search(limit=1000).num_rows
    files = sorted(f for f, _ in ix.files)
    lost = pq.read_metadata(files[0]).num_rows
    with open(files[0], "wb") as f:
        f.write(b"PAR1 but nothing else")
    out = ix.search(limit=1000)
    assert out.num_rows == n - lost and list(ix.last_unreadable) == [files[0]]
    os.remove(files[0])
    ix.begin_query()
    assert ix.search(limit=1000).num_rows == n - lost and ix.last_unreadable == {}  # relisted: gone, not damaged
    for f in files[1:]:
        os.remove(f)
    ix.refresh()
    with pytest.raises(Exception, match="no flagged segments|no index"):
        ix.search(limit=10)


def test_cli_search_warns_and_audits_a_damaged_file(index_copy, capsys):
    from exvad_ray.cli import main
    from exvad_ray.search.audit import audit_uri, default_labels_uri, read_audit

    files = sorted(glob.glob(os.path.join(index_copy, "segments", "**", "*.parquet"), recursive=True))
    with open(files[0], "wb") as f:
        f.write(b"garbage")
    assert main(["search", "--index", index_copy, "--format", "json", "--limit", "1000"]) == 0
    out = capsys.readouterr()
    assert "warning: 1 index file(s) could not be read" in out.err and files[0] in out.err
    assert len(json.loads(out.out)) > 0
    row = read_audit(audit_uri(default_labels_uri(index_copy))).to_pylist()[-1]
    assert json.loads(row["query"])["unreadable_files"] == [files[0]]
