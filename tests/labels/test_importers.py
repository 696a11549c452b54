"""Importers read the real public annotation and list files as published."""

import numpy as np
import pytest

from exvad_ray.errors import ExvadError
from exvad_ray.annotations import parse_feature_list, parse_xd_annotations, split_crop, xd_labels_from_name
from exvad_ray.labels.importers import import_ucf_crime, import_xd_violence
from exvad_ray.train.vadclip import load_vadclip_records

LISTS = "/work/shared/data/public_lists"


def test_ucf_crime_labels_table():
    t = import_ucf_crime(f"{LISTS}/Anomaly_Train.txt", f"{LISTS}/Anomaly_Test.txt",
                         f"{LISTS}/Temporal_Anomaly_Annotation.txt", val_fraction=0.1)
    rows = {r["name"]: r for r in t.to_pylist()}
    splits = [r["split"] for r in rows.values()]
    assert len(rows) == 1900 and splits.count("test") == 290
    assert 100 < splits.count("val") < 230  # ~10% of the 1610 training videos, deterministic
    assert rows["Arson011_x264"]["segments"] == [{"start_frame": 150, "end_frame": 420, "label": "Arson"},
                                                 {"start_frame": 680, "end_frame": 1267, "label": "Arson"}]
    assert rows["Abuse028_x264"]["segments"][0]["end_frame"] == 240
    assert rows["Normal_Videos_003_x264"]["labels"] == ["Normal"] and not rows["Normal_Videos_003_x264"]["segments"]
    assert rows["Normal_Videos001_x264"]["split"] in ("train", "val")
    test_anom = [r for r in rows.values() if r["split"] == "test" and r["labels"] != ["Normal"]]
    assert len(test_anom) == 140 and all(r["segments"] for r in test_anom)
    again = import_ucf_crime(f"{LISTS}/Anomaly_Train.txt", None, None, val_fraction=0.1)
    assert {r["name"] for r in again.to_pylist() if r["split"] == "val"} == \
        {n for n, r in rows.items() if r["split"] == "val"}


def test_xd_violence_annotations_and_names():
    multi = parse_xd_annotations(open(f"{LISTS}/annotations_multiclasses.txt").read())
    plain = parse_xd_annotations(open(f"{LISTS}/annotations.txt").read())
    assert len(multi) == len(plain) == 500
    assert multi["v=S-7rRLrxnVQ__#1_label_B4-0-0"] == [(0, 1517, "Riot"), (1970, 3038, "Riot")]
    assert plain["v=S-7rRLrxnVQ__#1_label_B4-0-0"] == [(0, 1517, None), (1970, 3038, None)]
    assert xd_labels_from_name("Bad.Boys.1995__#01-11-55_01-12-40_label_G-B2-B6") == ["Explosion", "Shooting", "CarAccident"]
    assert xd_labels_from_name("wangted.2008__#0-27-17_0-28-07_label_A") == ["Normal"]
    with pytest.raises(ExvadError):
        xd_labels_from_name("x_label_Z9-0-0")
    entries = parse_feature_list(open(f"{LISTS}/xd_CLIP_rgbtest.csv", newline="").read())
    names = [split_crop(p)[0] for p, _ in entries]
    assert len(entries) == 800 and entries[-1][1] == "A"  # CRLF handled
    t = import_xd_violence({"test": names}, f"{LISTS}/annotations_multiclasses.txt")
    rows = t.to_pylist()
    assert sum(bool(r["segments"]) for r in rows) == 500
    assert sum(r["labels"] == ["Normal"] for r in rows) == 300


def test_vadclip_features_with_rewritten_paths(tmp_path):
    csv = open(f"{LISTS}/ucf_CLIP_rgbtest.csv", newline="").read().splitlines()
    keep = [csv[0]] + [ln for ln in csv[1:] if "Arson011" in ln or "Normal_Videos_003" in ln]
    (tmp_path / "list.csv").write_text("\r\n".join(keep) + "\r\n")
    rng = np.random.default_rng(0)
    for line in keep[1:]:
        path = line.split(",")[0]
        folder, file = path.split("/")[-2:]
        (tmp_path / "feats" / folder).mkdir(parents=True, exist_ok=True)
        np.save(tmp_path / "feats" / folder / file, rng.normal(size=(90, 8)).astype(np.float32))
    recs = load_vadclip_records(str(tmp_path / "list.csv"), "test", "ucf", feature_root=str(tmp_path / "feats"),
                                annotations=f"{LISTS}/Temporal_Anomaly_Annotation.txt")
    by = {r.name: r for r in recs}
    assert set(by) == {"Arson011_x264", "Normal_Videos_003_x264"}
    assert by["Arson011_x264"].labels == ["Arson"] and by["Arson011_x264"].segments[0] == (150, 420, "Arson")
    assert by["Normal_Videos_003_x264"].is_normal and by["Arson011_x264"].features.shape == (90, 8)
    with pytest.raises(ExvadError):
        load_vadclip_records(str(tmp_path / "list.csv"), "test", "ucf", feature_root=str(tmp_path / "nowhere"))
