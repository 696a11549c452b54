"""`exvad train`: train the Ex-VAD detector with Ray Train on labelled archive indexes or on
VadCLIP's released features."""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

from exvad_ray import storage
from exvad_ray.cli.args import add_class_arguments, add_data_arguments, class_source, data_source
from exvad_ray.errors import ExvadError

log = logging.getLogger(__name__)


def milestones(text: str) -> tuple[int, ...]:
    """`4,8` -> (4, 8); `none` -> () (constant learning rate)."""
    if text.strip().lower() in ("none", ""):
        return ()
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"epochs separated by commas (e.g. 4,8) or 'none', not {text!r}") from None


def explicit_settings(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """Only the detector and training options given on the command line: they override the preset
    (or the project defaults when there is no preset)."""
    given = lambda name: getattr(args, name, None) is not None  # noqa: E731
    detector = {k: getattr(args, k) for k in ("fusion", "attention_block", "layers", "visual_length", "class_pooling",
                                         "visual_offset") if given(k)}
    if args.no_prompt_context:
        detector["prompt_context"] = False
    if args.reference_parity:
        detector["reference_parity"] = True
    train = {k: getattr(args, k) for k in ("epochs", "batch_size", "lr", "seed", "select_metric", "lr_milestones",
                                           "lr_gamma") if given(k)}
    if given("contrast_weight"):
        train["loss"] = {"contrast": args.contrast_weight}
    return detector, train


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
    from exvad_ray.train.loop import train_config
    from exvad_ray.train.ray_job import RayTrainSettings

    if not args.false_alarms_per_hour > 0:
        raise ExvadError(f"--false-alarms-per-hour must be positive, got {args.false_alarms_per_hour}")
    source = data_source(args)
    records = source.load()  # fail fast on data errors, before any model or cluster starts
    emb, names, label_set = class_source(args)
    detector, train = explicit_settings(args)
    cfg = train_config(args.preset, **train)
    settings = RayTrainSettings(num_workers=args.workers, use_gpu=args.gpu, cpus_per_worker=args.cpus_per_worker,
                                storage_path=args.storage or storage.join(args.out, "ray"), name=args.name,
                                max_failures=args.max_failures)
    init_from = args.init_from
    if init_from:  # an index: start from its current scoring's detector
        from exvad_ray.index.scorings import resolve_detector

        init_from = resolve_detector(init_from)
    from exvad_ray.models.profiles import load_profile

    req = TrainRequest(source, args.out, emb, names, label_set, detector, cfg, args.preset, settings, init_from,
                       not args.no_test_eval, profile_detector=load_profile(args.profile, check_local=False).detector,
                       false_alarms_per_hour=args.false_alarms_per_hour)
    from exvad_ray.train.api import detector_config
    from exvad_ray.train.data import feature_dim

    det_cfg = detector_config(req, feature_dim(records))  # a detector option that does not fit fails before Ray starts
    _init_ray(args.address)
    outcome, card = train_detector(req, records, det_cfg)
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
               "  exvad train --snippets idx/snippets --videos idx/videos --labels archive/annotations/labels \\\n"
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
    t = p.add_argument_group("training (an option given here overrides the preset)")
    t.add_argument("--preset", choices=["ucf", "xd"],
                   help="VadCLIP's hyper-parameters for UCF-Crime or XD-Violence (layers, attention block, lr, "
                        "schedule, batch, contrast weight, seed; docs/DETECTOR.md lists each value and its source)")
    t.add_argument("--epochs", type=int, help="default 10 (both presets 10)")
    t.add_argument("--batch-size", type=int, help="videos per step, half normal, half anomalous "
                   "(default 64; ucf 128, xd 96)")
    t.add_argument("--lr", type=float, help="AdamW learning rate (default 1e-4; ucf 2e-5, xd 1e-5)")
    t.add_argument("--lr-milestones", type=milestones, metavar="E1,E2|none",
                   help="epochs where the lr is multiplied by --lr-gamma (default none; ucf 4,8, xd 3,6,10)")
    t.add_argument("--lr-gamma", type=float, help="lr factor at each milestone (default 0.1)")
    t.add_argument("--seed", type=int, help="default 0 (presets 234)")
    t.add_argument("--select-metric", choices=["auc", "acc", "auc_acc"],
                   help="validation metric for model selection (default auc_acc: mean of AUC and accuracy)")
    t.add_argument("--contrast-weight", type=float,
                   help="weight of the mean |cos(Normal, anomaly class)| term (default 0.1 = VadCLIP UCF; xd 1e-4)")
    t.add_argument("--init-from", metavar="URI", help="warm start from a previous model.pt (or its folder), or "
                   "from an index's current detector (give the index); the model card records the parent")
    t.add_argument("--no-test-eval", action="store_true", help="do not score the test split for the model card")
    t.add_argument("--false-alarms-per-hour", type=float, default=1.0,
                   help="the model card's calibrated threshold: at most this many flagged segments per hour of the "
                        "val split's Normal videos (default 1; `exvad rescore` and `exvad evaluate` flag at it)")
    d = p.add_argument_group("detector")
    d.add_argument("--fusion", choices=["add", "concat", "none"], help="explanation fusion (default add)")
    d.add_argument("--attention-block", "--attn-window", type=int, dest="attention_block",
                   help="snippets per local self-attention block (default 8; ucf 8, xd 64)")
    d.add_argument("--layers", type=int, help="local transformer blocks (default 2, or the profile's: lite 0; ucf 2, xd 1)")
    d.add_argument("--visual-length", type=int, help="training length / inference chunk (default 256)")
    d.add_argument("--visual-offset", type=int, help="read each snippet's features from this value on (default 0, "
                   "or the profile's: lite 1280, the motion half of its [appearance | motion] features; features "
                   "of another width, e.g. lite indexes made before motion, are read whole; 0 reads all)")
    d.add_argument("--class-pooling", choices=["logits", "sigmoid"],
                   help="snippet weights of the video-conditioned class features (default sigmoid; presets: logits, "
                        "as VadCLIP)")
    d.add_argument("--no-prompt-context", action="store_true", help="no learnable class context")
    d.add_argument("--reference-parity", action="store_true",
                   help="compute what VadCLIP's code computes, padding included (for comparisons; the default "
                        "masks padded snippets)")
    p.set_defaults(func=_run)
