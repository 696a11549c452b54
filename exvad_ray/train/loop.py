"""The training loop, shared by the Ray Train worker function and a plain single-process loop
(tests, benchmarks). Batches are balanced normal/anomalous halves, as in VadCLIP."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from exvad_ray.detector import DetectorConfig, ExVADDetector, ExVADNet, LossWeights, exvad_loss
from exvad_ray.errors import ExvadError
from exvad_ray.train.data import VideoRecord, training_row

log = logging.getLogger(__name__)

Batch = dict[str, torch.Tensor]


@dataclass
class TrainConfig:
    """Optimisation and selection settings (the detector's architecture is DetectorConfig)."""

    epochs: int = 10
    batch_size: int = 64  # per step, over all workers; half normal, half anomalous
    lr: float = 1e-4  # VadCLIP uses 2e-5 (UCF) / 1e-5 (XD) on the full datasets: --preset ucf|xd
    # MultiStepLR as VadCLIP: lr x gamma at each milestone epoch (UCF [4, 8], XD [3, 6, 10]: the presets);
    # () = constant, the default: [4, 8] measured worse on small label sets (docs/DETECTOR.md, deviation 4)
    lr_milestones: tuple[int, ...] = ()
    lr_gamma: float = 0.1
    weight_decay: float = 0.01
    loss: LossWeights = field(default_factory=LossWeights)
    select_metric: str = "auc_acc"  # auc | acc | auc_acc (mean of the two); always on the val split
    seed: int = 0
    preset: str | None = None  # the dataset preset these values started from (recorded in the model card)

    def __post_init__(self) -> None:
        if isinstance(self.loss, dict):
            self.loss = LossWeights(**self.loss)
        self.lr_milestones = tuple(sorted(int(m) for m in self.lr_milestones))
        if any(m < 1 for m in self.lr_milestones) or not 0 < self.lr_gamma <= 1:
            raise ExvadError("lr milestones must be epochs >= 1 and 0 < lr_gamma <= 1")
        if self.select_metric not in ("auc", "acc", "auc_acc"):
            raise ExvadError(f"select_metric must be auc, acc or auc_acc, not {self.select_metric!r}")
        if self.epochs < 1 or self.batch_size < 2 or self.lr <= 0:
            raise ExvadError("epochs >= 1, batch_size >= 2 and lr > 0 are required")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lr_at(self, epoch: int) -> float:
        """Learning rate of 0-based `epoch`: what MultiStepLR gives after `epoch` scheduler steps.
        Stateless, so a run resumed from a checkpoint continues on the same schedule."""
        return self.lr * self.lr_gamma ** sum(m <= epoch for m in self.lr_milestones)

    def set_lr(self, optimizer: torch.optim.Optimizer, epoch: int) -> float:
        lr = self.lr_at(epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr


def train_config(preset: str | None = None, **overrides: Any) -> TrainConfig:
    """TrainConfig from a dataset preset (`ucf`, `xd`: VadCLIP's values, exvad_ray.detector.presets)
    with explicit overrides on top; loss weights may be given as `loss={...}` (merged) or LossWeights."""
    from exvad_ray.detector.presets import get_preset

    values: dict[str, Any] = {}
    if preset:
        values = dict(get_preset(preset).train) | {"preset": preset}
    loss = overrides.pop("loss", None)
    values |= overrides
    if isinstance(loss, LossWeights):
        values["loss"] = loss
    elif loss:
        values["loss"] = dict(values.get("loss") or {}) | dict(loss)
    return TrainConfig(**values)

def rows_to_batch(rows: Sequence[dict[str, Any]]) -> Batch:
    return {k: torch.as_tensor(np.stack([np.asarray(r[k]) for r in rows])) for k in
            ("features", "length", "text", "has_text", "label")}


def memory_batches(rows: Sequence[dict[str, Any]], batch_size: int, rng: np.random.Generator) -> Iterator[Batch]:
    """One shuffled pass over in-memory rows."""
    order = rng.permutation(len(rows))
    for i in range(0, len(order), batch_size):
        yield rows_to_batch([rows[j] for j in order[i:i + batch_size]])


def balanced_epoch(normal: Callable[[], Iterable[Batch]], anomaly: Callable[[], Iterable[Batch]]) -> Iterator[Batch]:
    """Pair a normal half-batch with an anomalous one until the larger side is used up, cycling the
    smaller side (so every video is seen each epoch). Either side may be empty."""
    sides = [normal, anomaly]
    its = [iter(normal()), iter(anomaly())]
    cur = [next(it, None) for it in its]
    if cur[0] is None or cur[1] is None:
        other = 1 if cur[0] is None else 0
        if cur[other] is not None:
            yield cur[other]
            yield from its[other]
        return
    done = [False, False]
    while True:
        yield {k: torch.cat([cur[0][k], cur[1][k]]) for k in cur[0]}
        nxt = [next(it, None) for it in its]
        for i in (0, 1):
            done[i] = done[i] or nxt[i] is None
        if all(done):
            return
        for i in (0, 1):
            if nxt[i] is None:
                its[i] = iter(sides[i]())
                nxt[i] = next(its[i])
        cur = nxt


def train_epoch(net: torch.nn.Module, optimizer: torch.optim.Optimizer, batches: Iterable[Batch],
                weights: LossWeights, device: torch.device | str) -> dict[str, float]:
    """One pass; returns the mean of each loss part."""
    net.train()
    sums: dict[str, float] = {}
    steps = 0
    for batch in batches:
        b = {k: v.to(device) for k, v in batch.items()}
        out = net(b["features"], b["length"].long(), b["text"], b["has_text"].bool())
        loss, parts = exvad_loss(out, b["length"].long(), b["label"].float(), weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + v
        steps += 1
    return {k: v / max(steps, 1) for k, v in sums.items()} | {"steps": float(steps)}


def selection_score(metrics: dict[str, float], select_metric: str) -> float:
    auc, acc = metrics.get("auc", float("nan")), metrics.get("accuracy", float("nan"))
    if select_metric == "auc":
        return auc
    if select_metric == "acc":
        return acc
    vals = [v for v in (auc, acc) if v == v]
    return float(np.mean(vals)) if vals else float("nan")


def new_net(det_cfg: DetectorConfig, class_embeddings: np.ndarray) -> ExVADNet:
    return ExVADNet(det_cfg, torch.as_tensor(np.asarray(class_embeddings, np.float32)))


def warm_start(net: ExVADNet, state_dict: dict[str, torch.Tensor]) -> list[str]:
    """Copy every weight whose name and shape match (the class embeddings always stay those of the
    current label set; the learned class context only when the class count matches). Returns the
    names that were copied."""
    own = net.state_dict()
    take = {k: v for k, v in state_dict.items()
            if k in own and k != "class_embeddings" and tuple(v.shape) == tuple(own[k].shape)}
    net.load_state_dict(take, strict=False)
    return sorted(take)


def fit_local(
    train: Sequence[VideoRecord],
    val: Sequence[VideoRecord],
    class_names: list[str],
    class_embeddings: np.ndarray,
    det_cfg: DetectorConfig,
    cfg: TrainConfig,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> tuple[ExVADDetector, list[dict[str, float]]]:
    """Plain single-process training with the same loop, batches and selection as the Ray job.
    Returns the selected detector (best on `val`, or the last epoch without val) and the history."""
    from exvad_ray.eval.evaluate import evaluate_records

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    rows = [training_row(r, class_names, det_cfg.visual_length, det_cfg.embed_dim) for r in train]
    normal = [r for r in rows if not r["is_anomaly"]]
    anomaly = [r for r in rows if r["is_anomaly"]]
    half = max(1, cfg.batch_size // 2)
    net = new_net(det_cfg, class_embeddings)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    history: list[dict[str, float]] = []
    best_score, best_state = -float("inf"), None
    for epoch in range(cfg.epochs):
        lr = cfg.set_lr(opt, epoch)
        parts = train_epoch(net, opt, balanced_epoch(lambda: memory_batches(normal, half, rng),
                                                     lambda: memory_batches(anomaly, half, rng)),
                            cfg.loss, "cpu")
        entry = {"epoch": float(epoch), "lr": lr} | parts
        if val:
            det = ExVADDetector(net.eval(), class_names)
            metrics = evaluate_records(det, val, class_names).summary()
            entry |= {f"val_{k}": v for k, v in metrics.items()}
            score = selection_score(metrics, cfg.select_metric)
            entry["val_score"] = score
            if score > best_score:
                best_score, best_state = score, copy.deepcopy(net.state_dict())
        history.append(entry)
        if on_epoch:
            on_epoch(epoch, entry)
    if best_state is not None:
        net.load_state_dict(best_state)
    return ExVADDetector(net.eval(), class_names), history
