"""The field's VAD metrics: frame-level AUC/AP (snippet scores repeated to frames), fine-grained
detection mAP at temporal IoU thresholds (VadCLIP's procedure), per-class AP and video accuracy.

Deviation from the public reference (documented in docs/DETECTOR.md): VadCLIP's `getLocMAP` returns
0 for the whole mAP as soon as one class has no proposal, and averages over classes that have no
ground truth at all (counted as AP 0). Here a class without proposals gets AP 0 on its own and the
mean runs over classes that have ground-truth segments. `reference_quirks=True` reproduces the
reference behaviour for comparison.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from exvad_ray.detector.localize import LocalizationConfig, localize
from exvad_ray.errors import ExvadError
from exvad_ray.units import SNIPPET_FRAMES

IOU_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5)

Segment = tuple[int, int]  # frames, inclusive-exclusive


def repeat_to_frames(snippet_values: np.ndarray, frames_per_snippet: int = SNIPPET_FRAMES) -> np.ndarray:
    """Each snippet's value repeated for its 16 frames (axis 0)."""
    return np.repeat(np.asarray(snippet_values), frames_per_snippet, axis=0)


def frame_ground_truth(n_snippets: int, segments: Sequence[Segment],
                       frames_per_snippet: int = SNIPPET_FRAMES) -> np.ndarray:
    """0/1 per frame over n_snippets*16 frames, 1 inside annotated [start, end) ranges."""
    gt = np.zeros(n_snippets * frames_per_snippet, dtype=np.int8)
    for start, end in segments:
        s, e = max(0, int(start)), min(len(gt), int(end))
        if e > s:
            gt[s:e] = 1
    return gt


def frame_auc_ap(snippet_scores: Sequence[np.ndarray], segments: Sequence[Sequence[Segment]]) -> tuple[float, float]:
    """Frame-level ROC AUC and AP over all videos concatenated (UCF-Crime AUC, XD-Violence AP)."""
    if len(snippet_scores) != len(segments):
        raise ExvadError("one list of ground-truth segments per video is needed")
    if not snippet_scores:
        raise ExvadError("no videos to evaluate")
    scores = np.concatenate([repeat_to_frames(s) for s in snippet_scores])
    gt = np.concatenate([frame_ground_truth(len(s), g) for s, g in zip(snippet_scores, segments)])
    if gt.min() == gt.max():
        raise ExvadError("frame AUC/AP need both normal and anomalous frames in the evaluation set "
                         "(are temporal annotations missing?)")
    return float(roc_auc_score(gt, scores)), float(average_precision_score(gt, scores))


def _nms(proposals: np.ndarray, thresh: float = 0.6) -> list[int]:
    """Greedy 1-D NMS over proposals already sorted by score (rows: start, end)."""
    if len(proposals) == 0:
        return []
    x1, x2 = proposals[:, 0], proposals[:, 1]
    lengths = x2 - x1
    order = np.arange(len(proposals))
    keep: list[int] = []
    while order.size > 0:
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        inter = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        iou = inter / np.maximum(lengths[i] + lengths[rest] - inter, 1e-12)
        order = rest[iou <= thresh]
    return keep


