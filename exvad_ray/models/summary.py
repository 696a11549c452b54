"""The ``summary`` explanation backend: no language model, a deterministic summary of the cleaned
captions. Used by the ``lite`` profile when no real LLM that installs from PyPI fits the CPU budget
(docs/MODELS.md says why). Its model id (``caption-summary/1``) and the text itself say what it is, so
nobody mistakes it for a generated explanation.

It reads the same chat messages the LLM backends get (``prompts.build_explanation_messages``) and
summarises their ``[t s] caption`` lines, so the stage code is the same for every backend.
"""

from __future__ import annotations

import re
from typing import Sequence

from exvad_ray.errors import ExvadError
from exvad_ray.models.profiles import ExplainerSpec, model_id

PREFIX = "Caption summary (no language model):"
_LINE = re.compile(r"^\[(?P<start>[\d.]+) s(?: - (?P<end>[\d.]+) s)?\] (?P<text>.*)$")
_SCOPE = re.compile(r"from (?P<start>[\d.]+) s to (?P<end>[\d.]+) s")
MAX_RUNS = 6
_CAPTION_PREFIXES = ("a frame showing ", "an unclear frame, perhaps ")


def _subject(caption: str) -> str:
    """'a frame showing volcano and fountain.' -> 'volcano and fountain' (other captions unchanged)."""
    text = caption.strip().rstrip(".")
    for p in _CAPTION_PREFIXES:
        if text.startswith(p):
            return text[len(p):]
    return text


def summarize_messages(messages: Sequence[dict[str, str]]) -> str:
    """One short paragraph: what the frames showed, run by run, with their times."""
    user = next((m["content"] for m in messages if m.get("role") == "user"), None)
    if user is None:
        raise ExvadError("the summary backend needs a user message with the frame descriptions")
    runs: list[tuple[str, str, str]] = []
    for line in user.splitlines():
        m = _LINE.match(line.strip())
        if not m or m["text"] in ("(no caption)", ""):
            continue
        subject = _subject(m["text"])
        if runs and runs[-1][2] == subject:
            runs[-1] = (runs[-1][0], m["end"] or m["start"], subject)
        else:
            runs.append((m["start"], m["end"] or m["start"], subject))
    scope = _SCOPE.search(user)
    where = f" Between {scope['start']} s and {scope['end']} s of the video." if scope else ""
    if not runs:
        return f"{PREFIX}{where} No frame was described with confidence."
    if len(runs) > MAX_RUNS:  # keep it short: evenly spaced runs, first and last included
        runs = [runs[round(i * (len(runs) - 1) / (MAX_RUNS - 1))] for i in range(MAX_RUNS)]
    parts = [f"{s} s: {t}" if s == e else f"{s}-{e} s: {t}" for s, e, t in runs]
    return f"{PREFIX}{where} The frames show " + "; ".join(parts) + "."


class SummaryExplainer:
    """``explain(list_of_messages) -> list[str]``, deterministic, no model weights."""

    def __init__(self, spec: ExplainerSpec):
        self.spec = spec
        self.model_id = model_id(spec.model)
        self.generated_tokens = 0

    def explain(self, list_of_messages: Sequence[list[dict[str, str]]]) -> list[str]:
        if isinstance(list_of_messages, dict) or (list_of_messages and isinstance(list_of_messages[0], dict)):
            raise ExvadError("explain takes a list of conversations (each a list of messages)")
        return [summarize_messages(m) for m in list_of_messages]
