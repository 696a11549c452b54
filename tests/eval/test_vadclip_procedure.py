"""`exvad evaluate` reports mAP twice: as VadCLIP's published procedure computes it and corrected.
Hand-made cases whose reference values are worked out by hand from the published procedure:
proposals are runs of frames above max - 0.6 (max - min) of a class column, at least 2 frames,
scored max + 0.7 * (mean of the top n_frames/16 values); every class, Normal included, is scored;
one class without any proposal makes the whole IoU score 0; UCF-Crime's normal videos carry no
class (Normal AP 0), XD-Violence's a whole-video Normal segment."""

from __future__ import annotations

import numpy as np
import pytest

from exvad_ray.detector.video_level import video_prediction
from exvad_ray.eval.evaluate import VideoResult, compute_report

NAMES = ["Normal", "Fire", "Fight"]


def video(name: str, labels: list[str], segments: list, probs: list[list[float]]) -> VideoResult:
    p = np.asarray(probs, np.float32)
    scores = 1.0 - p[:, 0]
    return VideoResult(name, labels, segments, scores, p, video_prediction(scores, p, NAMES))


N, F = [0.8, 0.1, 0.1], [0.1, 0.8, 0.1]  # rows: (Normal, Fire, Fight) per snippet


def case_no_fight_proposals() -> list[VideoResult]:
    # Fight is constant everywhere: no run rises above its threshold, so Fight has no proposal
    return [video("fire", ["Fire"], [(16, 48, "Fire")], [N, F, F, N]),
            video("normal", ["Normal"], [], [N, N, N, N])]


def case_all_classes_proposed() -> list[VideoResult]:
    return [
        # Fire found exactly; a weak Fight bump in the last snippet (a false Fight proposal)
        video("fire", ["Fire"], [(16, 48, "Fire")],
              [[0.8, 0.1, 0.1], [0.1, 0.8, 0.05], [0.1, 0.8, 0.05], [0.8, 0.1, 0.3]]),
        # a normal video whose Normal column covers frames [0, 48) of [0, 64)
        video("normal", ["Normal"], [], [[0.9, 0.05, 0.05]] * 3 + [[0.5, 0.05, 0.05]]),
        # Fight found exactly
        video("fight", ["Fight"], [(0, 32, "Fight")],
              [[0.1, 0.1, 0.8], [0.1, 0.1, 0.8], [0.8, 0.1, 0.1], [0.8, 0.1, 0.1]]),
    ]


@pytest.mark.parametrize("case,procedure,vadclip,corrected", [
    # reference: Fight has no proposal -> `return 0` at every IoU; corrected: only Fire has ground truth, AP 1
    (case_no_fight_proposals, "ucf", 0.0, 100.0),
    (case_no_fight_proposals, "xd", 0.0, 100.0),
    # UCF: mean(Normal 0 (no Normal ground truth), Fire 1, Fight 1); corrected: mean(Fire 1, Fight 1)
    (case_all_classes_proposed, "ucf", 200 / 3, 100.0),
    # XD: the normal video's [0, 64) is Normal ground truth, its [0, 48) proposal matches (IoU 0.75 >= 0.5)
    (case_all_classes_proposed, "xd", 100.0, 100.0),
])
def test_vadclip_procedure_and_corrected_map(case, procedure, vadclip, corrected):
    report = compute_report(case(), NAMES, procedure)
    assert report.frame_level
    assert report.vadclip_map_at == pytest.approx({t: vadclip for t in (0.1, 0.2, 0.3, 0.4, 0.5)})
    assert report.vadclip_map_avg == pytest.approx(vadclip)
    assert report.map_at == pytest.approx({t: corrected for t in (0.1, 0.2, 0.3, 0.4, 0.5)})
    d = report.to_dict()
    assert d["vadclip_procedure"]["map_avg"] == pytest.approx(vadclip) and d["vadclip_procedure"]["dataset"] == procedure
    assert d["corrected"]["map_avg"] == pytest.approx(corrected) and d["map_avg"] == d["corrected"]["map_avg"]
    assert d["vadclip_procedure"]["auc"] == d["corrected"]["auc"] == report.auc


def test_evaluate_cli_prints_both(tmp_path, capsys):
    """Through `exvad evaluate` on a labelled index: both figures, named, in the JSON and the printout."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from exvad_ray.cli import main
    from exvad_ray.index.labels import append_labels, make_table

    snip, vids, labs, embs = [], [], [], np.eye(3, 4, dtype=np.float32)
    for i, v in enumerate(case_all_classes_proposed()):
        feats = v.class_probs @ embs  # features whose zero-shot class probabilities follow the case
        snip += [{"video_id": v.name, "snippet_index": j, "visual_embedding": f.tolist()} for j, f in enumerate(feats)]
        vids.append({"video_id": v.name, "name": v.name})
        labs.append({"name": v.name, "labels": v.labels, "split": "test", "n_frames": 64,
                     "segments": [{"start_frame": s, "end_frame": e, "label": lab} for s, e, lab in v.segments]})
    pq.write_table(pa.Table.from_pylist(snip), tmp_path / "snippets.parquet")
    pq.write_table(pa.Table.from_pylist(vids), tmp_path / "videos.parquet")
    append_labels(str(tmp_path / "labels"), make_table(labs), source="import:test")
    np.savez(tmp_path / "classes.npz", embeddings=embs, class_names=np.array(NAMES))
    assert main(["evaluate", "--snippets", str(tmp_path / "snippets.parquet"), "--videos", str(tmp_path / "videos.parquet"),
                 "--labels", str(tmp_path / "labels"), "--class-embeddings", str(tmp_path / "classes.npz")]) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert set(doc) >= {"vadclip_procedure", "corrected", "decisions"}
    assert "mAP, VadCLIP procedure (ucf; comparable with published tables)" in err and "mAP, corrected" in err
    d = doc["decisions"]  # zero-shot, no calibration: measured at the default threshold, and said so
    assert d["threshold"] == 0.5 and "decisions at threshold 0.500 (the default 0.5)" in err
    assert d["normal_videos"] + d["anomalous_videos"] == len(case_all_classes_proposed())
    assert main(["evaluate", "--snippets", str(tmp_path / "snippets.parquet"), "--videos", str(tmp_path / "videos.parquet"),
                 "--labels", str(tmp_path / "labels"), "--class-embeddings", str(tmp_path / "classes.npz"),
                 "--threshold", "0.99"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["decisions"]["threshold"] == 0.99 and "(--threshold)" in err
