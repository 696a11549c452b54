"""Ray Train (V2) training of the Ex-VAD detector: TorchTrainer over N workers, datasets from
Ray Data, checkpoints to any storage URI, resume after worker failures, warm start, model
selection on the validation split, and the exported model plus model card beside it."""

from __future__ import annotations

import os

os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")

import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from exvad_ray import storage
from exvad_ray.checkpoints import load_detector
from exvad_ray.detector import DetectorConfig, ExVADDetector
from exvad_ray.errors import ExvadError
from exvad_ray.train.data import VideoRecord, conform, feature_dim, training_row
from exvad_ray.train.loop import TrainConfig, balanced_epoch, new_net, selection_score, train_epoch, warm_start

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"
TRAIN_COLUMNS = ["features", "length", "text", "has_text", "label"]


@dataclass
class RayTrainSettings:
    """How the job runs on the cluster."""

    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 0.5
    storage_path: str = "/tmp/exvad-train"  # local path or s3:// URI for Ray Train's run folder
    name: str = "exvad-detector"
    max_failures: int = 2
    keep_checkpoints: int = 2


@dataclass
class TrainOutcome:
    detector: ExVADDetector
    best_metrics: dict[str, float]
    best_epoch: int
    history: list[dict[str, float]]
    checkpoint_path: str  # Ray Train's latest checkpoint (resume point)
    wall_s: float
    epoch_s: list[float] = field(default_factory=list)


# ------------------------------------------------------------------------------ worker side

