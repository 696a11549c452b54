"""Scoring with the normality model: normality alone, or fused with a detector, plus the evidence
each flagged segment carries (`exvad rescore --normality`, docs/PIPELINE.md "Scoring with the
normality model").

Why a module of its own: rescoring and (later) the archive job both turn a video's snippet vectors
into calibrated scores and evidence the same way; the arrays work is `exvad_ray.normality`'s, what
lives here is the pipeline's side of it - which model, which calibration of the detector, the fusion
the driver fitted, and the evidence columns of docs/CONTRACTS.md "evidence".

Scales (docs/NORMALITY.md "Fusion"): both parts are first calibrated on normal footage. The default
fuses each part's rank among a reference split's footage (the calibration footage: val's videos,
normal and anomalous, when labels are given; no label is needed for a rank) as a surprise
-log(1 - rank): unbounded, so the fused threshold stays reachable and ranks beyond all reference
footage are kept. `surprise` fuses the surprises of each part's percentile of normal footage,
`rank` the bounded ranks themselves.
The fused value is calibrated again on normal footage: the stored anomaly score is its percentile
and the segment threshold comes from the false-alarm rate.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

import numpy as np

from exvad_ray import storage
from exvad_ray.detector.localize import LocalizationConfig
from exvad_ray.errors import ExvadError
from exvad_ray.normality import GLOBAL, NormalityModel, NormalityScores, PercentileMap, ScoreCalibration, fuse
from exvad_ray.records import normal_labels

NORMALITY_CLASSES = ["Normal", "Anomaly"]  # class names of a scoring made by the normality model alone
SCALES = ("rank_surprise", "surprise", "rank")

# The last normality model this worker loaded (by id): tasks run in pooled workers that outlive a
# job, and a model is a bank of at most a few tens of MB; one entry, so memory is bounded by one bank set.
_MODELS: dict[str, NormalityModel] = {}


def normality_id(uri: str) -> str:
    """Content id of a saved normality model: "nrm-" + 12 hex digits of its file's SHA-256."""
    from exvad_ray.checkpoints import read_normality

    return "nrm-" + hashlib.sha256(read_normality(uri)).hexdigest()[:12]


def load_model(uri: str, model_id: str) -> NormalityModel:
    """The model at `uri`, loaded once per worker process."""
    if model_id not in _MODELS:
        from exvad_ray.checkpoints import read_normality

        _MODELS.clear()
        _MODELS[model_id] = NormalityModel.from_bytes(read_normality(uri))
    return _MODELS[model_id]


def describe_model(uri: str) -> dict[str, Any]:
    """The model's JSON document plus each bank's entry count (`entries`), read from the .npz's
    directory, its JSON member and the arrays' headers only (a bank's vectors are never loaded).
    ExvadError when the URI does not hold a normality model."""
    import zipfile

    from exvad_ray.checkpoints import normality_uri

    target = normality_uri(uri)
    if not storage.exists(target):
        raise ExvadError(f"no normality model at {uri} (write one with `exvad normality fit`)")
    try:
        with storage.open_file(target, "rb") as f, zipfile.ZipFile(f) as z:
            with z.open("meta_json.npy") as m:
                doc = json.loads(bytes(_read_npy(m)).decode())
            for i, bank in enumerate(doc.get("banks") or []):
                with z.open(f"bank{i}_vectors.npy") as m:
                    bank["entries"] = int(_npy_shape(m)[0])
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, TypeError, IndexError) as exc:
        raise ExvadError(f"{uri} is not a normality model ({type(exc).__name__}: {exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != "exvad-normality/1":
        raise ExvadError(f"{uri} is not a normality model of format exvad-normality/1")
    return doc


def _npy_shape(f: Any) -> tuple[int, ...]:
    version = np.lib.format.read_magic(f)
    shape, _order, _dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0)
                             else np.lib.format.read_array_header_2_0(f))
    return shape


def _read_npy(f: Any) -> np.ndarray:
    return np.lib.format.read_array(f, allow_pickle=False)


