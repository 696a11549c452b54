"""`NormalityModel`: the global bank, optional per-camera banks, their calibrations and a model card.

`score(vectors, video_id, camera)` is what scoring calls per video: each half's k-NN distance to the
bank of the video's camera (the global bank for a camera without one, or an unknown camera), each
made a percentile of that bank's normal footage, combined (`combine`: the weighted mean of the
halves' surprises, -log(1 - percentile), by default) and calibrated again, so the result is one percentile per snippet in [0, 1]; with it come which half
is more unusual and the nearest normal moment (evidence). The video's own bank entries are left out
(leave-one-video-out), except snippets pinned by a false-alarm verdict: without labels the bank is
drawn from the whole archive, and an anomaly must not be found normal because it matches itself.

Serialised as one .npz (arrays; `allow_pickle=False`) holding a JSON document (layout, banks' video
and camera names, calibrations, card): no pickle, readable anywhere numpy is.
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Sequence
from typing import Any, BinaryIO

import numpy as np

from exvad_ray.detector.localize import LocalizationConfig, localize
from exvad_ray.errors import ExvadError
from exvad_ray.normality.bank import Bank
from exvad_ray.normality.calibration import PercentileMap, Threshold, fit_threshold
from exvad_ray.normality.halves import Layout

FORMAT = "exvad-normality/1"
GLOBAL = "_global"  # never a camera name: index partitions strip leading "_"


def _open(source: bytes | BinaryIO) -> tuple[Any, dict]:
    """(the npz, its JSON document), the format checked."""
    try:
        z = np.load(io.BytesIO(source) if isinstance(source, bytes | bytearray) else source, allow_pickle=False)
        doc = json.loads(bytes(z["meta_json"]).decode())
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise ExvadError(f"not a normality model ({type(exc).__name__}: {exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else None
        raise ExvadError(f"not a normality model of format {FORMAT} (found {found!r})")
    return z, doc


@dataclasses.dataclass(frozen=True)
class BankCalibration:
    """Per half raw -> percentile, the combined value -> percentile, and the false-alarm threshold."""

    halves: tuple[PercentileMap, ...]
    combined: PercentileMap
    threshold: Threshold

    def to_dict(self) -> dict:
        return {"halves": [m.to_dict() for m in self.halves], "combined": self.combined.to_dict(),
                "threshold": self.threshold.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> BankCalibration:
        return cls(tuple(PercentileMap.from_dict(m) for m in d["halves"]), PercentileMap.from_dict(d["combined"]),
                   Threshold.from_dict(d["threshold"]))


COMBINE_RULES = ("mean", "max")


def combine(half_surprises: np.ndarray, weights: Sequence[float], rule: str = "mean") -> np.ndarray:
    """One value per snippet from its halves' surprises (-log(1 - percentile)): "mean" (weighted mean;
    the default: on the demo archive frame AUC 0.818 against 0.804 for max, docs/NORMALITY.md) or "max"
    (unusual in either half: an event unusual in one half only is not diluted by the other). Halves of
    weight 0 are left out. The result is calibrated again
    (`BankCalibration.combined`)."""
    p = np.asarray(half_surprises, np.float64)
    w = np.asarray(weights, np.float64)
    if rule == "max":
        return p[:, w > 0].max(1) if len(p) else np.zeros(0)
    if rule == "mean":
        return p @ (w / w.sum())
    raise ExvadError(f"unknown rule for combining the halves {rule!r}; known: {', '.join(COMBINE_RULES)}")


def smooth_series(raw: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average of a video's raw scores over `width` consecutive snippets (edges
    padded with their value), per column. An event lasts several snippets while a lone odd frame
    (a compression glitch, a bird) does not: on the demo archive smoothing over 3 snippets raised the
    test frame AUC of normality alone from 0.818 to 0.876 (k = 5; validation 0.763 -> 0.793)."""
    r = np.asarray(raw, np.float64)
    if width <= 1 or len(r) == 0:
        return r
    pad = width // 2
    padded = np.pad(r, ((pad, width - 1 - pad), (0, 0)), mode="edge")
    c = np.cumsum(np.vstack([np.zeros((1, r.shape[1])), padded]), 0)
    return (c[width:] - c[:-width]) / width


def calibrate_bank(raw_series: Sequence[np.ndarray], seconds: Sequence[float], weights: Sequence[float],
                   per_hour: float = 1.0, base: LocalizationConfig = LocalizationConfig(),
                   rule: str = "mean", smooth: int = 1) -> BankCalibration:
    """Calibration of one bank from leave-one-video-out raw scores (n_i, H) of its normal videos
    (each video's series smoothed over `smooth` snippets, as `NormalityModel.score` will)."""
    pairs = [(smooth_series(r, smooth), float(t)) for r, t in zip(raw_series, seconds) if len(r)]
    if not pairs:
        raise ExvadError("calibration needs normal footage scored against the bank; none was given")
    allraw = np.concatenate([r for r, _ in pairs])
    halves = tuple(PercentileMap.fit(allraw[:, h]) for h in range(allraw.shape[1]))
    comb = [combine(np.stack([m.surprise(r[:, h]) for h, m in enumerate(halves)], 1), weights, rule)
            for r, _ in pairs]
    cmap = PercentileMap.fit(np.concatenate(comb))
    thr = fit_threshold([cmap(c) for c in comb], [t for _, t in pairs], per_hour, base)
    return BankCalibration(halves, cmap, thr)


