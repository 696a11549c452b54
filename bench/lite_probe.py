"""Where does `lite` lose the anomaly signal? (issue 10; figures in bench/RESULTS.md, "Lite profile:
detection quality"). Works on EfficientNet-Lite0 feature maps extracted ONCE per snippet from an
`exvad synth` archive and cached, so that feature and detector variants compare on the same pixels:

    python bench/lite_probe.py extract ARCHIVE CACHE.pkl      # middle frame of each snippet + the frame 8 later
    python bench/lite_probe.py extract ARCHIVE4 CACHE4.pkl videos_per_class=40 normal_videos=80 seed=1 one-frame
    python bench/lite_probe.py probe CACHE.pkl avg,max,...    # logistic probe, frame labels, per class
    python bench/lite_probe.py mil CACHE.pkl avg,max          # weakly supervised linear scorer (video labels)
    python bench/lite_probe.py classes CACHE.pkl avg,dmax2    # class ceiling: supervised, ground-truth events
    python bench/lite_probe.py milclasses CACHE.pkl dmax2     # linear class scorer from video labels (MIL-Align)
    python bench/lite_probe.py neighbours CACHE.pkl avg,dmax2,avg+dmax2   # similar-segment search by class
    python bench/lite_probe.py detector CACHE.pkl 0,1,2 'avg|{"layers": 0}|{"epochs": 30, "batch_size": 16}'
    python bench/lite_probe.py curve CACHE4.pkl 6,12,24 0,1,2 'dmax2|{"layers": 0}|{"epochs": 30, "batch_size": 16}'

Frames are cut as `exvad process` cuts them (16-frame snippets, middle frame, short side to 224, centre
crop, (x-127)/128). Feature kinds: avg / max (global pools, L2), grid (2x2 avg pools), dprev (difference
to the previous snippet), dmap (|map(mid+8) - map(mid)| avg-pooled: a second frame per snippet), vc (avg
minus the video's mean), and from the maps of neighbouring snippets (no second frame): dadj
(|map(t) - map(t-1)| avg-pooled), dadj2 (|map(t) - map(t-1)| + |map(t+1) - map(t)| avg-pooled) and dmax2
(the same, max-pooled: what the lite profile's motion half is, models/lite.py); joined with '+'.
"""

from __future__ import annotations

import json
import os
import pickle
import statistics
import sys
import time
from typing import Any

import numpy as np

CLASSES = ["Normal", "Fire", "Fighting", "CrowdRush", "FallingObject"]


def l2(x: np.ndarray) -> np.ndarray:
    return x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-8)


def extract(root: str, out: str, synth: dict[str, int] | None = None, second_frame: bool = True) -> None:
    """Feature maps (T, 1280, 7, 7) float16 of each snippet's middle frame (m0) and the frame 8 later (m1;
    None without `second_frame`), with per-snippet frame labels, for every video of the archive planned from
    SynthConfig(**synth) (the default archive without `synth`)."""
    import decord
    import torch

    from exvad_ray.models._util import resize_center_crop
    from exvad_ray.models.lite import load_efficientnet
    from exvad_ray.synth import SynthConfig, plan_archive
    from exvad_ray.video.sampling import snippet_layout

    torch.set_num_threads(2)
    model, _ = load_efficientnet("efficientnet-lite0")
    res: dict[str, dict[str, Any]] = {}
    t0 = time.time()
    for spec in plan_archive(SynthConfig(**(synth or {}))):
        vr = decord.VideoReader(os.path.join(root, spec.relpath), width=298, height=224)
        lay = snippet_layout(len(vr))
        mids = (lay[:, 0] + lay[:, 1] - 1) // 2
        idx = np.concatenate([mids, np.minimum(mids + 8, len(vr) - 1)]) if second_frame else mids
        frames = vr.get_batch(list(idx)).asnumpy()
        x = (resize_center_crop(frames, 224) - 127.0) / 128.0
        with torch.inference_mode():
            maps = np.concatenate([model.forward_features(x[i:i + 32]).numpy().astype(np.float16)
                                   for i in range(0, len(x), 32)])
        lab = np.zeros(len(mids), np.int8)
        for g in spec.segments:
            lab |= ((mids >= g.start_frame) & (mids < g.end_frame)).astype(np.int8)
        res[spec.name] = {"m0": maps[:len(mids)], "m1": maps[len(mids):] if second_frame else None, "lab": lab,
                          "label": spec.label, "split": spec.split}
        print(spec.name, spec.split, len(mids), f"{time.time() - t0:.0f}s", flush=True)
    with open(out, "wb") as f:
        pickle.dump(res, f)


