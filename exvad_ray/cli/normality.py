"""`exvad normality fit`: build the label-free normality model of an index (docs/NORMALITY.md).

Arguments -> `exvad_ray.train.normality.NormalityFitConfig`; every input is checked (`plan_fit`)
before Ray starts.
"""

from __future__ import annotations

import argparse
import sys

from exvad_ray.errors import ExvadError


def _fit(args: argparse.Namespace) -> int:
    from exvad_ray.train.normality import NormalityFitConfig, fit_normality, plan_fit

    weights = None
    if args.half_weights:
        try:
            weights = tuple(float(w) for w in args.half_weights.split(","))
        except ValueError as exc:
            raise ExvadError(f"--half-weights takes numbers separated by commas, not {args.half_weights!r}") from exc
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ExvadError(f"--half-weights must be non-negative and not all 0, got {args.half_weights}")
    cfg = NormalityFitConfig(
        index=args.index, out=args.out, labels=args.labels, split=args.split,
        calibrate_splits=tuple(s for s in args.calibrate_on.split(",") if s), camera_pattern=args.camera_pattern,
        cameras=tuple(args.camera or ()), per_hour=args.false_alarms_per_hour, k=args.k, bank_size=args.bank_size,
        cap=args.cap, trim=args.trim, min_camera_snippets=args.min_camera_snippets, half_weights=weights,
        combine=args.combine, smooth=args.smooth,
        seed=args.seed, address=args.address)
    plan = plan_fit(cfg)  # one-line errors before Ray starts

    def echo(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    _model, card = fit_normality(cfg, echo=echo, plan=plan)
    sizes = ", ".join(f"{b}: {s['entries']} entries from {s['videos']} videos" for b, s in card["sizes"].items())
    print(f"normality model {args.out}: {sizes}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "normality", help="label-free normality model: score footage against what the archive normally shows",
        description="Label-free normality (docs/NORMALITY.md): a bank of normal snippets from the index's stored "
        "embeddings, k-NN distance per half of the visual embedding ([appearance | motion] in lite), calibrated "
        "into the percentile of normal footage, thresholds from a target false-alarm rate.")
    sub2 = p.add_subparsers(dest="normality_command", metavar="SUBCOMMAND")
    f = sub2.add_parser(
        "fit", help="build the normality model of an index (a Ray Data job over stored embeddings; no decoding)",
        description="Build a bank of normal snippets from the index's stored snippet embeddings (no video is "
        "decoded): with --labels, the Normal videos of --split; without, all indexed footage with its most isolated "
        "--trim fraction dropped (the archive is mostly normal). Snippets of segments marked false alarms with "
        "`exvad feedback` are always in the bank. The bank is reduced to --bank-size real snippets (greedy k-center "
        "coreset), one per camera when the cameras come from a camera rule (--camera-pattern, here or in the run), "
        "else global only. Each bank is calibrated on its own normal videos, each scored against the others: a "
        "score becomes the percentile of normal footage that is less unusual, and the flagging threshold is set "
        "for --false-alarms-per-hour on that footage. Writes OUT/normality.npz and OUT/model_card.json.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    f.add_argument("--index", required=True, help="index folder or URI (from `exvad process`)")
    f.add_argument("--out", required=True, help="folder or URI to write the model to")
    f.add_argument("--labels", default=None, help="labels table: the bank takes the Normal videos of --split")
    f.add_argument("--split", default="train", help="split whose Normal videos form the bank (with --labels)")
    f.add_argument("--calibrate-on", default="val",
                   help="splits whose Normal videos calibrate the percentiles and thresholds (with --labels; never "
                        "test). Default val: footage the bank never saw; the --split's own videos, scored "
                        "leave-one-video-out, are added when it has fewer than 2")
    f.add_argument("--camera-pattern", default=None,
                   help="regex with group camera applied to video paths: one bank per camera (default: the rule the "
                        "index's runs recorded; none: one global bank)")
    f.add_argument("--camera", action="append", help="fit only this camera's footage (repeatable)")
    f.add_argument("--false-alarms-per-hour", type=float, default=1.0,
                   help="target flagged segments per camera-hour of normal footage")
    f.add_argument("--k", type=int, default=5, help="nearest normal snippets averaged per half")
    f.add_argument("--bank-size", type=int, default=8000, help="entries per bank at most (memory: bank x 10 KB in lite)")
    f.add_argument("--cap", type=int, default=20000, help="candidate snippets sampled per bank before reduction")
    f.add_argument("--trim", type=float, default=0.01, help="without labels: most isolated fraction dropped")
    f.add_argument("--min-camera-snippets", type=int, default=2000,
                   help="footage a camera needs for its own bank (else the global bank)")
    f.add_argument("--half-weights", default=None, help="weights of the halves' percentiles, e.g. 1,1 (default equal)")
    f.add_argument("--combine", choices=("mean", "max"), default="mean",
                   help="how the halves' surprises (-log(1 - percentile)) combine: weighted mean, or max (unusual in "
                        "either half)")
    f.add_argument("--smooth", type=int, default=3,
                   help="snippets each video's scores are averaged over (1: none); an event lasts several snippets")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--address", default="local",
                   help="Ray address ('local': start a local Ray; 'auto': join a running cluster)")
    f.set_defaults(func=_fit)

    def no_sub(_args: argparse.Namespace) -> int:
        p.print_help()
        return 2

    p.set_defaults(func=no_sub)
