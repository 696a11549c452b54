"""Driver SIGKILL at seeded random points in three runs, then a rerun: every video exactly once in
every table, no reader ever sees a half-written file, and no secret (AWS keys, tokens) appears in
the logs, the index files or the error rows.

Archive on the local S3 server (credentials in the environment), index on local disk, in Delta
tables committed a video at a time (a kill can fall between the commits of one batch's
tables: the rerun repairs it); a reader thread parses every index file a reader can see (a Delta
table's snapshot and log, every other file) while the jobs run and are killed.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import pyarrow.parquet as pq
import pytest

from exvad_ray import storage
from exvad_ray import index as idx
from exvad_ray.index import delta
from exvad_ray.video.badfiles import encode_test_video, write_bad_videos

pytestmark = pytest.mark.slow
TABLES = ("videos", "snippets", "segments", "captions", "errors")


@pytest.fixture(scope="module")
def kill_archive(s3_server, tmp_path_factory):
    local = tmp_path_factory.mktemp("kill")
    archive = storage.join(s3_server.create_bucket("kill-archive"), "cams")
    good = []
    for i in range(5):
        p = local / f"v{i}.mp4"
        encode_test_video(str(p), 40 + 8 * i, seed=i)
        uri = storage.join(archive, f"cam{i % 2}", "2026-02-0{}".format(i + 1), p.name)
        storage.put_file(str(p), uri)
        good.append(uri)
    bad = {}
    for path, reason in write_bad_videos(str(local / "bad")).items():
        if os.path.basename(path) in ("zero_bytes.mp4", "truncated.mp4"):
            uri = storage.join(archive, "cam9", os.path.basename(path))
            storage.put_file(path, uri)
            bad[uri] = reason
    return {"uri": archive, "good": good, "bad": bad}


class Reader(threading.Thread):
    """Parses every file of the index over and over; records any that does not parse."""

    def __init__(self, index: str):
        super().__init__(daemon=True)
        self.index, self.stop, self.reads, self.broken = index, threading.Event(), 0, []

    def run(self) -> None:
        while not self.stop.is_set():
            # a Delta table's reader reads the files of its snapshot, never a listing: a block's
            # files are written in place and become visible only with the commit that adds them
            snapshot = set()
            for table in TABLES:
                try:
                    if delta.is_delta(self.index, table):
                        snapshot |= set(idx.list_files(self.index, table))
                except Exception:  # noqa: BLE001 - the table is being created
                    pass
            for root, _, files in os.walk(self.index):
                for name in files:
                    path = os.path.join(root, name)
                    if name.startswith(".tmp-") or name.endswith(".tmp"):
                        continue  # the writers' own scratch files, never listed by readers
                    in_delta = os.path.exists(os.path.join(self.index, os.path.relpath(path, self.index).split(os.sep)[0],
                                                           "_delta_log"))
                    try:
                        if name.endswith(".parquet"):
                            if in_delta and path not in snapshot:
                                continue  # not committed (yet, or ever): no reader sees it
                            pq.read_table(path)
                        elif name.endswith(".json") and "_delta_log" in root:
                            [json.loads(line) for line in open(path, "rb").read().splitlines() if line.strip()]
                        elif name.endswith(".json"):
                            json.loads(open(path, "rb").read())
                        self.reads += 1
                    except FileNotFoundError:
                        pass  # replaced or compacted between listing and opening
                    except Exception as exc:  # noqa: BLE001
                        self.broken.append(f"{path}: {exc}")


def _finished(index: str) -> int:
    return len(idx.done_video_ids(index, ("videos", "errors")))


def test_sigkill_at_random_points_then_exactly_once(tiny_dir, kill_archive, s3_server, tmp_path):
    index = str(tmp_path / "index")
    total = len(kill_archive["good"]) + len(kill_archive["bad"])
    token = "hf_" + "T0kenValue" * 3
    env = dict(os.environ, HF_TOKEN=token, EXVAD_TEST_SECRET_TOKEN=token)
    args = [sys.executable, "-m", "exvad_ray.cli", "process", "--archive", kill_archive["uri"], "--index", index,
            "--label-set", "synthetic", "--profile", "tiny", "--explainer", "none", "--decode-tasks", "1",
            "--commit-every", "1", "--json"]
    rng = random.Random(20261201)
    reader = Reader(index)
    reader.start()
    logs, kills = [], []
    try:
        for attempt in range(3):
            log_path = tmp_path / f"run{attempt}.log"
            logs.append(log_path)
            proc = subprocess.Popen(args, env=env, stdout=open(log_path, "wb"), stderr=subprocess.STDOUT,
                                    start_new_session=True)
            # runs 0 and 1: after 1-2 more videos finish; run 2: while it lists or starts Ray (the
            # lease is taken); each plus a random extra delay
            want = _finished(index) + (rng.randint(1, 2) if attempt < 2 else 0)
            extra = rng.uniform(0.0, 2.0)
            deadline = time.time() + 300
            lease = os.path.join(index, "lease.json")
            while time.time() < deadline and proc.poll() is None and (
                    _finished(index) < want or not os.path.exists(lease)):
                time.sleep(0.1)
            time.sleep(extra)
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                kills.append(_finished(index))
            proc.wait(timeout=60)
        log_path = tmp_path / "final.log"
        logs.append(log_path)
        out = subprocess.run(args, env=env, stdout=open(log_path, "wb"), stderr=subprocess.STDOUT, timeout=600)
        assert out.returncode == 0, log_path.read_text()[-3000:]
    finally:
        reader.stop.set()
        reader.join(timeout=30)
    assert reader.broken == [] and reader.reads > 0
    assert len(kills) >= 2, kills  # killed while running (how far each got depends on the machine's speed)
    videos = idx.read_table(index, "videos", columns=["uri"]).column("uri").to_pylist()
    assert sorted(videos) == sorted(kill_archive["good"])  # each exactly once
    raw = idx.read_table(index, "videos", columns=["uri"], current=False).column("uri").to_pylist()
    assert sorted(raw) == sorted(videos)  # and no stale duplicate in the files either
    snippets = idx.read_table(index, "snippets", columns=["uri", "snippet_index"], current=False).to_pylist()
    assert len(snippets) == len({(r["uri"], r["snippet_index"]) for r in snippets})
    errors = idx.read_table(index, "errors", current=False).to_pylist()
    assert {e["uri"]: e["reason"] for e in errors} == kill_archive["bad"] and len(errors) == len(kill_archive["bad"])
    assert _finished(index) == total
    # security: no secret in logs, index files or error rows
    secrets_ = [s3_server.secret_key, s3_server.access_key, token]
    texts = [p.read_bytes() for p in logs]
    for root, _, files in os.walk(index):
        texts += [open(os.path.join(root, f), "rb").read() for f in files]
    texts.append(json.dumps(errors, default=str).encode())
    for secret in secrets_:
        assert not any(secret.encode() in t for t in texts), "a secret leaked"
