"""Crash guard: a video whose task keeps dying becomes an error row instead of a job that never ends.

Ray Data retries a task whose worker died (memory killer, decoder segfault) without limit, so one
poisonous video used to keep a job alive forever. Before decoding a video, the decode stage asks
the job's progress actor which attempt this is (`begin`). Attempts beyond `MAX_ATTEMPTS` do not
decode: they write the error row and let the job complete. The reason is `decoder_crash` when a
previous attempt on this node left a fatal-signal report (faulthandler writes it to a per-video
file while the video decodes) and `resource_exhausted` otherwise: a worker killed without a fault
report was killed from outside, and on these machines that is the memory killer (Ray's, or the
kernel's).

`EXVAD_FAULT_DECODE=<text>:<SEGV|KILL>` makes a decode task whose URI contains <text> die by that
signal (fault injection for the reliability tests; never set in production).
"""

from __future__ import annotations

import contextlib
import faulthandler
import glob
import os
import signal
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

MAX_ATTEMPTS = 3  # a video's decode task runs at most this many times
FAULT_ENV = "EXVAD_FAULT_DECODE"


def _fault_dir() -> str:
    d = os.path.join(tempfile.gettempdir(), "exvad-faults")
    os.makedirs(d, exist_ok=True)
    return d


def attempt_number(progress: Any, video_id: str) -> int:
    """1 for the first attempt at this video in this job; 1 without a progress actor."""
    if progress is None:
        return 1
    import ray

    try:
        return int(ray.get(progress.begin_video.remote(video_id), timeout=60))
    except Exception:  # noqa: BLE001 - no guard rather than no job
        return 1


def crash_reason(video_id: str) -> tuple[str, str]:
    """(reason, message) for a video whose attempts all died."""
    reports = glob.glob(os.path.join(_fault_dir(), f"{video_id}.*.log"))
    fatal = [r for r in reports if "Fatal Python error" in open(r, errors="replace").read()]
    if fatal:
        first = open(fatal[0], errors="replace").read().splitlines()[0]
        return "decoder_crash", f"the decoding process crashed on each of {MAX_ATTEMPTS} attempts ({first.strip()})"
    return "resource_exhausted", (f"the task was killed on each of {MAX_ATTEMPTS} attempts without a fault "
                                  "report (out of memory); see docs/PIPELINE.md, 'Memory bound'")


@contextlib.contextmanager
def fault_report(video_id: str) -> Iterator[None]:
    """While a video decodes, fatal signals (SIGSEGV, SIGABRT, ...) are reported to a per-video file."""
    path = os.path.join(_fault_dir(), f"{video_id}.{os.getpid()}.log")
    f = open(path, "w")
    faulthandler.enable(file=f)
    try:
        _inject_fault(video_id)
        yield
    finally:
        faulthandler.enable(file=sys.stderr)
        f.close()
    for stale in glob.glob(os.path.join(_fault_dir(), f"{video_id}.*.log")):  # done: earlier reports too
        with contextlib.suppress(OSError):
            os.remove(stale)


class GuardTripped(Exception):
    """Raised in place of decoding when a video has used up its attempts."""

    def __init__(self, reason: str, message: str):
        self.reason = reason
        super().__init__(message)


def _inject_fault(video_id: str) -> None:
    spec = os.environ.get(FAULT_ENV)
    if not spec or ":" not in spec:
        return
    text, sig = spec.rsplit(":", 1)
    uri = _current_uri.get(video_id, "")
    if text and text in uri:
        os.kill(os.getpid(), getattr(signal, f"SIG{sig}"))


_current_uri: dict[str, str] = {}


@contextlib.contextmanager
def guarded(progress: Any, item: dict[str, Any]) -> Iterator[None]:
    """Wrap one video's decoding: count the attempt, trip after MAX_ATTEMPTS, report faults."""
    vid = item["video_id"]
    if attempt_number(progress, vid) > MAX_ATTEMPTS:
        raise GuardTripped(*crash_reason(vid))
    _current_uri[vid] = item["uri"]
    try:
        with fault_report(vid):
            yield
    finally:
        _current_uri.pop(vid, None)
