"""Live progress across Ray workers: a small named actor that stages notify (fire-and-forget) and
the driver polls, so the user sees videos done / failed / hours of video while the job runs."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import ray


@ray.remote(num_cpus=0)
class ProgressActor:
    def __init__(self, total_videos: int, total_bytes: int):
        self.total_videos = total_videos
        self.total_bytes = total_bytes
        self.started = time.time()
        self.decoded = 0
        self.done = 0
        self.failed = 0
        self.hours = 0.0
        self.snippets = 0
        self.reasons: Counter[str] = Counter()
        self.segments: Counter[str] = Counter()
        self.attempts: Counter[str] = Counter()

    def begin_video(self, video_id: str) -> int:
        """Count an attempt at decoding a video; returns its number (pipeline/guard.py)."""
        self.attempts[video_id] += 1
        return self.attempts[video_id]

    def decoded_video(self) -> None:
        self.decoded += 1

    def video_done(self, hours: float, snippets: int, segment_classes: list[str]) -> None:
        self.done += 1
        self.hours += hours
        self.snippets += snippets
        self.segments.update(segment_classes)

    def video_failed(self, stage: str, reason: str) -> None:
        self.failed += 1
        self.reasons[f"{stage}:{reason}"] += 1

    def snapshot(self) -> dict[str, Any]:
        return {"total": self.total_videos, "decoded": self.decoded, "done": self.done, "failed": self.failed,
                "hours": self.hours, "snippets": self.snippets, "errors": dict(self.reasons),
                "segments": dict(self.segments), "elapsed_s": time.time() - self.started,
                "retried_videos": sum(1 for n in self.attempts.values() if n > 1)}


def progress_line(s: dict[str, Any]) -> str:
    finished = s["done"] + s["failed"]
    rate = s["hours"] / (s["elapsed_s"] / 3600) if s["elapsed_s"] > 0 else 0.0
    return (f"[exvad] videos {finished}/{s['total']} (ok {s['done']}, failed {s['failed']}), "
            f"{s['hours']:.2f} h of video, {s['snippets']} snippets, {rate:.1f} video-h/h, "
            f"{s['elapsed_s']:.0f} s")


def notify(actor: Any, method: str, *args: Any) -> None:
    """Fire-and-forget call; progress must never fail the job."""
    if actor is None:
        return
    try:
        getattr(actor, method).remote(*args)
    except Exception:  # noqa: BLE001
        pass


def driver_node() -> dict[str, Any]:
    """Actor options that place an actor on the driver's node (soft): the progress actor holds the
    crash guard's attempt counts, so it should not die with a worker node; if it does, it restarts
    (counts start again) and the run's failure counts come from the index (worklist.final_snapshot)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True),
            "max_restarts": -1, "max_task_retries": -1}  # and if its node dies anyway, it comes back
