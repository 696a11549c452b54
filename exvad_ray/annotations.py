"""The public benchmarks' annotation and list formats, parsed: UCF-Crime's lists and temporal
annotation, XD-Violence's names and annotations, VadCLIP's feature lists (read as published, see
../shared/data/public_lists).

One reader per format, below its three users: the labels importers (labels in), the VadCLIP feature
loader (training data, `exvad_ray.train.vadclip`) and the synthetic archive (which writes UCF-layout
annotation files and reads them back). Pure text in, Python values out; `read_text` is the only I/O."""

from __future__ import annotations

import csv
import io
import posixpath
from typing import Any

from exvad_ray import storage
from exvad_ray.errors import ExvadError

UCF_CLASSES = ["Normal", "Abuse", "Arrest", "Arson", "Assault", "Burglary", "Explosion", "Fighting",
               "RoadAccidents", "Robbery", "Shooting", "Shoplifting", "Stealing", "Vandalism"]
XD_CODES = {"A": "Normal", "B1": "Fighting", "B2": "Shooting", "B4": "Riot", "B5": "Abuse",
            "B6": "CarAccident", "G": "Explosion"}
XD_CLASSES = list(XD_CODES.values())


def read_text(uri: str) -> str:
    if not storage.exists(uri):
        raise ExvadError(f"file not found: {uri}")
    return storage.read_bytes(uri).decode("utf-8-sig")


# ------------------------------------------------------------------------- common


def lines(text: str) -> list[tuple[int, str]]:
    """(line number, stripped line) without blank lines and `#` comments."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            out.append((n, line))
    return out


def malformed(what: str, n: int, line: str, why: str) -> ExvadError:
    return ExvadError(f"{what} line {n} is malformed ({why}): {line!r}")


# ------------------------------------------------------------------------- UCF-Crime


def parse_ucf_temporal(text: str, what: str = "temporal annotation") -> dict[str, tuple[str, list[tuple[int, int]]]]:
    """`Abuse028_x264  Abuse  165  240  -1  -1` -> {name: (class, [(165, 240)])}; -1 pairs dropped.
    Names with or without a video extension (the original release writes `Arrest001_x264.mp4`)
    give the same key; blank lines and `#` comments are skipped."""
    out: dict[str, tuple[str, list[tuple[int, int]]]] = {}
    for n, line in lines(text):
        parts = line.split()
        if len(parts) < 4 or (len(parts) - 2) % 2:
            raise malformed(what, n, line, "expected: name class start end [start end ...]")
        try:
            nums = [int(x) for x in parts[2:]]
        except ValueError:
            raise malformed(what, n, line, "frame numbers must be integers") from None
        segs = []
        for s, e in zip(nums[::2], nums[1::2]):
            if s >= 0 and e >= 0:
                if e <= s:
                    raise malformed(what, n, line, f"segment {s}-{e} ends before it starts")
                segs.append((s, e))
        out[strip_extension(parts[0])] = (parts[1], segs)
    return out


def parse_ucf_list(text: str, what: str = "list") -> list[tuple[str, str]]:
    """`Abuse/Abuse001_x264.mp4` -> [(class, name)]; the Normal folders map to Normal."""
    out = []
    for n, line in lines(text):
        if len(line.split()) != 1:
            raise malformed(what, n, line, "expected one path per line, like Abuse/Abuse001_x264.mp4")
        folder, _, file = line.replace("\\", "/").rpartition("/")
        name = strip_extension(file)
        cls = "Normal" if "normal" in folder.lower() or not folder else folder.rsplit("/", 1)[-1]
        out.append((cls, name))
    return out


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
    for n, line in lines(text):
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


# ------------------------------------------------------------------------- VadCLIP feature lists

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
