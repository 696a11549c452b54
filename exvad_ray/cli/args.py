"""Argument groups that several commands share (`exvad train` and `exvad evaluate`): where labelled
videos come from and where class embeddings come from. What they resolve to lives in the library
(`exvad_ray.train.api.DataSource`, `class_embeddings_for`); this module only parses. Not a command."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from exvad_ray import storage
from exvad_ray.errors import ExvadError

if TYPE_CHECKING:
    import numpy as np

    from exvad_ray.train.api import DataSource


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
    g.add_argument("--profile", default="lite", help="model profile whose text encoder embeds the label set "
                   "(default lite; use the profile the index was made with)")
    g.add_argument("--class-embeddings", metavar="NPZ", help="precomputed class embeddings instead "
                   "(.npz with 'embeddings' (C,D) and 'class_names' (C,), Normal first)")


def data_source(args: argparse.Namespace) -> DataSource:
    from exvad_ray.train.api import DataSource

    index = getattr(args, "index", None)
    snippets = args.snippets or (storage.join(index, "snippets") if index else None)
    videos = args.videos or (storage.join(index, "videos") if index else None)
    return DataSource(snippets=snippets, videos=videos, labels=args.labels,
                      vadclip_train_csv=getattr(args, "vadclip_train", None),
                      vadclip_val_csv=getattr(args, "vadclip_val", None), vadclip_test_csv=args.vadclip_test,
                      vadclip_dataset=args.dataset, feature_root=args.feature_root,
                      annotations=args.annotations, crops=args.crops)


def class_source(args: argparse.Namespace) -> tuple[np.ndarray, list[str], str]:
    """(class embeddings, class names, what they came from: the label set or the .npz)."""
    from exvad_ray.train.api import class_embeddings_for, load_embeddings_file

    if args.class_embeddings:
        return load_embeddings_file(args.class_embeddings) + (args.class_embeddings,)
    if not args.label_set:
        raise ExvadError("give --label-set NAME (or --class-embeddings NPZ)")
    emb, names = class_embeddings_for(args.label_set, args.profile)
    return emb, names, args.label_set