def check_model(uri: str) -> dict[str, Any]:
    """A readable normality model with a calibrated, non-empty global bank (preflight)."""
    doc = describe_model(uri)
    banks = {b.get("name"): b for b in doc.get("banks") or []}
    if GLOBAL not in banks or GLOBAL not in (doc.get("calibrations") or {}):
        raise ExvadError(f"the normality model at {uri} has no calibrated global bank (refit it with `exvad normality fit`)")
    if not banks[GLOBAL]["entries"]:
        raise ExvadError(f"the normality model at {uri} has an empty bank (refit it with `exvad normality fit`)")
    return doc


# ------------------------------------------------------------------------------------ detector calibration


def card_calibration(card: dict[str, Any] | None) -> dict[str, Any] | None:
    """The detector's calibration on normal footage from its model card (`exvad train` writes it);
    None for older cards."""
    cal = (card or {}).get("calibration") if isinstance(card, dict) else None
    return cal if isinstance(cal, dict) and cal.get("threshold") is not None else None


def calibrated_localization(card: dict[str, Any] | None, base: LocalizationConfig = LocalizationConfig()
                            ) -> LocalizationConfig | None:
    """The detector's flagging rule at its calibrated threshold (raw score scale), or None."""
    cal = card_calibration(card)
    if cal is None:
        return None
    single = cal.get("single_snippet_score")
    return dataclasses.replace(base, threshold=float(cal["threshold"]),
                               single_snippet_score=float(single) if single is not None else base.single_snippet_score)


# ------------------------------------------------------------------------------------ fusion


