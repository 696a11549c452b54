"""End to end with the `lite` profile (real pretrained weights) on a small sample archive in a real local
S3 server (SeaweedFS): `exvad synth` -> `exvad process` (zero-shot) -> `exvad train` (Ray Train on the
train split) -> `exvad rescore` (the trained detector over the stored embeddings, no decoding) ->
`exvad evaluate --scoring current` of the scores that rescore stored, on the test split (no model runs;
these videos have one window each, so the figures equal evaluating the checkpoint afresh). Asserts the frame AUC above chance (0.5) by a bound that held for
every seed tried.

Bounds (measured 2026-12-01 with detector seeds 0, 1 and 2 on this archive, synth seed 0, with the lite
profile's [appearance | motion] features and its detector reading the motion half; load 1-3): test frame AUC
0.685 / 0.692 / 0.693 (before motion, at load 12-23: 0.712 / 0.658 / 0.622), class accuracy 0.333 / 0.333 /
0.500 (6 test videos; bench/RESULTS.md, "Lite profile: detection quality"). The AUC bound sits below the
lowest of them. Class accuracy is NOT asserted above chance: 2 of 6 is what calling every video Normal gets
(2 of the 6 test videos are Normal), and two of the three seeds did no better, so no honest bound exists;
the test checks only that every test video gets a class from the label set. The issue-10 targets are for the
60-video archive (not met; RESULTS.md).
Runs in about 4-5 minutes on the 2-core machine (synth, process, Ray Train, rescore, evaluate)."""

from __future__ import annotations

import json
import os

import pytest

pytestmark = pytest.mark.slow

# 30 videos of 6-8 s (5 per anomaly class + 10 normal): 18 train / 6 val / 6 test (1 per anomaly class + 2 normal)
ARCHIVE = dict(videos_per_class=5, normal_videos=10, duration=(6.0, 8.0), seed=0, workers=2)
SEED = 0
MIN_AUC = 0.65  # lowest measured 0.685 (seed 0)


def process_archive(bucket: str) -> None:
    """`exvad synth` into the bucket, then `exvad process` with lite (zero-shot scoring)."""
    from exvad_ray.cli import main
    from exvad_ray.synth import SynthConfig, generate_archive

    generate_archive(bucket + "/archive", SynthConfig(**ARCHIVE))
    assert main(["process", "--archive", bucket + "/archive", "--index", bucket + "/index",
                 "--label-set", "synthetic", "--profile", "lite", "--json"]) == 0


def train_rescore_evaluate(bucket: str, seed: int, workdir: str) -> dict:
    """`exvad train` (seed), `exvad rescore` with the new detector, `exvad evaluate` of that detector on the
    test split; returns the evaluation report (dict)."""
    from exvad_ray.cli import main

    index, model = bucket + "/index", bucket + f"/model-{seed}"
    data = ["--snippets", index + "/snippets", "--videos", index + "/videos", "--labels",
            bucket + "/archive/annotations/labels", "--label-set", "synthetic", "--profile", "lite"]
    assert main(["train", *data, "--out", model, "--epochs", "20", "--lr", "1e-4", "--batch-size", "16",
                 "--layers", "0", "--seed", str(seed)]) == 0
    assert main(["rescore", "--index", index, "--detector", model, "--actors", "1"]) == 0
    out = os.path.join(workdir, f"eval_test_seed{seed}.json")
    assert main(["evaluate", "--scoring", "current", "--index", index, "--labels", bucket + "/archive/annotations/labels",
                 "--split", "test", "--out", out]) == 0  # the scores the rescore stored
    return json.load(open(out))


@pytest.fixture
def own_ray_session():
    """The CLI calls below start a local Ray session and leave it running (as a notebook would);
    end it so that later tests start their own."""
    yield
    import ray

    if ray.is_initialized():
        ray.shutdown()


def test_lite_end_to_end_detects_above_chance(s3_bucket, tmp_path, capsys, own_ray_session):
    process_archive(s3_bucket)
    report = train_rescore_evaluate(s3_bucket, SEED, str(tmp_path))
    printed = capsys.readouterr().out
    assert "scored, 0 failed" in printed and "no video decoded" in printed  # rescore read the index only
    assert report["n_videos"] == 6 and report["frame_level"], report
    assert report["auc"] >= MIN_AUC, report
    classes = {"Normal", "Fire", "Fighting", "CrowdRush", "FallingObject"}
    assert {v["predicted"] for v in report["videos"].values()} <= classes, report
    assert 0.0 <= report["accuracy"] <= 1.0  # not bounded above chance: see the module doc
