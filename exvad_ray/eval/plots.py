"""PNG plots of an evaluation: ROC and PR curves (frame level) and per-video score timelines with
the ground-truth anomaly shaded."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

import numpy as np

from exvad_ray.eval.evaluate import EvalReport, VideoResult
from exvad_ray.eval.metrics import SNIPPET_FRAMES, frame_ground_truth, repeat_to_frames


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def roc_pr_curves(results: Sequence[VideoResult], path_roc: str, path_pr: str) -> None:
    from sklearn.metrics import precision_recall_curve, roc_curve

    plt = _plt()
    scores = np.concatenate([repeat_to_frames(r.anomaly_scores) for r in results])
    gt = np.concatenate([frame_ground_truth(len(r.anomaly_scores), [(s, e) for s, e, _ in r.segments]) for r in results])
    fpr, tpr, _ = roc_curve(gt, scores)
    prec, rec, _ = precision_recall_curve(gt, scores)
    for path, (x, y, xl, yl, title) in ((path_roc, (fpr, tpr, "false positive rate", "true positive rate", "ROC (frames)")),
                                        (path_pr, (rec, prec, "recall", "precision", "Precision-recall (frames)"))):
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        ax.plot(x, y, lw=1.5)
        if path == path_roc:
            ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)
        ax.set(xlabel=xl, ylabel=yl, title=title, xlim=(0, 1), ylim=(0, 1.02))
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)


def timeline(result: VideoResult, class_names: Sequence[str], path: str) -> None:
    """Anomaly score per snippet, predicted class probability, ground truth shaded."""
    plt = _plt()
    t = np.arange(len(result.anomaly_scores))
    fig, ax = plt.subplots(figsize=(8, 2.6))
    for s, e, lab in result.segments:
        ax.axvspan(s / SNIPPET_FRAMES, e / SNIPPET_FRAMES, color="tab:red", alpha=0.18, lw=0)
    ax.plot(t, result.anomaly_scores, c="tab:blue", lw=1.3, label="anomaly score")
    cls = result.prediction.video_class
    if cls in class_names and class_names.index(cls) > 0:
        ax.plot(t, result.class_probs[:, class_names.index(cls)], c="tab:orange", lw=1, ls="--", label=f"p({cls})")
    ax.set(ylim=(0, 1.02), xlabel="snippet (16 frames)", ylabel="score",
           title=f"{result.name}: true {'/'.join(result.labels)}, predicted {cls} ({result.prediction.video_score:.2f})")
    ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_plots(report: EvalReport, class_names: Sequence[str], out_dir: str, max_timelines: int = 24) -> list[str]:
    """Write roc.png, pr.png and timelines/<video>.png (anomalous videos first) under a local folder."""
    os.makedirs(os.path.join(out_dir, "timelines"), exist_ok=True)
    written = []
    if report.frame_level:
        roc, pr = os.path.join(out_dir, "roc.png"), os.path.join(out_dir, "pr.png")
        roc_pr_curves(report.videos, roc, pr)
        written += [roc, pr]
    ordered = sorted(report.videos, key=lambda r: (not r.is_anomaly, r.name))[:max_timelines]
    for r in ordered:
        p = os.path.join(out_dir, "timelines", re.sub(r"[^A-Za-z0-9._-]+", "_", r.name) + ".png")
        timeline(r, list(class_names), p)
        written.append(p)
    return written
