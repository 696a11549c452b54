"""Training learns on synthetic features; the Ray Train job resumes after a worker is killed;
`exvad train` / `exvad evaluate` run end to end on index tables."""

import json
import os
import time

import numpy as np
import pytest
import torch

os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
for k, v in {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled",
             "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1"}.items():
    os.environ.setdefault(k, v)

from exvad_ray.errors import ExvadError  # noqa: E402
from exvad_ray.detector import DetectorConfig, ZeroShotScorer  # noqa: E402
from exvad_ray.eval.evaluate import evaluate_records  # noqa: E402
from exvad_ray.train.loop import TrainConfig, fit_local  # noqa: E402
from exvad_ray.train.synthetic import synthetic_feature_set  # noqa: E402

torch.set_num_threads(1)
NAMES = ["Normal", "Fight", "Fire", "Theft"]


def data(dim=32):
    tr, emb = synthetic_feature_set(NAMES, n_per_class=10, n_normal=30, dim=dim, seed=0)
    va, _ = synthetic_feature_set(NAMES, n_per_class=4, n_normal=8, dim=dim, seed=1, split="val")
    te, _ = synthetic_feature_set(NAMES, n_per_class=6, n_normal=12, dim=dim, seed=2, split="test")
    return tr, va, te, emb


def test_local_training_loss_decreases_and_beats_chance():
    tr, va, te, emb = data()
    det, hist = fit_local(tr, va, NAMES, emb, DetectorConfig(embed_dim=32, num_classes=4, visual_length=128, layers=1),
                          TrainConfig(epochs=12, batch_size=16, lr=1e-3))
    assert hist[-1]["loss"] < 0.5 * hist[0]["loss"]
    rep = evaluate_records(det, te)
    assert rep.frame_level and rep.auc >= 0.9 and rep.accuracy >= 0.7  # chance: AUC 0.5, accuracy 0.25
    assert rep.map_avg > 40
    zero_shot = evaluate_records(ZeroShotScorer(emb, NAMES), te)
    assert rep.map_avg > zero_shot.map_avg


RAY_DETECTOR = DetectorConfig(embed_dim=32, num_classes=4, visual_length=128, layers=1)


def ray_train(tmp_path, name, epochs, on_epoch_start=None):
    from exvad_ray.train.ray_job import RayTrainSettings, run_ray_training

    tr, va, _, emb = data()
    return run_ray_training(tr, va, NAMES, emb, RAY_DETECTOR, TrainConfig(epochs=epochs, batch_size=16, lr=3e-3),
                            RayTrainSettings(num_workers=2, storage_path=str(tmp_path / "runs"), name=name,
                                             max_failures=1), on_epoch_start=on_epoch_start,
                            torch_threads=1)


@pytest.mark.slow
def test_ray_training_resumes_after_worker_kill(ray_local, tmp_path):
    marker, epoch_log = str(tmp_path / "killed"), str(tmp_path / "epochs.log")

    def crash_once_at_epoch_2(epoch: int, rank: int) -> None:
        """Runs in the workers (pickled by value): log each epoch; kill the process inside epoch 2, once."""
        if rank != 0:
            return
        if epoch == 2 and not os.path.exists(marker):
            open(marker, "w").close()
            time.sleep(2.0)  # crash inside the epoch, as a real one would
            os._exit(1)  # a crashed worker process
        with open(epoch_log, "a") as fh:
            fh.write(f"{epoch} {os.getpid()}\n")

    out = ray_train(tmp_path, "kill", 8, crash_once_at_epoch_2)
    assert os.path.exists(marker)  # the worker did die
    log = [line.split() for line in open(epoch_log).read().splitlines()]
    epochs, pids = [int(e) for e, _ in log], [p for _, p in log]
    # The first attempt ran epochs 0-1 and died at the start of epoch 2. The restart resumes after the
    # newest checkpoint the controller had registered: epoch 1's, or under heavy load still epoch 0's
    # (registration is asynchronous), never from scratch.
    restart = next(i for i in range(1, len(pids)) if pids[i] != pids[0])
    assert epochs[:restart] == [0, 1]
    resumed_at = epochs[restart]
    assert resumed_at in (1, 2), epochs
    assert epochs[restart:] == list(range(resumed_at, 8)) and len(set(pids[restart:])) == 1
    assert [h["epoch"] for h in out.history] == list(range(8))
    assert out.history[-1]["loss"] < 0.5 * out.history[0]["loss"]
    assert out.best_metrics["auc"] == max(h["val_auc"] for h in out.history if h["val_score"] == max(
        x["val_score"] for x in out.history))
    rep = evaluate_records(out.detector, data()[2])
    assert rep.auc > 0.9  # chance is 0.5; seeds 0-3 all give >= 0.98 with these settings

    # Batches depend only on (seed, epoch, rank) and the restored optimizer carries its state, so the
    # resumed run is the unbroken run: an uninterrupted job's first epochs have the same losses and scores.
    unbroken = ray_train(tmp_path, "unbroken", 4)
    keys = ["loss", "loss_bce", "loss_align", "val_auc", "val_accuracy"]
    assert [h[k] for h in unbroken.history for k in keys] == \
        pytest.approx([h[k] for h in out.history[:4] for k in keys], rel=1e-5)


