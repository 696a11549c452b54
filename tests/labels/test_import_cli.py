"""`exvad labels import` on the real public files (as published, and as the original UCF-Crime
release writes them: `.mp4` names), CSV labels in frames and seconds, malformed lines, accumulation."""

from __future__ import annotations

from pathlib import Path

import pytest

from exvad_ray.cli import main
from exvad_ray.index.labels import read_labels
from exvad_ray.annotations import parse_ucf_temporal


def rows(labels: Path) -> dict[str, dict]:
    return {r["name"]: r for r in read_labels(str(labels)).to_pylist()}


def test_ucf_lists_and_annotations_with_or_without_extensions(public_lists_dir, tmp_path, capsys):
    lists = public_lists_dir
    ann = (lists / "Temporal_Anomaly_Annotation.txt").read_text()
    truth = parse_ucf_temporal(ann)
    # the original release: `Arrest001_x264.mp4  Arrest  1185  1485  -1  -1`, plus comments and blank lines
    release = tmp_path / "Temporal_Anomaly_Annotation.txt"
    release.write_text("# UCF-Crime temporal annotation\n\n" + "".join(
        line.replace("_x264 ", "_x264.mp4 ", 1) + "\n\n" for line in ann.splitlines()))
    assert "Arrest001_x264.mp4  Arrest  1185  1485" in release.read_text()
    for name, annotations in (("plain", lists / "Temporal_Anomaly_Annotation.txt"), ("release", release)):
        labels = tmp_path / name
        assert main(["labels", "import", "ucf", "--labels", str(labels), "--train-list", str(lists / "Anomaly_Train.txt"),
                     "--test-list", str(lists / "Anomaly_Test.txt"), "--annotations", str(annotations)]) == 0
        got = rows(labels)
        assert len(got) == 1900
        test_anomalous = [r for r in got.values() if r["split"] == "test" and r["labels"] != ["Normal"]]
        assert len(test_anomalous) == 140
        for r in test_anomalous:  # every annotated segment arrives, with its frames and class
            cls, segs = truth[r["name"]]
            assert [(s["start_frame"], s["end_frame"], s["label"]) for s in r["segments"]] == \
                [(s, e, cls) for s, e in segs], r["name"]
        assert got["Arrest001_x264"]["segments"] == [{"start_frame": 1185, "end_frame": 1485, "label": "Arrest"}]
        assert all(r["fps"] is None for r in got.values())  # no frame rate is invented without an index
    out = capsys.readouterr().out
    assert "1900 videos, 156 segments" in out


def test_xd_names_with_label_codes_and_annotations(public_lists_dir, tmp_path):
    lists, labels = public_lists_dir, tmp_path / "labels"
    assert main(["labels", "import", "xd", "--labels", str(labels), "--test-list", str(lists / "xd_CLIP_rgbtest.csv"),
                 "--annotations", str(lists / "annotations_multiclasses.txt")]) == 0
    got = rows(labels)
    assert len(got) == 800 and sum(bool(r["segments"]) for r in got.values()) == 500
    assert got["v=S-7rRLrxnVQ__#1_label_B4-0-0"]["segments"] == [
        {"start_frame": 0, "end_frame": 1517, "label": "Riot"}, {"start_frame": 1970, "end_frame": 3038, "label": "Riot"}]
    assert got["Bad.Boys.1995__#01-11-55_01-12-40_label_G-B2-B6"]["labels"] == ["Explosion", "Shooting", "CarAccident"]
    # the plain annotation file: segments without class codes take the video's first class
    plain = tmp_path / "plain"
    assert main(["labels", "import", "xd", "--labels", str(plain), "--test-list", str(lists / "xd_CLIP_rgbtest.csv"),
                 "--annotations", str(lists / "annotations.txt")]) == 0
    p = rows(plain)
    assert sum(bool(r["segments"]) for r in p.values()) == 500
    assert p["v=S-7rRLrxnVQ__#1_label_B4-0-0"]["segments"] == got["v=S-7rRLrxnVQ__#1_label_B4-0-0"]["segments"]
    assert p["Bad.Boys.1995__#01-11-55_01-12-40_label_G-B2-B6"]["segments"][0]["label"] == "Explosion"