@dataclasses.dataclass
class Fusion:
    """What the driver fitted for a fused scoring (shipped to the tasks as plain data)."""

    weight: float  # of the normality part
    scale: str  # one of SCALES
    detector_map: dict  # PercentileMap of the detector's raw score on normal footage
    calibration: dict  # ScoreCalibration of the fused value on normal footage
    rank_maps: dict | None = None  # scales "rank", "rank_surprise": {"normality": PercentileMap, "detector": PercentileMap}
    weight_source: str = "default"
    weight_scores: dict | None = None  # {weight: snippet AP or AUC on val} when the weight was chosen there
    weight_metric: str | None = None  # which ("ap" or "auc": normality.fusion.WEIGHT_METRIC)

    def parts(self, n_surprise: np.ndarray, d_raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return fusion_parts(self.scale, self.detector_map, self.rank_maps, n_surprise, d_raw)

    def raw(self, n_surprise: np.ndarray, d_raw: np.ndarray) -> np.ndarray:
        a, b = self.parts(n_surprise, d_raw)
        return fuse(a, b, self.weight)

    def percentile(self, fused_raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(percentile of normal footage, its surprise -log(1 - percentile)): the surprise keeps the
        percentile's order unsaturated (stored beside it); one interpolation gives both."""
        surprise = ScoreCalibration.from_dict(self.calibration).map.surprise(fused_raw)
        return -np.expm1(-surprise), surprise

    def localization(self, base: LocalizationConfig = LocalizationConfig()) -> LocalizationConfig:
        return ScoreCalibration.from_dict(self.calibration).threshold.localization(base)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def fusion_parts(scale: str, detector_map: dict, rank_maps: dict | None, n_surprise: np.ndarray,
                 d_raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two calibrated parts on one scale (module doc)."""
    dmap = PercentileMap.from_dict(detector_map)
    if scale == "surprise":
        return np.asarray(n_surprise, np.float64), dmap.surprise(d_raw)
    if scale in ("rank", "rank_surprise"):
        if not rank_maps:
            raise ExvadError("rank fusion needs the reference footage's rank maps")
        n_map, d_map = (PercentileMap.from_dict(rank_maps[k]) for k in ("normality", "detector"))
        d = np.asarray(d_raw, np.float64)
        if scale == "rank":
            return n_map(n_surprise), d_map(d)
        return n_map.surprise(n_surprise), d_map.surprise(d)
    raise ExvadError(f"unknown fusion scale {scale!r}; known: {', '.join(SCALES)}")


def snippet_truth(start_s: np.ndarray, end_s: np.ndarray, label: dict[str, Any] | None, fps: float | None) -> np.ndarray:
    """0/1 per snippet from a labels-table row: 1 where a labelled anomaly interval overlaps it."""
    y = np.zeros(len(start_s), np.int8)
    if not label:
        return y
    rate = label.get("fps") or fps or 0.0
    for s in label.get("segments") or []:
        if str(s.get("label", "")).lower() == "normal" or rate <= 0:
            continue
        a, b = s["start_frame"] / rate, s["end_frame"] / rate
        y |= ((start_s < b) & (end_s > a)).astype(np.int8)
    return y


def is_normal(label: dict[str, Any] | None) -> bool:
    return label is not None and normal_labels(label.get("labels"))


# ------------------------------------------------------------------------------------ evidence


def _clock(s: float) -> str:
    m, sec = divmod(int(round(s)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def _share(p: float) -> str:
    """A percentile as the share of normal footage it exceeds ("99.7 %"; "all" beyond what 0.1 % shows)."""
    return "all" if p >= 0.9995 else f"{100 * p:.1f} %"


def bank_label(bank: str) -> str:
    return "global" if bank == GLOBAL else bank


def evidence_columns(ns: NormalityScores, peak: int, nearest_uri: dict[str, str]) -> dict[str, Any]:
    """docs/CONTRACTS.md "evidence" of a segment whose peak snippet is `peak`."""
    vid = ns.nearest_video[peak]
    uri = nearest_uri.get(vid)
    name = (uri.rsplit("/", 1)[-1].rsplit(".", 1)[0] if uri else vid)
    half = ns.unusual_half[peak]
    h = ns.half_names.index(half)
    where = "the archive" if ns.bank == GLOBAL else ns.bank
    sim = float(ns.similarity[peak])
    # a fused segment may be flagged by the detector while its footage looks normal: say which it is
    lead = ("nothing like this in the normal footage of" if float(ns.percentile[peak]) >= ns.threshold.threshold
            else "not unusual enough on its own against the normal footage of")
    sentence = (f"{lead} {where} ({half} more unusual than {_share(float(ns.halves[peak, h]))} of it); "
                f"closest: {name} at {_clock(float(ns.nearest_start_s[peak]))}, similarity {sim:.2f}")
    return {"normality": float(ns.percentile[peak]), "unusual_half": half, "nearest_video_id": vid,
            "nearest_uri": uri, "nearest_snippet": int(ns.nearest_snippet[peak]),
            "nearest_start_s": float(ns.nearest_start_s[peak]), "nearest_camera": ns.nearest_camera[peak],
            "nearest_similarity": sim, "normality_bank": bank_label(ns.bank), "evidence": sentence}


def without_language_model(explanation_model: str | None) -> bool:
    """Whether a video's explanations came from no language model (explainer none, or lite's
    caption summary of ImageNet tags): the evidence sentence then leads the segment's explanation."""
    m = (explanation_model or "").strip().lower()
    return not m or m.startswith("caption-summary")


def lead_with_evidence(evidence: str, explanation: str) -> str:
    return f"{evidence}. Keyframes: {explanation}" if explanation else evidence


def manifest_entry(doc: dict[str, Any], uri: str, model_id: str) -> dict[str, Any]:
    """What a scoring's manifest records of the normality model (from its JSON document)."""
    card = doc.get("card") or {}
    return {"uri": uri, "normality_id": model_id, "banks": [bank_label(b["name"]) for b in doc.get("banks") or []],
            "thresholds": {bank_label(b): c["threshold"] for b, c in (doc.get("calibrations") or {}).items()},
            "card": {k: card.get(k) for k in ("kind", "created_at", "sources", "labels_used", "cameras", "settings",
                                              "feature_model") if k in card}}


def digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]