def class_proposals(frame_probs: np.ndarray, c: int, video_index: int) -> list[list[float]]:
    """VadCLIP's proposals for class c in one video: runs of frames above max - 0.6*(max-min),
    at least 2 frames long, scored max + 0.7 * video class score, then NMS 0.6."""
    col = frame_probs[:, c]
    n = len(col)
    top = max(1, n // SNIPPET_FRAMES)
    class_score = float(np.sort(col)[::-1][:top].mean())
    thr = col.max() - (col.max() - col.min()) * 0.6
    above = np.concatenate([[0], (col > thr).astype(np.int8), [0]])
    diff = np.diff(above)
    starts, ends = np.flatnonzero(diff == 1), np.flatnonzero(diff == -1)
    props = [[video_index, s, e, float(col[s:e].max()) + 0.7 * class_score]
             for s, e in zip(starts, ends) if e - s >= 2]
    if not props:
        return []
    arr = np.array(props, dtype=np.float64)
    arr = arr[np.argsort(-arr[:, 3], kind="stable")]
    return [list(arr[k]) for k in _nms(arr[:, 1:3], 0.6)]


def _interval_iou(a0: float, a1: float, b0: float, b1: float) -> float:
    inter = max(0.0, min(a1, b1) - max(a0, b0))
    union = (a1 - a0) + (b1 - b0) - inter
    return inter / union if union > 0 else 0.0


def class_ap(proposals: list[list[float]], gt: list[tuple[int, int, int]], iou: float) -> float:
    """AP for one class: proposals (video, start, end, score) matched greedily by score to unused
    same-video ground truth with IoU >= iou; AP = sum(precision at each TP) / #GT."""
    if not gt:
        raise ValueError("class without ground truth has no AP")
    if not proposals:
        return 0.0
    props = sorted(proposals, key=lambda p: -p[3])
    remaining = list(gt)
    tp = np.zeros(len(props))
    for i, (v, s, e, _) in enumerate(props):
        best, best_j = -1.0, -1
        for j, (gv, gs, ge) in enumerate(remaining):
            if gv != int(v):
                continue
            o = _interval_iou(int(s), int(e), gs, ge)
            if o >= iou and o > best:
                best, best_j = o, j
        if best_j >= 0:
            tp[i] = 1.0
            del remaining[best_j]
    if tp.sum() == 0:
        return 0.0
    precision = np.cumsum(tp) / np.arange(1, len(tp) + 1)
    return float((precision * tp).sum() / len(gt))


@dataclass
class DetectionMAP:
    map_at: dict[float, float]  # IoU -> mAP (percent, as the field reports)
    average: float
    per_class: dict[str, dict[float, float]]  # class -> IoU -> AP (percent)


def detection_map(
    frame_probs: Sequence[np.ndarray],
    gt_segments: Sequence[Sequence[Segment]],
    gt_labels: Sequence[Sequence[str]],
    class_names: Sequence[str],
    ious: Sequence[float] = IOU_THRESHOLDS,
    include_normal: bool = False,
    reference_quirks: bool = False,
) -> DetectionMAP:
    """Fine-grained mAP (percent) over classes with ground truth; frame_probs[i] is (frames, C)."""
    if not (len(frame_probs) == len(gt_segments) == len(gt_labels)):
        raise ExvadError("frame_probs, gt_segments and gt_labels need one entry per video")
    index = {n: i for i, n in enumerate(class_names)}
    # the reference scores every class, Normal included; the fixed version skips Normal by default
    classes = list(range(len(class_names))) if reference_quirks else list(range(0 if include_normal else 1, len(class_names)))
    proposals = {c: [p for v, fp in enumerate(frame_probs) if len(fp) for p in class_proposals(np.asarray(fp), c, v)]
                 for c in classes}
    gts = {c: [(v, int(s), int(e)) for v, (segs, labs) in enumerate(zip(gt_segments, gt_labels))
               for (s, e), lab in zip(segs, labs) if index.get(lab) == c] for c in classes}
    per_class: dict[str, dict[float, float]] = {}
    results: dict[float, float] = {}
    for th in ious:
        if reference_quirks:
            if any(not proposals[c] for c in classes):
                results[th] = 0.0  # the reference's `return 0`
                continue
            aps = [class_ap(proposals[c], gts[c], th) if gts[c] else 0.0 for c in classes]
        else:
            aps = []
            for c in classes:
                if not gts[c]:
                    continue  # AP undefined without ground truth
                ap = class_ap(proposals[c], gts[c], th)
                per_class.setdefault(class_names[c], {})[th] = 100.0 * ap
                aps.append(ap)
        results[th] = 100.0 * float(np.mean(aps)) if aps else float("nan")
    return DetectionMAP(results, float(np.mean(list(results.values()))), per_class)


def vadclip_detection_map(
    frame_probs: Sequence[np.ndarray],
    gt_segments: Sequence[Sequence[Segment]],
    gt_labels: Sequence[Sequence[str]],
    class_names: Sequence[str],
    is_normal: Sequence[bool],
    dataset: str = "ucf",
) -> DetectionMAP:
    """mAP as VadCLIP's published evaluation computes it, for comparison with published tables.
    Its ground truth differs by dataset: UCF-Crime normal videos carry a label that matches no
    class (Normal scores AP 0), XD-Violence normal videos one whole-video Normal segment."""
    if dataset not in ("ucf", "xd"):
        raise ExvadError(f"VadCLIP procedure is 'ucf' or 'xd', not {dataset!r}")
    segs, labs = [list(s) for s in gt_segments], [list(lab) for lab in gt_labels]
    if dataset == "xd":
        for i, (fp, normal) in enumerate(zip(frame_probs, is_normal)):
            if normal:
                segs[i], labs[i] = [(0, len(fp))], [class_names[0]]
    return detection_map(frame_probs, segs, labs, class_names, reference_quirks=True)


def per_class_frame_ap(
    snippet_probs: Sequence[np.ndarray],
    gt_segments: Sequence[Sequence[Segment]],
    gt_labels: Sequence[Sequence[str]],
    class_names: Sequence[str],
) -> dict[str, float]:
    """One-vs-rest frame-level AP per anomaly class with that class's probability as the score."""
    out: dict[str, float] = {}
    for c in range(1, len(class_names)):
        name = class_names[c]
        scores = np.concatenate([repeat_to_frames(np.asarray(p)[:, c]) for p in snippet_probs])
        gt = np.concatenate([
            frame_ground_truth(len(p), [s for s, lab in zip(segs, labs) if lab == name])
            for p, segs, labs in zip(snippet_probs, gt_segments, gt_labels)])
        if gt.any():
            out[name] = float(average_precision_score(gt, scores))
    return out


def video_accuracy(predicted: Sequence[str], truth: Sequence[Sequence[str]]) -> tuple[float, dict[str, float]]:
    """Fine-grained video-level accuracy: a prediction is right when it is one of the video's labels.
    Per class: accuracy over the videos whose labels include that class."""
    if not predicted:
        raise ExvadError("no videos to evaluate")
    right = [p in t for p, t in zip(predicted, truth)]
    per: dict[str, list[bool]] = {}
    for ok, labels in zip(right, truth):
        for lab in set(labels):
            per.setdefault(lab, []).append(ok)
    return float(np.mean(right)), {k: float(np.mean(v)) for k, v in sorted(per.items())}


DEFAULT_FPS = 30.0  # hours of footage when a video's frame rate is unknown (VadCLIP's feature lists)


@dataclass
class Decisions:
    """What the flagging rule decides at one threshold, as an analyst meets it: false alarms per hour
    of normal footage (segments the rule flags in normal videos), how many videos of each kind get at
    least one segment, and the fraction of labelled anomalous segments that a flagged segment overlaps."""

    threshold: float
    false_alarms: int
    normal_hours: float
    false_alarms_per_hour: float
    normal_videos: int
    normal_videos_flagged: int
    anomalous_videos: int
    anomalous_videos_flagged: int
    labelled_segments: int
    labelled_segments_found: int
    segments_found: float  # fraction of labelled segments overlapped by a flagged segment (nan: none labelled)

    def to_dict(self) -> dict[str, float | int]:
        return dict(self.__dict__)


def decisions(snippet_scores: Sequence[np.ndarray], is_anomaly: Sequence[bool], segments: Sequence[Sequence[Segment]],
              fps: Sequence[float | None], localization: LocalizationConfig = LocalizationConfig()) -> Decisions:
    """The flagging rule (`detector.localize`, as the archive job applies it) at `localization.threshold`
    over every video; `segments` are ground truth in snippet frames (16 per snippet), `fps` the source
    frame rates (None: DEFAULT_FPS)."""
    false_alarms, normal_s, flagged = 0, 0.0, {True: 0, False: 0}
    labelled = found = 0
    for scores, anomalous, gt, rate in zip(snippet_scores, is_anomaly, segments, fps):
        runs = localize(np.asarray(scores, np.float32), localization)
        flagged[bool(anomalous)] += bool(runs)
        if not anomalous:
            false_alarms += len(runs)
            normal_s += len(scores) * SNIPPET_FRAMES / float(rate or DEFAULT_FPS)
            continue
        frames = [(a * SNIPPET_FRAMES, (b + 1) * SNIPPET_FRAMES) for a, b in runs]
        for start, end in gt:
            labelled += 1
            found += any(s < end and start < e for s, e in frames)
    hours = normal_s / 3600.0
    n_anom = int(sum(bool(a) for a in is_anomaly))
    return Decisions(float(localization.threshold), false_alarms, round(hours, 4),
                     false_alarms / hours if hours > 0 else float("nan"), len(is_anomaly) - n_anom, flagged[False],
                     n_anom, flagged[True], labelled, found, found / labelled if labelled else float("nan"))
