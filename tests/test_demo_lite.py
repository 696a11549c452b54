"""End to end with the `lite` profile (real pretrained weights), through the demo's own code: a small
sample archive in a real local S3 server (SeaweedFS), `process` (zero-shot), Ray Train on the train
split, rescoring with the trained detector, evaluation on the test split. Asserts detection clearly
above chance, and that the terminal shows the project's lines while Ray's output goes to the log."""

from __future__ import annotations

import pytest

# NOT DONE: these bounds are provisional. The test was written but never ran to the end in its session
# (the shared 2-core machine sat at load 50-60 and Ray's node startup timed out), so it is skipped until
# someone runs it over a few seeds and sets bounds that hold for all of them.
MIN_AUC, MIN_ACCURACY = 0.75, 0.5


@pytest.mark.slow
@pytest.mark.skip(reason="not done: bounds not yet measured (see the comment above)")
def test_lite_demo_detects_above_chance(tmp_path, capsys):
    from exvad_ray.demo import run_demo
    from exvad_ray.synth import SynthConfig

    synth = SynthConfig(videos_per_class=4, normal_videos=8, duration=(6.0, 8.0), workers=2)
    out = run_demo(str(tmp_path / "demo"), synth=synth, extras=False, seed=0)
    printed = capsys.readouterr().out
    assert out["processed"] == out["rescored"] == 24 and out["failed"] == 0
    assert out["test_videos"] >= 5
    assert out["auc"] >= MIN_AUC, out
    assert out["accuracy"] >= MIN_ACCURACY, out  # chance: 1/5 classes
    assert "frame AUC" in printed and "class accuracy" in printed and "timeline plots" in printed
    assert "logging_progress" not in printed and "Loading weights" not in printed  # Ray's and libraries' lines
    log = open(out["log"]).read()
    assert "step 2/5" in log and "[exvad] videos" in log
