"""Importers for the public benchmarks' annotation files (read as published, see
../shared/data/public_lists) and for VadCLIP's released CLIP features (.npy per video and crop,
CSV lists `path,label`), so that users with those features can train and evaluate directly."""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import posixpath
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from exvad_ray import storage
from exvad_ray.errors import ExvadError
from exvad_ray.index.labels import make_table
from exvad_ray.records import VideoRecord

log = logging.getLogger(__name__)

UCF_CLASSES = ["Normal", "Abuse", "Arrest", "Arson", "Assault", "Burglary", "Explosion", "Fighting",
               "RoadAccidents", "Robbery", "Shooting", "Shoplifting", "Stealing", "Vandalism"]
XD_CODES = {"A": "Normal", "B1": "Fighting", "B2": "Shooting", "B4": "Riot", "B5": "Abuse",
            "B6": "CarAccident", "G": "Explosion"}
XD_CLASSES = list(XD_CODES.values())


def _text(uri: str) -> str:
    if not storage.exists(uri):
        raise ExvadError(f"file not found: {uri}")
    return storage.read_bytes(uri).decode("utf-8-sig")


def _val_hash(name: str, fraction: float) -> bool:
    """Deterministic validation membership (stable across runs and machines)."""
    h = int(hashlib.sha1(name.encode()).hexdigest()[:8], 16)
    return h % 10000 < fraction * 10000


# ------------------------------------------------------------------------- common


def _lines(text: str) -> list[tuple[int, str]]:
    """(line number, stripped line) without blank lines and `#` comments."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            out.append((n, line))
    return out


def _malformed(what: str, n: int, line: str, why: str) -> ExvadError:
    return ExvadError(f"{what} line {n} is malformed ({why}): {line!r}")


# ------------------------------------------------------------------------- UCF-Crime


def parse_ucf_temporal(text: str, what: str = "temporal annotation") -> dict[str, tuple[str, list[tuple[int, int]]]]:
    """`Abuse028_x264  Abuse  165  240  -1  -1` -> {name: (class, [(165, 240)])}; -1 pairs dropped.
    Names with or without a video extension (the original release writes `Arrest001_x264.mp4`)
    give the same key; blank lines and `#` comments are skipped."""
    out: dict[str, tuple[str, list[tuple[int, int]]]] = {}
    for n, line in _lines(text):
        parts = line.split()
        if len(parts) < 4 or (len(parts) - 2) % 2:
            raise _malformed(what, n, line, "expected: name class start end [start end ...]")
        try:
            nums = [int(x) for x in parts[2:]]
        except ValueError:
            raise _malformed(what, n, line, "frame numbers must be integers") from None
        segs = []
        for s, e in zip(nums[::2], nums[1::2]):
            if s >= 0 and e >= 0:
                if e <= s:
                    raise _malformed(what, n, line, f"segment {s}-{e} ends before it starts")
                segs.append((s, e))
        out[strip_extension(parts[0])] = (parts[1], segs)
    return out


def parse_ucf_list(text: str, what: str = "list") -> list[tuple[str, str]]:
    """`Abuse/Abuse001_x264.mp4` -> [(class, name)]; the Normal folders map to Normal."""
    out = []
    for n, line in _lines(text):
        if len(line.split()) != 1:
            raise _malformed(what, n, line, "expected one path per line, like Abuse/Abuse001_x264.mp4")
        folder, _, file = line.replace("\\", "/").rpartition("/")
        name = strip_extension(file)
        cls = "Normal" if "normal" in folder.lower() or not folder else folder.rsplit("/", 1)[-1]
        out.append((cls, name))
    return out


def import_ucf_crime(train_list: str | None, test_list: str | None, temporal_annotation: str | None,
                     val_fraction: float = 0.1) -> pa.Table:
    """Labels for UCF-Crime: classes from the list folders, temporal segments (source frames) from
    Temporal_Anomaly_Annotation.txt, a deterministic `val_fraction` of the train list as val. No
    frame rate is assumed: `match_index` adds the real one from an index."""
    rows: list[dict[str, Any]] = []
    ann = parse_ucf_temporal(_text(temporal_annotation), temporal_annotation) if temporal_annotation else {}
    for uri, split in ((train_list, "train"), (test_list, "test")):
        if not uri:
            continue
        for cls, name in parse_ucf_list(_text(uri), uri):
            segs = []
            if name in ann and cls != "Normal":
                segs = [{"start_frame": s, "end_frame": e, "label": cls} for s, e in ann[name][1]]
            sp = "val" if split == "train" and _val_hash(name, val_fraction) else split
            rows.append({"name": name, "labels": [cls], "split": sp, "segments": segs})
    if not rows and ann:  # the annotation file alone: the test set
        for name, (cls, segs) in ann.items():
            rows.append({"name": name, "labels": [cls], "split": "test",
                         "segments": [{"start_frame": s, "end_frame": e, "label": cls} for s, e in segs]})
    if not rows:
        raise ExvadError("give at least one of the UCF-Crime train list, test list or temporal annotation")
    return make_table(rows)


# ------------------------------------------------------------------------- XD-Violence

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".npy")


def strip_extension(name: str) -> str:
    """14 lines of XD's annotation files carry `.mp4` on the name; the feature lists do not."""
    for ext in VIDEO_EXTENSIONS:
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def xd_labels_from_name(name: str) -> list[str]:
    """`..._label_B2-G-0` -> ['Shooting', 'Explosion']; `_label_A` -> ['Normal']."""
    name = strip_extension(name)
    if "_label_" not in name:
        raise ExvadError(f"XD-Violence name without '_label_...': {name!r}")
    codes = name.rsplit("_label_", 1)[1].split("__")[0].split("-")
    out = []
    for code in codes:
        if code == "0":
            continue
        if code not in XD_CODES:
            raise ExvadError(f"unknown XD-Violence label code {code!r} in {name!r}")
        out.append(XD_CODES[code])
    return out or ["Normal"]


