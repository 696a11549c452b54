"""bench/gpu_pipeline.py --dry-run: the GPU benchmark's whole code path on the CPU with tiny shapes -
random-init loading through the Ray worker hook, the real archive job with the per-stage layout
(one actor pool per model stage), per-stage traces, isolated rates, the derived figures and the
results.json keys - so that the one GPU run it is written for does not fail on a bug."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import gpu_pipeline  # noqa: E402

STAGES = {name for _, name in gpu_pipeline.TRACED}


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu-pipeline")
    out = tmp / "result.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               PYTHONFAULTHANDLER="1")
    deadline = time.monotonic() + 840  # pytest's own limit is 900 s
    for attempt in (1, 2):
        proc = subprocess.run(
            [sys.executable, str(ROOT / "bench" / "gpu_pipeline.py"), "--dry-run", "--videos-per-class", "1",
             "--normal-videos", "0", "--classes", "Fighting", "--duration", "8", "--copies", "2", "--repeats", "1",
             "--work", str(tmp / f"work{attempt}"), "--out", str(out)],
            env=env, capture_output=True, text=True, timeout=max(1, deadline - time.monotonic()))
        # One of six runs on the loaded 2-core VM died of SIGSEGV (cause not found; faulthandler on):
        # a death by signal is retried once and shown; any other failure is not.
        if proc.returncode >= 0 or attempt == 2:
            break
        print(f"gpu_pipeline dry run killed by signal {-proc.returncode}; retrying:\n{proc.stderr[-3000:]}")
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text())


@pytest.mark.slow
def test_dry_run_runs_every_stage_and_measures_it(dry_run):
    assert dry_run["dry_run"] is True and dry_run["device"] == "cpu"
    (job,) = dry_run["jobs"]
    assert job["plan"]["fuse"] is False  # the per-stage layout, as on the GPU
    assert job["videos"] == 2 and job["failed"] == 0 and job["summary"]["errors_by_reason"] == {}
    assert set(job["stages"]) == STAGES
    for name, s in job["stages"].items():
        assert s["calls"] >= 1 and 0 <= s["busy_fraction"] <= 1, (name, s)
    # The job's own counts: one CLIP image per snippet plus the keyframes, one caption per keyframe,
    # one explanation per window (each 8 s video is one window).
    assert job["captions"] > 0 and job["clip_images"] == job["summary"]["snippets"] + job["captions"]
    assert job["explanations"] == 2
    assert all(v > 0 for v in dry_run["isolated"].values())
    assert job["video_hours_per_gpu_hour"] > 0 and 0 < job["ratio_to_isolated_sum"]


@pytest.mark.slow
def test_results_keys_and_dry_runs_are_not_recorded(dry_run):
    flat = gpu_pipeline.flat_keys(dry_run)
    assert flat["gpu_pipeline.video_hours_per_gpu_hour"] == dry_run["jobs"][0]["video_hours_per_gpu_hour"]
    assert "gpu_pipeline.busy_fraction.ClipImageStage" in flat
    with pytest.raises(SystemExit, match="not recorded"):
        gpu_pipeline.record_result(dry_run)


def test_paper_shaped_configs():
    """The shapes the GPU run builds: Llama-3.1-8B (8.0B parameters) and BLIP-2 OPT-2.7B (3.9B)."""
    from stages import blip2_opt27b_config  # bench/stages.py
    from transformers import LlamaConfig

    cfg = gpu_pipeline._llama_config(False, {"bos_token_id": 1, "eos_token_id": 1, "pad_token_id": 0})
    assert isinstance(cfg, LlamaConfig)
    h, f, n, v = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers, cfg.vocab_size
    kv = h // cfg.num_attention_heads * cfg.num_key_value_heads
    params = 2 * v * h + n * (2 * h * h + 2 * h * kv + 3 * h * f)
    assert 7.9e9 < params < 8.1e9
    b = blip2_opt27b_config()
    assert (b.text_config.hidden_size, b.text_config.num_hidden_layers, b.num_query_tokens) == (2560, 32, 32)