def feature(d: dict[str, Any], kind: str) -> np.ndarray:
    m0 = d["m0"].astype(np.float32)
    m1 = None if d["m1"] is None else d["m1"].astype(np.float32)
    avg, mx = l2(m0.mean((2, 3))), l2(m0.max((2, 3)))
    parts = []
    for k in kind.split("+"):
        if k == "avg":
            parts.append(avg)
        elif k == "max":
            parts.append(mx)
        elif k == "grid":
            cells = [m0[:, :, a:b, c:e].mean((2, 3)) for a, b in ((0, 4), (3, 7)) for c, e in ((0, 4), (3, 7))]
            parts.append(l2(np.concatenate(cells, 1)))
        elif k == "dprev":
            parts.append(np.concatenate([np.zeros_like(avg[:1]), avg[1:] - avg[:-1]]))
        elif k == "dmap":
            parts.append(l2(np.abs(m1 - m0).mean((2, 3))))
        elif k == "vc":
            parts.append(avg - avg.mean(0, keepdims=True))
        elif k in ("dadj", "dadj2", "dmax2"):
            zero = np.zeros_like(m0[:1])
            back = np.abs(np.concatenate([zero, m0[1:] - m0[:-1]]))  # |map(t) - map(t-1)|, 0 for the first
            fwd = np.concatenate([back[1:], zero])  # |map(t+1) - map(t)|, 0 for the last
            diff = back if k == "dadj" else back + fwd
            parts.append(l2(diff.max((2, 3)) if k == "dmax2" else diff.mean((2, 3))))
        else:
            raise SystemExit(f"unknown feature kind {k!r}")
    return np.concatenate(parts, 1).astype(np.float32)


def probe(data: dict[str, Any], kind: str) -> dict[str, float]:
    """Logistic regression per snippet on frame labels (train+val), test AUC overall and per class."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    fit = [d for d in data.values() if d["split"] != "test"]
    test = [d for d in data.values() if d["split"] == "test"]
    clf = LogisticRegression(C=1.0, max_iter=2000).fit(np.concatenate([feature(d, kind) for d in fit]),
                                                       np.concatenate([d["lab"] for d in fit]))
    p = clf.decision_function(np.concatenate([feature(d, kind) for d in test]))
    y = np.concatenate([d["lab"] for d in test])
    cls = np.concatenate([[d["label"]] * len(d["lab"]) for d in test])
    out = {"all": float(roc_auc_score(y, p))}
    for c in CLASSES[1:]:
        sel = (y == 0) | (cls == c)
        out[c] = float(roc_auc_score(y[sel], p[sel]))
    return out


def classes(data: dict[str, Any], kind: str) -> dict[str, float]:
    """How well the anomaly classes separate in these features when the events are given: logistic
    classifiers on the ground-truth event snippets of train+val anomalous videos, scored on the test ones.
    Per snippet (accuracy), per video by the mean of its snippets' probabilities, and per video from the
    event's mean and max feature (a video-level classifier); the last two count right videos."""
    from sklearn.linear_model import LogisticRegression

    def events(splits: tuple[str, ...]) -> list[tuple[np.ndarray, str]]:
        return [(feature(d, kind)[d["lab"] == 1], d["label"]) for d in data.values()
                if d["split"] in splits and d["label"] != "Normal"]

    fit, test = events(("train", "val")), events(("test",))
    snip = LogisticRegression(C=1.0, max_iter=5000).fit(np.concatenate([f for f, _ in fit]),
                                                         np.concatenate([[c] * len(f) for f, c in fit]))
    right = [snip.predict(f) == c for f, c in test]
    votes = [snip.classes_[snip.predict_proba(f).mean(0).argmax()] == c for f, c in test]
    pooled = lambda f: np.concatenate([f.mean(0), f.max(0)])  # noqa: E731
    vid = LogisticRegression(C=1.0, max_iter=5000).fit(np.stack([pooled(f) for f, _ in fit]), [c for _, c in fit])
    return {"snippet_accuracy": float(np.concatenate(right).mean()), "videos": len(test),
            "right_by_snippet_vote": int(sum(votes)),
            "right_by_video_classifier": int(sum(vid.predict(pooled(f)[None])[0] == c for f, c in test))}