def parse_xd_annotations(text: str) -> dict[str, list[tuple[int, int, str | None]]]:
    """Both published forms: `name s1 e1 s2 e2 ...` and `name B4 s1 e1 B4 s2 e2 ...`."""
    out: dict[str, list[tuple[int, int, str | None]]] = {}
    for n, line in _lines(text):
        parts = line.split()
        name, rest = strip_extension(parts[0]), parts[1:]
        segs: list[tuple[int, int, str | None]] = []
        try:
            if rest and not rest[0].lstrip("-").isdigit():  # multiclass form
                if len(rest) % 3:
                    raise ValueError
                for i in range(0, len(rest), 3):
                    code = rest[i]
                    if code not in XD_CODES:
                        raise ExvadError(f"XD annotation line {n}: unknown class code {code!r}")
                    segs.append((int(rest[i + 1]), int(rest[i + 2]), XD_CODES[code]))
            else:
                if len(rest) % 2:
                    raise ValueError
                segs = [(int(rest[i]), int(rest[i + 1]), None) for i in range(0, len(rest), 2)]
        except ValueError:
            raise ExvadError(f"XD annotation line {n} is malformed: {line.strip()!r}") from None
        out[name] = segs
    return out


def xd_row(name: str, split: str, ann: dict[str, list[tuple[int, int, str | None]]]) -> dict[str, Any]:
    labels = xd_labels_from_name(name)
    segs = [{"start_frame": s, "end_frame": e, "label": lab or labels[0]} for s, e, lab in ann.get(name, [])]
    return {"name": name, "labels": labels, "split": split, "segments": segs}


def import_xd_violence(names_by_split: dict[str, Sequence[str]], annotations: str | None = None,
                       val_fraction: float = 0.0) -> pa.Table:
    """Labels table for XD-Violence: classes from the names' label codes, segments from
    annotations(.txt|_multiclasses.txt); optionally move a fraction of train to val."""
    ann = parse_xd_annotations(_text(annotations)) if annotations else {}
    rows = []
    for split, names in names_by_split.items():
        for name in names:
            sp = "val" if split == "train" and val_fraction and _val_hash(name, val_fraction) else split
            rows.append(xd_row(name, sp, ann))
    return make_table(rows)