def test_csv_frames_and_seconds_from_the_public_annotation(public_lists_dir, tmp_path):
    truth = parse_ucf_temporal((public_lists_dir / "Temporal_Anomaly_Annotation.txt").read_text())
    frames, seconds = ["name,classes,split,segments"], ["# seconds at 30 fps\nname,classes,split,segments_s,fps"]
    for name, (cls, segs) in truth.items():
        frames.append(f"{name}.mp4,{cls},test," + ";".join(f"{s}-{e}" for s, e in segs))
        seconds.append(f"{name},{cls},test," + ";".join(f"{s / 30:.6f}-{e / 30:.6f}" for s, e in segs) + ",30")
    for lines in (frames, seconds):
        (tmp_path / "l.csv").write_text("\n".join(lines) + "\n\n")
        labels = tmp_path / f"labels{len(lines[0])}"
        assert main(["labels", "import", "csv", str(tmp_path / "l.csv"), "--labels", str(labels)]) == 0
        got = rows(labels)
        assert len(got) == 290
        for name, (cls, segs) in truth.items():
            assert [(s["start_frame"], s["end_frame"], s["label"]) for s in got[name]["segments"]] == \
                [(s, e, cls) for s, e in segs if cls != "Normal"] or cls == "Normal", name


@pytest.mark.parametrize("fmt,text,needle", [
    ("ucf-ann", "Abuse028_x264  Abuse  165  240  -1  -1\nArrest001_x264.mp4  Arrest  1185\n", "line 2"),
    ("ucf-ann", "# c\n\nAbuse028_x264  Abuse  165  x  -1  -1\n", "line 3"),
    ("ucf-list", "Abuse/Abuse001_x264.mp4\nAbuse/Abuse 002.mp4\n", "line 2"),
    ("csv", "name,classes,split,segments\na,Fire,test,10-20\nb,Fire,later,\n", "line 3"),
    ("csv", "name,classes,split,segments\n\na,Fire,test,20-10\n", "line 3"),
    ("csv", "name,classes,split,segments_s\na,Fire,test,1-2\n", "frame rate"),
])
def test_malformed_input_fails_with_the_line_number(tmp_path, capsys, fmt, text, needle):
    f = tmp_path / "in.txt"
    f.write_text(text)
    args = {"ucf-ann": ["ucf", "--annotations", str(f)], "ucf-list": ["ucf", "--test-list", str(f)],
            "csv": ["csv", str(f)]}[fmt]
    assert main(["labels", "import", *args, "--labels", str(tmp_path / "labels")]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert not (tmp_path / "labels").exists()


def test_imports_accumulate_newest_wins(tmp_path):
    labels = tmp_path / "labels"
    (tmp_path / "a.csv").write_text("name,classes,split\nv1,Fire,train\nv2,Normal,test\n")
    (tmp_path / "b.csv").write_text("name,classes,split,segments\nv1,Fighting,val,5-9\n")
    for f in ("a.csv", "b.csv"):
        assert main(["labels", "import", "csv", str(tmp_path / f), "--labels", str(labels), "--author", "kim"]) == 0
    got = rows(labels)
    assert got["v1"]["labels"] == ["Fighting"] and got["v1"]["split"] == "val" and got["v2"]["split"] == "test"
    hist = read_labels(str(labels), current=False).to_pylist()
    assert [(r["name"], r["labels"]) for r in hist] == [("v1", ["Fire"]), ("v2", ["Normal"]), ("v1", ["Fighting"])]
    assert {r["author"] for r in hist} == {"kim"} and {r["source"] for r in hist} == {"import:csv"}
    assert main(["labels", "import", "csv", str(tmp_path / "a.csv"), "--labels", str(labels), "--dry-run"]) == 0
    assert len(read_labels(str(labels), current=False)) == 3