def mil(data: dict[str, Any], kind: str, seed: int, steps: int = 200) -> tuple[float, float]:
    """A linear snippet scorer trained like the detector (video labels, top-k mean, BCE), selected on val
    every 10 steps; returns (val, test) snippet AUC."""
    import torch
    from sklearn.metrics import roc_auc_score

    torch.manual_seed(seed)
    vids = {s: [(torch.tensor(feature(d, kind)), d["lab"], d["label"] != "Normal") for d in data.values()
                if d["split"] == s] for s in ("train", "val", "test")}
    net = torch.nn.Linear(vids["train"][0][0].shape[1], 1)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.01)

    def auc(split: str) -> float:
        with torch.no_grad():
            s = np.concatenate([net(f).squeeze(-1).numpy() for f, _, _ in vids[split]])
        return float(roc_auc_score(np.concatenate([lab for _, lab, _ in vids[split]]), s))

    best = (-1.0, float("nan"))
    for step in range(steps):
        loss = sum(torch.nn.functional.binary_cross_entropy_with_logits(
            torch.topk(net(f).squeeze(-1), len(f) // 16 + 1).values.mean(), torch.tensor(float(y)))
            for f, _, y in vids["train"]) / len(vids["train"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 10 == 9 and (v := auc("val")) > best[0]:
            best = (v, auc("test"))
    return best


def mil_classes(data: dict[str, Any], kind: str, seed: int, steps: int = 300) -> tuple[int, int, int]:
    """A linear class scorer trained like the detector's alignment (video labels only: per class the top-k
    mean of snippet logits, softmax cross-entropy), selected on val every 10 steps; returns the anomalous
    val and test videos whose class it gets right, and how many test videos that is out of."""
    import torch

    torch.manual_seed(seed)
    vids = {s: [(torch.tensor(feature(d, kind)), CLASSES.index(d["label"])) for d in data.values() if d["split"] == s]
            for s in ("train", "val", "test")}
    net = torch.nn.Linear(vids["train"][0][0].shape[1], len(CLASSES))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.01)

    def video_logits(f: torch.Tensor) -> torch.Tensor:
        return torch.topk(net(f), len(f) // 16 + 1, dim=0).values.mean(0)

    def right(split: str) -> int:
        with torch.no_grad():
            return sum(int(video_logits(f)[1:].argmax()) + 1 == y for f, y in vids[split] if y)

    best = (-1, 0)
    for step in range(steps):
        loss = sum(torch.nn.functional.cross_entropy(video_logits(f)[None], torch.tensor([y]))
                   for f, y in vids["train"]) / len(vids["train"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 10 == 9 and (v := right("val")) > best[0]:
            best = (v, right("test"))
    return best[0], best[1], sum(1 for _, y in vids["test"] if y)


def detector(data: dict[str, Any], kind: str, det: dict[str, Any], train: dict[str, Any], seed: int) -> dict[str, float]:
    """The project's detector in the plain loop (fit_local: the Ray job's batches, losses, val selection)."""
    import torch

    from exvad_ray.detector import DetectorConfig
    from exvad_ray.eval.evaluate import evaluate_records
    from exvad_ray.records import VideoRecord
    from exvad_ray.train.api import class_embeddings_for
    from exvad_ray.train.loop import fit_local, train_config

    def segments(lab: np.ndarray, label: str) -> list[tuple[int, int, str]]:
        edges = np.flatnonzero(np.diff(np.concatenate([[0], lab, [0]])))
        return [(int(s) * 16, int(e) * 16, label) for s, e in zip(edges[::2], edges[1::2])]

    emb, names = class_embeddings_for("synthetic", "lite")
    recs = [VideoRecord(n, feature(d, kind), None, [d["label"]],
                        segments(d["lab"], d["label"]) if d["label"] != "Normal" else [], d["split"])
            for n, d in data.items()]
    cfg = DetectorConfig(**({"embed_dim": emb.shape[1], "visual_dim": recs[0].features.shape[1],
                             "num_classes": len(names)} | det))
    torch.manual_seed(seed)
    model, _ = fit_local([r for r in recs if r.split == "train"], [r for r in recs if r.split == "val"], names, emb,
                         cfg, train_config(None, **(train | {"seed": seed})))
    rep = evaluate_records(model, [r for r in recs if r.split == "test"], names).summary()
    return {k: float(rep[k]) for k in ("auc", "ap", "map_avg", "accuracy")}


def neighbours(data: dict[str, Any], kinds: list[str], window: int = 8) -> dict[str, dict[str, float]]:
    """"Find segments like this one", as search ranks them (cosine of unit mean vectors): each anomalous
    video's event (its ground-truth snippets) is a query against every other video's events and the
    normal footage cut into `window`-snippet pieces; precision at 5 of the query's class, per class."""
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
    vids, cls, vecs = [], [], {k: [] for k in kinds}
    for name, d in data.items():
        feats = {k: feature(d, k) for k in kinds}
        quiet = np.flatnonzero(d["lab"] == 0)
        pieces = [quiet[s:s + window] for s in range(0, len(quiet) - window + 1, window)]
        for rows, label in [(d["lab"] == 1, d["label"])] * (d["label"] != "Normal") + [(p, "Normal") for p in pieces]:
            vids.append(name)
            cls.append(label)
            for k in kinds:
                vecs[k].append(unit(feats[k][rows].mean(0)))
    vid, lab = np.array(vids), np.array(cls)
    out = {}
    for k in kinds:
        v = np.stack(vecs[k])
        hits: dict[str, list[float]] = {}
        for i in np.flatnonzero(lab != "Normal"):
            sim = v @ v[i]
            sim[vid == vid[i]] = -np.inf
            hits.setdefault(str(lab[i]), []).append(float((lab[np.argsort(-sim)[:5]] == lab[i]).mean()))
        out[k] = {c: round(float(np.mean(h)), 2) for c, h in sorted(hits.items())} | {
            "all": round(float(np.mean(sum(hits.values(), []))), 3), "chance": round(float(np.mean(
                [(lab == c).sum() - 1 for c in lab[lab != "Normal"]]) / (len(lab) - 1)), 3)}
    return out


def fewer_training_videos(data: dict[str, Any], per_class: int) -> dict[str, Any]:
    """The first `per_class` training videos of each anomaly class and 2 x that many normal ones (by name);
    val and test unchanged: a learning curve on fixed evaluation splits."""
    from collections import Counter

    kept: Counter[str] = Counter()
    keep: dict[str, Any] = {}
    for name in sorted(data):
        d = data[name]
        if d["split"] == "train":
            if kept[d["label"]] >= (2 * per_class if d["label"] == "Normal" else per_class):
                continue
            kept[d["label"]] += 1
        keep[name] = d
    return keep


def main() -> None:
    if len(sys.argv) < 4 or sys.argv[1] not in ("extract", "probe", "mil", "classes", "milclasses", "neighbours", "detector",
                                                      "curve"):
        raise SystemExit(__doc__)
    cmd = sys.argv[1]
    if cmd == "extract":  # extract ARCHIVE CACHE [videos_per_class=N normal_videos=M seed=S] [one-frame]
        opts = sys.argv[4:]
        synth = {k: int(v) for k, v in (o.split("=") for o in opts if "=" in o)}
        return extract(sys.argv[2], sys.argv[3], synth or None, second_frame="one-frame" not in opts)
    import torch

    torch.set_num_threads(1)
    with open(sys.argv[2], "rb") as f:
        data = pickle.load(f)
    if cmd == "probe":
        for kind in sys.argv[3].split(","):
            print(kind, {k: round(v, 3) for k, v in probe(data, kind).items()}, flush=True)
    elif cmd == "classes":
        for kind in sys.argv[3].split(","):
            print(kind, {k: round(v, 3) for k, v in classes(data, kind).items()}, flush=True)
    elif cmd == "neighbours":
        for kind, res in neighbours(data, sys.argv[3].split(",")).items():
            print(kind, "P@5 of the query's class:", res, flush=True)
    elif cmd == "milclasses":
        for kind in sys.argv[3].split(","):
            print(kind, "anomalous videos right (val, test, of test) per seed:",
                  [mil_classes(data, kind, s) for s in (0, 1, 2)], flush=True)
    elif cmd == "mil":
        for kind in sys.argv[3].split(","):
            print(kind, "(val, test) per seed:", [tuple(round(x, 3) for x in mil(data, kind, s)) for s in (0, 1, 2)],
                  flush=True)
    elif cmd == "curve":  # curve CACHE 6,12,24 0,1,2 SPEC: the detector per training-set size, and the class ceilings
        seeds = [int(s) for s in sys.argv[4].split(",")]
        kind, det, train = sys.argv[5].split("|")
        for n in (int(x) for x in sys.argv[3].split(",")):
            sub = fewer_training_videos(data, n)
            runs = [detector(sub, kind, json.loads(det or "{}"), json.loads(train or "{}"), s) for s in seeds]
            med = {k: round(statistics.median(r[k] for r in runs), 3) for k in runs[0]}
            print(f"{n} per class:", "detector median", med, "runs", [{k: round(v, 3) for k, v in r.items()} for r in runs],
                  "| linear MIL classes (val, test, of test)", [mil_classes(sub, kind, s) for s in seeds],
                  "| supervised class ceiling", classes(sub, kind), flush=True)
    else:
        seeds = [int(s) for s in sys.argv[3].split(",")]
        for spec in sys.argv[4:]:
            kind, det, train = spec.split("|")
            runs = [detector(data, kind, json.loads(det or "{}"), json.loads(train or "{}"), s) for s in seeds]
            med = {k: round(statistics.median(r[k] for r in runs), 3) for k in runs[0]}
            print(spec, "median", med, "runs", [{k: round(v, 3) for k, v in r.items()} for r in runs], flush=True)


if __name__ == "__main__":
    main()
