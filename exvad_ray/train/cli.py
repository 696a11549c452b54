"""`exvad train`: train the Ex-VAD detector with Ray Train on labelled archive indexes or on
VadCLIP's released features."""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

from exvad_ray import storage
from exvad_ray.errors import ExvadError

log = logging.getLogger(__name__)


def add_data_arguments(p: argparse.ArgumentParser, split_csvs: bool = True) -> None:
    g = p.add_argument_group("data: archive indexes (from `exvad process`) joined with a labels table")
    g.add_argument("--index", metavar="URI", help="index from `exvad process` (its snippets and videos tables)")
    g.add_argument("--snippets", metavar="URI", help="snippets index (Parquet file or folder)")
    g.add_argument("--videos", metavar="URI", help="videos index (Parquet file or folder)")
    g.add_argument("--labels", metavar="URI", help="labels table (folder; from `exvad labels import`, `exvad feedback` "
                   "or `exvad synth`), current view, joined on the video URI or `name`; its `split` gives train/val/test")
    v = p.add_argument_group("data: VadCLIP's released CLIP features (.npy per video and crop, CSV `path,label`)")
    if split_csvs:
        v.add_argument("--vadclip-train", metavar="CSV", help="training list (e.g. ucf_CLIP_rgb.csv)")
        v.add_argument("--vadclip-val", metavar="CSV", help="validation list (model selection)")
    v.add_argument("--vadclip-test", metavar="CSV", help="test list (e.g. ucf_CLIP_rgbtest.csv)")
    v.add_argument("--dataset", choices=["ucf", "xd"], default="ucf", help="how labels are read (default ucf)")
    v.add_argument("--feature-root", metavar="URI", help="folder holding the .npy files (the CSVs carry the "
                   "authors' absolute paths; files are looked up here by class/name, then by name)")
    v.add_argument("--annotations", metavar="URI", help="temporal ground truth for val/test: "
                   "Temporal_Anomaly_Annotation.txt (UCF) or annotations*.txt (XD)")
    v.add_argument("--crops", choices=["one", "all"], default="one",
                   help="training crops: first listed per video, or every crop as a video (default one)")


def add_class_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("classes")
    g.add_argument("--label-set", metavar="NAME", help="label set (configs/labels) whose augmented class "
                   "embeddings are computed with the profile's CLIP text encoder")
    g.add_argument("--profile", default="tiny", help="model profile for the CLIP text encoder (default tiny)")
    g.add_argument("--class-embeddings", metavar="NPZ", help="precomputed class embeddings instead "
                   "(.npz with 'embeddings' (C,D) and 'class_names' (C,), Normal first)")


def data_source(args: argparse.Namespace) -> Any:
    from exvad_ray.train.api import DataSource

    index = getattr(args, "index", None)
    snippets = args.snippets or (storage.join(index, "snippets") if index else None)
    videos = args.videos or (storage.join(index, "videos") if index else None)
    return DataSource(snippets=snippets, videos=videos, labels=args.labels,
                      vadclip_train_csv=getattr(args, "vadclip_train", None),
                      vadclip_val_csv=getattr(args, "vadclip_val", None), vadclip_test_csv=args.vadclip_test,
                      vadclip_dataset=args.dataset, feature_root=args.feature_root,
                      annotations=args.annotations, crops=args.crops)


def class_source(args: argparse.Namespace):
    from exvad_ray.train.api import class_embeddings_for, load_embeddings_file

    if args.class_embeddings:
        return load_embeddings_file(args.class_embeddings) + (args.class_embeddings,)
    if not args.label_set:
        raise ExvadError("give --label-set NAME (or --class-embeddings NPZ)")
    emb, names = class_embeddings_for(args.label_set, args.profile)
    return emb, names, args.label_set


def _init_ray(address: str | None) -> None:
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address)
    else:
        ray.init(include_dashboard=False)