@pytest.mark.slow
def test_cli_train_and_evaluate_on_index_tables(ray_local, tmp_path, capsys, write_feature_index):
    from exvad_ray.cli import main
    from exvad_ray.index.labels import append_labels, make_table

    tr, va, te, emb = data(dim=16)
    videos, labs = [], []
    for i, r in enumerate(tr + va + te):
        videos.append({"video_id": f"id{i}", "name": r.name, "features": r.features})
        labs.append({"name": r.name, "labels": r.labels, "split": r.split, "n_frames": 16 * r.n_snippets,
                     "segments": [{"start_frame": s, "end_frame": e, "label": lab} for s, e, lab in r.segments]})
    index = write_feature_index(str(tmp_path / "idx"), videos)
    append_labels(str(tmp_path / "labels"), make_table(labs), source="import:test")
    np.savez(tmp_path / "classes.npz", embeddings=emb, class_names=np.array(NAMES))
    data_args = ["--index", index, "--labels", str(tmp_path / "labels")]
    # lineage: a parent detector to warm-start from, and an analyst's verdict among the labels
    from exvad_ray.detector import ExVADDetector
    from exvad_ray.index.labels import record_feedback
    from exvad_ray.checkpoints import detector_id, save_detector

    save_detector(ExVADDetector.build(DetectorConfig(embed_dim=16, num_classes=len(NAMES), visual_length=128, layers=1,
                                                     fusion="concat"), emb, NAMES), str(tmp_path / "parent" / "model.pt"))
    record_feedback(str(tmp_path / "labels"), {"segment_id": "id0:0", "uri": f"file:///archive/{tr[0].name}.mp4",
                                               "start_s": 0.0, "end_s": 1.0, "fps": 16.0}, "false-alarm", author="ann")
    rc = main(["train", *data_args, "--class-embeddings", str(tmp_path / "classes.npz"), "--out", str(tmp_path / "model"),
               "--epochs", "2", "--batch-size", "16", "--lr", "1e-3", "--layers", "1", "--visual-length", "128",
               "--fusion", "concat", "--init-from", str(tmp_path / "parent")])
    assert rc == 0
    card = json.loads((tmp_path / "model" / "model_card.json").read_text())
    lineage = card["lineage"]
    assert lineage["parent"]["detector_id"] == detector_id(str(tmp_path / "parent")) != card["detector_id"]
    assert lineage["labels"]["verdicts"] == {"false-alarm": 1} and lineage["labels"]["videos"] == len(tr + va + te)
    assert "Warm-started from" in (tmp_path / "model" / "model_card.md").read_text()
    assert card["label_set"]["class_names"] == NAMES and card["selection"]["split"] == "val"
    assert card["data"]["splits"]["train"]["videos"] == len(tr) and card["test_metrics"]["auc"] is not None
    assert {"torch", "ray"} <= set(card["versions"]) and (tmp_path / "model" / "model_card.md").exists()
    capsys.readouterr()
    rc = main(["evaluate", "--checkpoint", str(tmp_path / "model"), *data_args, "--out", str(tmp_path / "r.json"),
               "--plots", str(tmp_path / "plots")])
    assert rc == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["frame_level"] and set(report["map_at_iou"]) == {"0.1", "0.2", "0.3", "0.4", "0.5"}
    assert (tmp_path / "plots" / "roc.png").stat().st_size > 1000 and (tmp_path / "plots" / "pr.png").exists()
    assert len(list((tmp_path / "plots" / "timelines").glob("*.png"))) >= 10
    # user mistakes are messages, not tracebacks
    assert main(["evaluate", "--checkpoint", str(tmp_path / "nope"), *data_args]) == 2
    assert main(["train", *data_args, "--out", str(tmp_path / "m2")]) == 2  # no label set
    assert "--label-set" in capsys.readouterr().err
    assert main(["train", *data_args, "--class-embeddings", str(tmp_path / "classes.npz"), "--out", str(tmp_path / "m3"),
                 "--visual-offset", "16"]) == 2  # the features have 16 values: checked before any training
    assert "--visual-offset 16" in capsys.readouterr().err and not (tmp_path / "m3").exists()


def test_training_with_visual_features_of_another_size():
    """lite-style data: 48-value visual features, 32-value class embeddings and explanations. The
    request's detector gets visual_dim=48 (a learned projection) and training still learns."""
    import dataclasses

    from exvad_ray.train.api import DataSource, TrainRequest, detector_config

    tr, va, _, emb = data()
    lift = np.random.default_rng(5).normal(size=(32, 48)).astype(np.float32) / np.sqrt(32)
    tr, va = ([dataclasses.replace(r, features=r.features @ lift) for r in rs] for rs in (tr, va))
    req = TrainRequest(DataSource(), "unused", emb, NAMES, detector={"visual_length": 128, "layers": 1})
    cfg = detector_config(req, 48)
    assert (cfg.embed_dim, cfg.visual_dim, cfg.input_dim) == (32, 48, 48)
    assert detector_config(req, 32).visual_dim is None
    # a profile's detector may read the later part of each feature (lite: the motion half)
    off = dataclasses.replace(req, profile_detector={"visual_offset": 16})
    assert (detector_config(off, 64).visual_dim, detector_config(off, 64).input_dim) == (48, 64)
    assert detector_config(off, 48).visual_dim is None  # 32 values read: the class space's own size
    assert detector_config(off, 16).visual_offset == 0  # not the profile's layout: read whole
    with pytest.raises(ExvadError, match="visual-offset"):
        detector_config(dataclasses.replace(req, detector={"visual_offset": 16}), 16)  # given, and does not fit
    det, hist = fit_local(tr, va, NAMES, emb, cfg, TrainConfig(epochs=6, batch_size=16, lr=1e-3))
    assert hist[-1]["loss"] < hist[0]["loss"]
    assert det.score(tr[0].features)[0].shape == (tr[0].n_snippets,)
