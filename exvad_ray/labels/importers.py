"""Labels tables from the public benchmarks' annotation files (UCF-Crime, XD-Violence; the formats are
parsed by `exvad_ray.annotations`), ready for `append_labels`."""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from exvad_ray.annotations import (lines, malformed, parse_feature_list, parse_ucf_list, parse_ucf_temporal,
                                   parse_xd_annotations, read_text, split_crop, strip_extension, xd_labels_from_name,
                                   xd_row)
from exvad_ray.errors import ExvadError
from exvad_ray.index.labels import make_table


def _val_hash(name: str, fraction: float) -> bool:
    """Deterministic validation membership (stable across runs and machines)."""
    h = int(hashlib.sha1(name.encode()).hexdigest()[:8], 16)
    return h % 10000 < fraction * 10000


# ------------------------------------------------------------------------- UCF-Crime


def import_ucf_crime(train_list: str | None, test_list: str | None, temporal_annotation: str | None,
                     val_fraction: float = 0.1) -> pa.Table:
    """Labels for UCF-Crime: classes from the list folders, temporal segments (source frames) from
    Temporal_Anomaly_Annotation.txt, a deterministic `val_fraction` of the train list as val. No
    frame rate is assumed: `match_index` adds the real one from an index."""
    rows: list[dict[str, Any]] = []
    ann = parse_ucf_temporal(read_text(temporal_annotation), temporal_annotation) if temporal_annotation else {}
    for uri, split in ((train_list, "train"), (test_list, "test")):
        if not uri:
            continue
        for cls, name in parse_ucf_list(read_text(uri), uri):
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

def import_xd_violence(names_by_split: dict[str, Sequence[str]], annotations: str | None = None,
                       val_fraction: float = 0.0) -> pa.Table:
    """Labels table for XD-Violence: classes from the names' label codes, segments from
    annotations(.txt|_multiclasses.txt); optionally move a fraction of train to val."""
    ann = parse_xd_annotations(read_text(annotations)) if annotations else {}
    rows = []
    for split, names in names_by_split.items():
        for name in names:
            sp = "val" if split == "train" and val_fraction and _val_hash(name, val_fraction) else split
            rows.append(xd_row(name, sp, ann))
    return make_table(rows)


def read_xd_names(uri: str) -> list[str]:
    """Video names from a list: one name or path per line (`#` comments skipped), or a VadCLIP
    feature CSV (`path,label`; crops `__0`.. collapse to one video)."""
    text = read_text(uri)
    first = next((ln for _, ln in lines(text)), "")
    if first.lower().replace(" ", "").startswith("path,label"):
        entries = [split_crop(p)[0] for p, _ in parse_feature_list(text)]
    else:
        entries = []
        for n, line in lines(text):
            if len(line.split()) != 1:
                raise malformed(uri, n, line, "expected one name or path per line")
            entries.append(strip_extension(posixpath.basename(line.replace("\\", "/"))))
    names = list(dict.fromkeys(entries))
    for n in names:
        xd_labels_from_name(n)  # fails early on names without label codes
    return names