def _run(args: argparse.Namespace) -> int:
    from exvad_ray.train.api import TrainRequest, train_detector
    from exvad_ray.train.loop import TrainConfig
    from exvad_ray.train.ray_job import RayTrainSettings
    from exvad_ray.detector.losses import LossWeights

    source = data_source(args)
    records = source.load()  # fail fast on data errors, before any model or cluster starts
    emb, names, label_set = class_source(args)
    detector: dict[str, Any] = {"fusion": args.fusion, "attn_window": args.attn_window, "layers": args.layers,
                                "visual_length": args.visual_length,
                                "prompt_context": not args.no_prompt_context}
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                      select_metric=args.select_metric, loss=LossWeights(contrast=args.contrast_weight))
    settings = RayTrainSettings(num_workers=args.workers, use_gpu=args.gpu, cpus_per_worker=args.cpus_per_worker,
                                storage_path=args.storage or storage.join(args.out, "ray"), name=args.name,
                                max_failures=args.max_failures)
    init_from = args.init_from
    if init_from:  # an index: start from its current scoring's detector
        from exvad_ray.pipeline.scorings import resolve_detector

        init_from = resolve_detector(init_from)
    req = TrainRequest(source, args.out, emb, names, label_set, detector, cfg, settings, init_from,
                       not args.no_test_eval)
    _init_ray(args.address)
    outcome, card = train_detector(req, records)
    print(json.dumps({"model": storage.join(args.out, "model.pt"), "best_epoch": outcome.best_epoch,
                      "val": outcome.best_metrics, "test": {k: card["test_metrics"][k] for k in
                      ("auc", "ap", "accuracy", "map_avg")} if card.get("test_metrics") else None}, indent=2))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train the Ex-VAD detector with Ray Train",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train the Ex-VAD detector (LGT-Adapter, explanation fusion, label-augmented alignment) "
                    "with Ray Train on weakly labelled videos; select the model on the validation split; write "
                    "model.pt, model_card.json and model_card.md under --out.",
        epilog="examples:\n"
               "  exvad train --snippets idx/snippets --videos idx/videos --labels labels.parquet \\\n"
               "      --label-set ucf_crime --out s3://models/exvad/run1 --workers 2\n"
               "  exvad train --vadclip-train ucf_CLIP_rgb.csv --vadclip-test ucf_CLIP_rgbtest.csv \\\n"
               "      --feature-root /data/UCFClipFeatures --annotations Temporal_Anomaly_Annotation.txt \\\n"
               "      --label-set ucf_crime --profile paper --out models/ucf\n"
               "  retrain on a newly labelled archive, warm-started: add --init-from models/ucf/model.pt")
    add_data_arguments(p)
    add_class_arguments(p)
    p.add_argument("--out", required=True, metavar="URI", help="where model.pt and the model card go")
    r = p.add_argument_group("Ray Train")
    r.add_argument("--workers", type=int, default=1, help="training workers (default 1)")
    r.add_argument("--gpu", action="store_true", help="one GPU per worker")
    r.add_argument("--cpus-per-worker", type=float, default=0.5, help="CPUs per worker (default 0.5)")
    r.add_argument("--storage", metavar="URI", help="Ray Train run folder (checkpoints; default <out>/ray)")
    r.add_argument("--name", default="exvad-detector", help="run name; rerunning the same name resumes")
    r.add_argument("--max-failures", type=int, default=2, help="worker failures to recover from (default 2)")
    r.add_argument("--address", help="Ray cluster address (default: start a local Ray)")
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--batch-size", type=int, default=64, help="videos per step, half normal, half anomalous")
    t.add_argument("--lr", type=float, default=1e-4)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--select-metric", choices=["auc", "acc", "auc_acc"], default="auc_acc",
                   help="validation metric for model selection (default: mean of AUC and accuracy)")
    t.add_argument("--contrast-weight", type=float, default=1.0, help="lambda (1 UCF-Crime, 1e-4 XD-Violence)")
    t.add_argument("--init-from", metavar="URI", help="warm start from a previous model.pt (or its folder), or "
                   "from an index's current detector (give the index); the model card records the parent")
    t.add_argument("--no-test-eval", action="store_true", help="do not score the test split for the model card")
    d = p.add_argument_group("detector")
    d.add_argument("--fusion", choices=["add", "concat", "none"], default="add", help="explanation fusion")
    d.add_argument("--attn-window", type=int, default=8, help="local attention window (8 UCF, 64 XD)")
    d.add_argument("--layers", type=int, default=2, help="local transformer blocks")
    d.add_argument("--visual-length", type=int, default=256, help="training length / inference chunk")
    d.add_argument("--no-prompt-context", action="store_true", help="no learnable class context")
    p.set_defaults(func=_run)
