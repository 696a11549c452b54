"""Prompts that turn time-stamped (cleaned) captions into a short explanation of what is abnormal and when.

Pure Python (no torch): used by both the transformers and the vLLM backend, the latter in an
environment without open_clip/torchvision.
"""

from __future__ import annotations

from typing import Sequence

SYSTEM_PROMPT = (
    "You are a video surveillance analyst. You receive time-stamped descriptions of frames sampled "
    "from a video. Write a short explanation (at most three sentences) of what happens. If anything "
    "is abnormal (violence, crime, accident, fire, explosion, dangerous behaviour), name the abnormal "
    "event and give the time span in seconds when it happens. If nothing is abnormal, say that the "
    "video shows normal activity."
)

VIDEO_SUMMARY_SYSTEM_PROMPT = (
    "You are a video surveillance analyst. You receive short explanations of consecutive parts of one "
    "long video, each with its time span in seconds. Write one short video-level explanation (at most "
    "three sentences) naming what is abnormal and when, or saying that the video shows normal activity."
)

MAX_CAPTIONS = 64  # keep prompts well inside a small context window; captions are subsampled evenly


def _fmt_t(t: float) -> str:
    return f"{float(t):.1f} s"


def _dedupe_consecutive(timed: Sequence[tuple[float, str]]) -> list[tuple[float, float, str]]:
    """Merge runs of the same caption into (start, end, caption): cleaned captions repeat a lot."""
    runs: list[tuple[float, float, str]] = []
    for t, c in timed:
        c = " ".join(str(c).split())
        if runs and runs[-1][2] == c:
            runs[-1] = (runs[-1][0], float(t), c)
        else:
            runs.append((float(t), float(t), c))
    return runs


def format_timed_captions(timed_captions: Sequence[tuple[float, str]], max_captions: int = MAX_CAPTIONS) -> str:
    """One line per caption run: ``[12.0 s] text`` or ``[12.0 s - 20.0 s] text``."""
    runs = _dedupe_consecutive(sorted(((float(t), c) for t, c in timed_captions), key=lambda x: x[0]))
    if len(runs) > max_captions:
        idx = [round(i * (len(runs) - 1) / (max_captions - 1)) for i in range(max_captions)]
        runs = [runs[i] for i in idx]
    lines = []
    for start, end, c in runs:
        span = _fmt_t(start) if end == start else f"{_fmt_t(start)} - {_fmt_t(end)}"
        lines.append(f"[{span}] {c if c else '(no caption)'}")
    return "\n".join(lines)


def build_explanation_messages(
    timed_captions: Sequence[tuple[float, str]],
    window: tuple[float, float] | None = None,
    max_captions: int = MAX_CAPTIONS,
) -> list[dict[str, str]]:
    """Chat messages asking for the explanation of a video (``window=None``) or of one window of a long video."""
    if window is None:
        scope = "the video"
    else:
        scope = f"the part of a long video from {_fmt_t(window[0])} to {_fmt_t(window[1])}"
    body = format_timed_captions(timed_captions, max_captions) or "(no frames were described)"
    user = (f"Frame descriptions of {scope}:\n{body}\n\n"
            "Explain what happens, name anything abnormal and when it happens.")
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def build_video_summary_messages(window_explanations: Sequence[tuple[float, float, str]]) -> list[dict[str, str]]:
    """Chat messages that merge per-window explanations of a long video into one video-level explanation."""
    body = "\n".join(f"[{_fmt_t(s)} - {_fmt_t(e)}] {' '.join(str(x).split())}" for s, e, x in window_explanations)
    return [{"role": "system", "content": VIDEO_SUMMARY_SYSTEM_PROMPT},
            {"role": "user", "content": f"Explanations of the parts of the video:\n{body}\n\n"
                                        "Write the video-level explanation."}]