def _report(metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
    import ray.train

    if state is None:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(_plain(state), os.path.join(tmp, STATE_FILE))
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def _plain(value: Any) -> Any:
    """numpy scalars -> Python numbers, so that checkpoints load with weights_only=True (a
    checkpoint is data, never code)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value.item() if hasattr(value, "item") and not torch.is_tensor(value) else value


def _load_state(checkpoint: Any) -> dict[str, Any]:
    with checkpoint.as_directory() as d:
        return torch.load(os.path.join(d, STATE_FILE), map_location="cpu", weights_only=True)


def shuffle_seed(seed: int, epoch: int, rank: int) -> int:
    return (seed * 1_000_003 + epoch * 1_009 + rank) % 2**31


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train worker: balanced batches from the dataset shards, validation on rank 0, one
    checkpoint per epoch holding the latest and the best-so-far weights."""
    import ray
    import ray.train
    import ray.train.torch

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    cfg = TrainConfig(**config["train"])
    det_cfg = DetectorConfig.from_dict(config["detector"])
    class_names: list[str] = config["class_names"]
    torch.manual_seed(cfg.seed + rank)
    if config.get("torch_threads"):
        torch.set_num_threads(int(config["torch_threads"]))
    device = ray.train.torch.get_device()

    net = new_net(det_cfg, np.asarray(config["class_embeddings"], np.float32))
    start_epoch, history = 0, []
    best: dict[str, Any] = {"score": -float("inf"), "state_dict": None, "metrics": {}, "epoch": -1}
    opt_state = None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:  # resume after a failure (or an explicit resume)
        st = _load_state(checkpoint)
        net.load_state_dict(st["model"])
        opt_state, start_epoch, history, best = st["optimizer"], st["epoch"] + 1, st["history"], st["best"]
    elif config.get("init_state_ref") is not None:
        copied = warm_start(net, ray.get(config["init_state_ref"]))
        log.info("warm start: %d tensors copied", len(copied))
    model = ray.train.torch.prepare_model(net)
    raw = model.module if hasattr(model, "module") else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if opt_state is not None:
        optimizer.load_state_dict(opt_state)

    half = max(1, cfg.batch_size // (2 * world))
    shards = {k: ray.train.get_dataset_shard(k) for k in config["sides"]}

    def side(name: str, epoch: int):
        # The shuffle seed depends only on (seed, epoch, rank), so an epoch sees the same batches
        # whether it runs first time or again after a restart: a resumed run equals an unbroken one.
        def make():
            if name not in shards:
                return iter(())
            return shards[name].iter_torch_batches(batch_size=half, local_shuffle_buffer_size=4 * half,
                                                   local_shuffle_seed=shuffle_seed(cfg.seed, epoch, rank))
        return make

    val: list[VideoRecord] = ray.get(config["val_ref"]) if config.get("val_ref") is not None else []
    on_epoch_start = config.get("on_epoch_start")
    for epoch in range(start_epoch, cfg.epochs):
        if on_epoch_start is not None:
            on_epoch_start(epoch, rank)
        t0 = time.perf_counter()
        lr = cfg.set_lr(optimizer, epoch)
        parts = train_epoch(model, optimizer, balanced_epoch(side("train_normal", epoch), side("train_anomaly", epoch)),
                            cfg.loss, device)
        entry: dict[str, float] = {"epoch": float(epoch), "epoch_s": time.perf_counter() - t0, "lr": lr} | parts
        state = None
        if rank == 0:
            if val:
                from exvad_ray.eval.evaluate import evaluate_records

                raw.eval()
                metrics = evaluate_records(ExVADDetector(raw, class_names, device=str(device)), val, class_names).summary()
                raw.train()
                entry |= {f"val_{k}": v for k, v in metrics.items()}
                score = selection_score(metrics, cfg.select_metric)
                entry["val_score"] = score
                if score > best["score"]:
                    best = {"score": score, "metrics": dict(metrics), "epoch": epoch,
                            "state_dict": {k: v.detach().cpu().clone() for k, v in raw.state_dict().items()}}
            history.append(entry)
            state = {"model": {k: v.detach().cpu() for k, v in raw.state_dict().items()},
                     "optimizer": optimizer.state_dict(), "epoch": epoch, "history": history, "best": best}
        _report({k: v for k, v in entry.items() if v == v}, state)


# ------------------------------------------------------------------------------ driver side

def _datasets(train: Sequence[VideoRecord], class_names: list[str], det_cfg: DetectorConfig) -> dict[str, Any]:
    import ray.data

    rows = [training_row(r, class_names, det_cfg.visual_length, det_cfg.embed_dim) for r in train]
    out = {}
    for key, want in (("train_normal", False), ("train_anomaly", True)):
        sel = [{k: r[k] for k in TRAIN_COLUMNS} for r in rows if r["is_anomaly"] == want]
        if sel:
            out[key] = ray.data.from_items(sel)
    if not any(r["is_anomaly"] for r in rows) or all(r["is_anomaly"] for r in rows):
        log.warning("training split has only %s videos; weak supervision needs both",
                    "anomalous" if rows and rows[0]["is_anomaly"] else "normal")
    return out


def _storage(settings: RayTrainSettings) -> tuple[str, Any]:
    if storage.is_remote(settings.storage_path):
        fs, path = storage.arrow_filesystem(settings.storage_path)
        return path, fs
    path = os.path.abspath(storage.normalize(settings.storage_path).removeprefix("file://"))
    os.makedirs(path, exist_ok=True)
    return path, None


def run_ray_training(
    train: Sequence[VideoRecord],
    val: Sequence[VideoRecord],
    class_names: list[str],
    class_embeddings: np.ndarray,
    det_cfg: DetectorConfig,
    cfg: TrainConfig,
    settings: RayTrainSettings,
    init_from: str | None = None,
    on_epoch_start: Callable[[int, int], None] | None = None,
    torch_threads: int | None = None,
) -> TrainOutcome:
    """Run the TorchTrainer and return the selected detector (best validation score; last epoch
    when there is no validation split). Rerunning with the same storage_path/name resumes.
    `on_epoch_start(epoch, rank)` runs in every worker before each epoch (tests inject faults there)."""
    import ray
    import ray.train
    from ray.train.torch import TorchTrainer

    if not train:
        raise ExvadError("no training videos (split 'train' is empty)")
    train, val = conform(train, class_names), conform(val, class_names)
    dim = feature_dim(list(train) + list(val))
    if dim != det_cfg.input_dim or len(class_names) != det_cfg.num_classes:
        raise ExvadError(f"features have D={dim} and the label set C={len(class_names)}, "
                         f"the detector config D={det_cfg.input_dim}, C={det_cfg.num_classes}")
    init_ref = None
    if init_from:
        init_ref = ray.put(load_detector(init_from, device="cpu").net.state_dict())
    config = {
        "train": cfg.to_dict(), "detector": det_cfg.to_dict(), "class_names": list(class_names),
        "class_embeddings": np.asarray(class_embeddings, np.float32).tolist(),
        "val_ref": ray.put(list(val)) if val else None, "init_state_ref": init_ref,
        "on_epoch_start": on_epoch_start,
        "torch_threads": torch_threads,
    }
    datasets = _datasets(train, list(class_names), det_cfg)
    config["sides"] = sorted(datasets)
    storage_path, storage_fs = _storage(settings)
    run_config = ray.train.RunConfig(
        name=settings.name, storage_path=storage_path, storage_filesystem=storage_fs,
        failure_config=ray.train.FailureConfig(max_failures=settings.max_failures),
        checkpoint_config=ray.train.CheckpointConfig(num_to_keep=settings.keep_checkpoints),
    )
    resources = {"CPU": settings.cpus_per_worker}
    if settings.use_gpu:
        resources["GPU"] = 1
    trainer = TorchTrainer(
        train_loop_per_worker, train_loop_config=config,
        scaling_config=ray.train.ScalingConfig(num_workers=settings.num_workers, use_gpu=settings.use_gpu,
                                               resources_per_worker=resources),
        run_config=run_config, datasets=datasets,
        dataset_config=ray.train.DataConfig(datasets_to_split=sorted(datasets)),
    )
    t0 = time.perf_counter()
    try:
        result = trainer.fit()
    except Exception as exc:
        raise ExvadError(f"training failed: {exc}") from exc
    wall = time.perf_counter() - t0
    if result.checkpoint is None:
        raise ExvadError("training finished without a checkpoint")
    st = _load_state(result.checkpoint)
    best = st["best"]
    net = new_net(det_cfg, class_embeddings)
    if best.get("state_dict") is not None:
        net.load_state_dict(best["state_dict"])
        best_epoch, best_metrics = int(best["epoch"]), dict(best["metrics"])
    else:
        net.load_state_dict(st["model"])
        best_epoch, best_metrics = int(st["epoch"]), {}
    history = list(st["history"])
    detector = ExVADDetector(net.eval(), list(class_names))
    return TrainOutcome(detector, best_metrics, best_epoch, history, result.checkpoint.path, wall,
                        [h.get("epoch_s", float("nan")) for h in history])
