"""Localisation: the rule that turns a video's snippet scores into flagged segments.

It lives beside the detector, below every user of it: the archive job's assembly, rescoring and the
normality model's calibration (which counts the segments this rule would flag on normal footage to set
a threshold from a false-alarm rate) must all flag with the same rule.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class LocalizationConfig:
    threshold: float = 0.5  # snippet anomaly score that flags a snippet
    min_snippets: int = 2  # shorter runs are dropped ...
    single_snippet_score: float = 0.9  # ... unless they peak this high
    max_gap: int = 1  # runs separated by at most this many unflagged snippets are merged

    @classmethod
    def from_dict(cls, values: dict | None) -> LocalizationConfig:
        """The rule a manifest recorded (`dataclasses.asdict` of one); unknown keys are ignored, missing
        ones take the defaults."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in (values or {}).items() if k in names})


def localize(scores: np.ndarray, cfg: LocalizationConfig = LocalizationConfig()) -> list[tuple[int, int]]:
    """Flagged intervals as inclusive snippet ranges [(first, last), ...]."""
    flagged = np.asarray(scores) >= cfg.threshold
    runs: list[list[int]] = []
    for i in np.flatnonzero(flagged):
        if runs and i - runs[-1][1] <= cfg.max_gap + 1:
            runs[-1][1] = int(i)
        else:
            runs.append([int(i), int(i)])
    return [(a, b) for a, b in runs
            if b - a + 1 >= cfg.min_snippets or float(np.max(scores[a:b + 1])) >= cfg.single_snippet_score]