def read_xd_names(uri: str) -> list[str]:
    """Video names from a list: one name or path per line (`#` comments skipped), or a VadCLIP
    feature CSV (`path,label`; crops `__0`.. collapse to one video)."""
    text = _text(uri)
    first = next((ln for _, ln in _lines(text)), "")
    if first.lower().replace(" ", "").startswith("path,label"):
        entries = [split_crop(p)[0] for p, _ in parse_feature_list(text)]
    else:
        entries = []
        for n, line in _lines(text):
            if len(line.split()) != 1:
                raise _malformed(uri, n, line, "expected one name or path per line")
            entries.append(strip_extension(posixpath.basename(line.replace("\\", "/"))))
    names = list(dict.fromkeys(entries))
    for n in names:
        xd_labels_from_name(n)  # fails early on names without label codes
    return names


# ------------------------------------------------------------------------- VadCLIP features

def parse_feature_list(text: str) -> list[tuple[str, str]]:
    """VadCLIP CSV (`path,label`, CRLF tolerated) -> [(path, label)]."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header or [h.strip().lower() for h in header[:2]] != ["path", "label"]:
        raise ExvadError(f"feature list must start with the header 'path,label', got {header}")
    return [(r[0].strip(), r[1].strip()) for r in reader if r and r[0].strip()]


def split_crop(path: str) -> tuple[str, str]:
    """`/x/Abuse/Abuse028_x264__5.npy` -> ('Abuse028_x264', '5')."""
    stem = posixpath.splitext(posixpath.basename(path.replace("\\", "/")))[0]
    name, sep, crop = stem.rpartition("__")
    return (name, crop) if sep and crop.isdigit() else (stem, "")


def _locate(path: str, feature_root: str | None) -> str:
    """The CSVs hold the authors' absolute paths: look under feature_root by class/file, then file."""
    if feature_root is None:
        return path
    parts = path.replace("\\", "/").split("/")
    for tail in (parts[-2:], parts[-1:]):
        cand = storage.join(feature_root, *tail)
        if storage.exists(cand):
            return cand
    raise ExvadError(f"feature file {parts[-1]} not found under {feature_root}")


def _load_npy(uri: str) -> np.ndarray:
    arr = np.load(io.BytesIO(storage.read_bytes(uri)), allow_pickle=False)
    if arr.ndim != 2:
        raise ExvadError(f"{uri}: expected (n_snippets, D) features, got shape {arr.shape}")
    return arr.astype(np.float32, copy=False)


def load_vadclip_records(
    csv_uri: str,
    split: str,
    dataset: str,
    feature_root: str | None = None,
    annotations: str | None = None,
    crops: str = "one",
) -> list[VideoRecord]:
    """Records from a VadCLIP feature list. `dataset` 'ucf' or 'xd' picks how labels are read
    (UCF: class column; XD: codes); `annotations` adds temporal ground truth (UCF
    Temporal_Anomaly_Annotation.txt or XD annotations*.txt). crops='one' keeps the first listed crop
    per video (what VadCLIP tests on), 'all' keeps every crop as its own training video."""
    if dataset not in ("ucf", "xd"):
        raise ExvadError(f"dataset must be 'ucf' or 'xd', not {dataset!r}")
    if crops not in ("one", "all"):
        raise ExvadError(f"crops must be 'one' or 'all', not {crops!r}")
    entries = parse_feature_list(_text(csv_uri))
    ucf_ann = parse_ucf_temporal(_text(annotations)) if annotations and dataset == "ucf" else {}
    xd_ann = parse_xd_annotations(_text(annotations)) if annotations and dataset == "xd" else {}
    seen: set[str] = set()
    records = []
    for path, label in entries:
        name, crop = split_crop(path)
        if crops == "one" and name in seen:
            continue
        seen.add(name)
        feats = _load_npy(_locate(path, feature_root))
        if dataset == "ucf":
            labels = ["Normal" if label.lower().startswith("normal") else label]
            segs = [(s, e, labels[0]) for s, e in ucf_ann.get(name, ("", []))[1]] if labels != ["Normal"] else []
        else:
            row = xd_row(name, split, xd_ann)
            labels = row["labels"]
            segs = [(s["start_frame"], s["end_frame"], s["label"]) for s in row["segments"]]
        rec_name = name if crops == "one" else f"{name}__{crop}"
        records.append(VideoRecord(rec_name, feats, None, labels, segs, split))
    if not records:
        raise ExvadError(f"feature list {csv_uri} lists no features")
    log.info("loaded %d videos from %s", len(records), csv_uri)
    return records