@dataclasses.dataclass
class NormalityScores:
    """One video scored: per snippet the percentile, each half's percentile, the more unusual half,
    and the nearest normal moment of the bank (video, snippet, start time, camera, cosine similarity)."""

    percentile: np.ndarray
    halves: np.ndarray
    half_names: tuple[str, ...]
    raw: np.ndarray
    nearest_video: list[str]
    nearest_snippet: np.ndarray
    nearest_start_s: np.ndarray
    nearest_camera: list[str]
    similarity: np.ndarray
    bank: str
    threshold: Threshold
    surprise: np.ndarray  # -log(1 - percentile): the same order, unsaturated (for ranking far beyond normal)

    @property
    def unusual_half(self) -> list[str]:
        return [self.half_names[i] for i in np.argmax(self.halves, 1)]

    def segments(self, base: LocalizationConfig = LocalizationConfig()) -> list[tuple[int, int]]:
        """Flagged snippet ranges (inclusive) at the calibrated threshold, by the job's rule."""
        return localize(self.percentile, self.threshold.localization(base))

    def evidence(self, i: int) -> dict:
        """Why snippet `i` is (un)usual: its percentile, the unusual half, the nearest normal moment."""
        return {"percentile": float(self.percentile[i]), "unusual": self.unusual_half[i],
                "halves": {n: float(v) for n, v in zip(self.half_names, self.halves[i])},
                "nearest": {"video_id": self.nearest_video[i], "snippet_index": int(self.nearest_snippet[i]),
                            "start_s": float(self.nearest_start_s[i]), "camera": self.nearest_camera[i],
                            "similarity": float(self.similarity[i])},
                "bank": self.bank}


@dataclasses.dataclass
class NormalityModel:
    layout: Layout
    banks: dict[str, Bank]
    calibrations: dict[str, BankCalibration]
    half_weights: tuple[float, ...]
    card: dict = dataclasses.field(default_factory=dict)
    rule: str = "mean"  # how the halves' surprises combine (`combine`)
    smooth: int = 1  # snippets the raw scores are averaged over (`smooth_series`); the fit job's default is 3

    def bank_for(self, camera: str | None) -> str:
        """The camera's own bank when it has one, else the global bank."""
        return camera if camera is not None and camera in self.banks else GLOBAL

    def raw(self, vectors: np.ndarray, video_id: str | None = None, camera: str | None = None
            ) -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
        """(bank name, raw (n, H), nearest entry (n,), similarity (n,)) before calibration."""
        name = self.bank_for(camera)
        raw, nearest, sim = self.banks[name].search(vectors, exclude_video=video_id)
        return name, raw, nearest, sim

    def score(self, vectors: np.ndarray, video_id: str | None = None, camera: str | None = None) -> NormalityScores:
        """Score one video's snippets, in order (the smoothing runs along them)."""
        name, raw, nearest, sim = self.raw(vectors, video_id, camera)
        if name not in self.calibrations:
            raise ExvadError(f"bank {name} is not calibrated")
        cal, bank = self.calibrations[name], self.banks[name]
        smoothed = smooth_series(raw, self.smooth)
        surprise = np.stack([m.surprise(smoothed[:, h]) for h, m in enumerate(cal.halves)], 1) if len(raw) else \
            np.zeros((0, len(cal.halves)))
        combined = cal.combined.surprise(combine(surprise, self.half_weights, self.rule)) if len(raw) else np.zeros(0)
        halves, pct = -np.expm1(-surprise), -np.expm1(-combined)
        vids = [bank.videos[int(v)] for v in bank.video[nearest]]
        cams = [bank.cameras[int(c)] for c in bank.camera[nearest]]
        return NormalityScores(pct, halves, self.layout.names, raw, vids, bank.snippet[nearest].copy(),
                               bank.start_s[nearest].copy(), cams, sim, name, cal.threshold, combined)

    # ------------------------------------------------------------------ serialisation

    def to_bytes(self) -> bytes:
        names = list(self.banks)
        arrays: dict[str, np.ndarray] = {}
        banks_meta = []
        for i, name in enumerate(names):
            b = self.banks[name]
            for key, arr in b.arrays().items():
                arrays[f"bank{i}_{key}"] = arr
            banks_meta.append({"name": name, "videos": b.videos, "cameras": b.cameras, "k": b.k,
                               "sources": b.sources})
        doc = {"format": FORMAT, "layout": self.layout.to_dict(), "half_weights": list(self.half_weights),
               "rule": self.rule, "smooth": self.smooth, "banks": banks_meta,
               "calibrations": {k: v.to_dict() for k, v in self.calibrations.items()}, "card": self.card}
        arrays["meta_json"] = np.frombuffer(json.dumps(doc).encode(), np.uint8)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    @staticmethod
    def describe(source: bytes | BinaryIO) -> dict:
        """The model's JSON document (format, layout, banks' names and sizes, calibrations, card) read
        without its arrays - what a preflight check needs; raises ExvadError if it is not a model."""
        return _open(source)[1]

    @classmethod
    def from_bytes(cls, data: bytes) -> NormalityModel:
        z, doc = _open(data)
        layout = Layout.from_dict(doc["layout"])
        banks = {}
        for i, m in enumerate(doc["banks"]):
            a = {k: z[f"bank{i}_{k}"] for k in ("vectors", "video", "snippet", "start_s", "camera", "pinned")}
            banks[m["name"]] = Bank(layout, a["vectors"], a["video"], a["snippet"], a["start_s"], a["camera"],
                                    a["pinned"], list(m["videos"]), list(m["cameras"]), int(m["k"]), m.get("sources", {}))
        cals = {k: BankCalibration.from_dict(v) for k, v in doc["calibrations"].items()}
        return cls(layout, banks, cals, tuple(doc["half_weights"]), doc.get("card", {}), doc.get("rule", "mean"),
                   int(doc.get("smooth", 1)))
