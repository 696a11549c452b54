"""Pipeline pieces without Ray: localisation, partitions, schemas, per-video files, compaction."""

import numpy as np
import pytest

from exvad_ray.errors import ExvadError
from exvad_ray import index as idx
from exvad_ray.detector.localize import LocalizationConfig, localize
from exvad_ray.index.partitions import PartitionRules
from exvad_ray.index.schemas import TABLES, arrow_schema, conform


def test_localize_runs_gaps_and_short_runs():
    s = np.array([0.1, 0.7, 0.8, 0.2, 0.9, 0.1, 0.1, 0.95, 0.1, 0.1, 0.6, 0.1])
    cfg = LocalizationConfig(threshold=0.5, min_snippets=2, single_snippet_score=0.9, max_gap=1)
    # 1-2 and 4 merge across a one-snippet gap; 7 is alone but peaks at 0.95; 10 alone at 0.6 dropped
    assert localize(s, cfg) == [(1, 4), (7, 7)]
    assert localize(np.zeros(5), cfg) == []


def test_partitions_from_path():
    rules = PartitionRules("s3://b/footage", fallback_date="2026-11-26")
    assert rules.date("s3://b/footage/cam01/2026-11-02/x.mp4") == "2026-11-02"
    assert rules.date("s3://b/footage/cam01/20251231_120000.mp4") == "2025-12-31"
    assert rules.date("s3://b/footage/cam01/x.mp4") == "2026-11-26"
    assert rules.date("s3://b/footage/2026-13-45/x.mp4") == "2026-11-26"  # not a date
    assert rules.camera("s3://b/footage/cam 01/2026-11-02/x.mp4") == "cam_01"
    assert rules.camera("s3://b/footage/x.mp4") == "root"
    custom = PartitionRules("/a", "2026-01-01", camera_pattern=r"(?P<camera>site\d+)")
    assert custom.camera("/a/x/site7/y.mp4") == "site7"


def test_every_table_has_a_schema():
    for t in TABLES:
        assert "video_id" in arrow_schema(t).names or t == "runs"
    with pytest.raises(ExvadError, match="missing"):
        conform("errors", {"video_id": ["x"]})


def _errors_row(vid):
    return {"video_id": [vid], "uri": ["u"], "size_bytes": [1], "stage": ["decode"], "error_type": ["E"],
            "reason": ["empty"], "message": ["m"], "detail": [None], "run_id": ["r"], "processed_at": [None]}


@pytest.mark.parametrize("where", ["local", "s3"])
def test_per_video_files_are_idempotent_and_compact_safely(tmp_path, where, request):
    index = str(tmp_path / "index") if where == "local" else request.getfixturevalue("s3_bucket") + "/index"
    ids = [f"00000000-0000-0000-0000-00000000000{i}" for i in range(4)]
    for vid in ids:
        idx.write_video_tables(index, vid, {"errors": ({"date": "2026-01-01"}, _errors_row(vid))})
    idx.write_video_tables(index, ids[0], {"errors": ({"date": "2026-01-01"}, _errors_row(ids[0]))})  # rerun
    assert idx.done_video_ids(index) == set(ids)
    assert idx.read_table(index, "errors").num_rows == 4
    merged = idx.compact(index, tables=["errors"])
    assert merged == {"errors": 4}
    files = idx.list_files(index, "errors")
    assert len(files) == 1 and "compact-" in files[0]
    t = idx.read_table(index, "errors")
    assert sorted(t.column("video_id").to_pylist()) == ids
    assert set(t.column("date").to_pylist()) == {"2026-01-01"}
    assert idx.done_video_ids(index) == set(ids)
    # a video rewritten after compaction: the new file wins, no duplicate after the next compaction
    idx.write_video_tables(index, ids[1], {"errors": ({"date": "2026-01-01"}, _errors_row(ids[1]))})
    idx.compact(index, tables=["errors"], min_files=1)
    assert sorted(idx.read_table(index, "errors").column("video_id").to_pylist()) == ids


def test_interrupted_compaction_is_finished_not_repeated(tmp_path):
    index = str(tmp_path / "index")
    ids = [f"00000000-0000-0000-0000-00000000001{i}" for i in range(3)]
    for vid in ids:
        idx.write_video_tables(index, vid, {"errors": ({"date": "2026-01-02"}, _errors_row(vid))})
    parts = idx.list_files(index, "errors")
    contents = {p: open(p, "rb").read() for p in parts}
    idx.compact(index, tables=["errors"])
    for p, data in contents.items():  # simulate a crash after the merged file, before the deletes
        open(p, "wb").write(data)
    assert idx.read_table(index, "errors", current=False).num_rows == 6  # the files hold duplicates ...
    assert idx.read_table(index, "errors").num_rows == 3  # ... that readers do not see (newest row per video)
    idx.compact(index, tables=["errors"])
    assert idx.read_table(index, "errors", current=False).num_rows == 3


def test_thumbnails_blob_roundtrip():
    import io

    from PIL import Image

    from exvad_ray.pipeline.decode import THUMB_SIZE, jpeg_thumbs, thumb_at

    frames = np.random.default_rng(0).integers(0, 255, (3, 224, 224, 3), dtype=np.uint8)
    blob, offsets = jpeg_thumbs(frames)
    assert offsets.tolist()[0] == 0 and offsets[-1] == len(blob) and len(offsets) == 4
    for i in range(3):
        img = Image.open(io.BytesIO(thumb_at(blob, offsets, i)))
        assert img.format == "JPEG" and img.size == (THUMB_SIZE, THUMB_SIZE)
    odd = np.random.default_rng(1).integers(0, 255, (1, 100, 150, 3), dtype=np.uint8)  # not 2x: resized
    assert Image.open(io.BytesIO(thumb_at(*jpeg_thumbs(odd), 0))).size == (THUMB_SIZE, THUMB_SIZE)


def test_run_id_ignores_speed_knobs():
    from exvad_ray.pipeline.job import ProcessConfig

    base = ProcessConfig(archive="s3://a/b", index="s3://i/r")
    same = ProcessConfig(archive="s3://a/b", index="s3://i/r", model_actors=4, decode_tasks=8, fuse_stages=False,
                         limit=3, retry_errors=True)
    assert base.run_id() == same.run_id()
    assert base.run_id() != ProcessConfig(archive="s3://a/b", index="s3://i/r", label_set="synthetic").run_id()


@pytest.mark.parametrize("cpus", [1.0, 2.0, 16.0])
def test_cpu_plan_decodes_on_every_core_within_the_cluster(cpus):
    """Without GPUs: one decode task per core, and all logical reservations fit the cluster."""
    from exvad_ray.pipeline.job import ProcessConfig, plan_resources

    plan = plan_resources(ProcessConfig(archive="a", index="i"), cpus, 0.0)
    assert plan["fuse"] and plan["decode_tasks"] == max(1, int(cpus))
    assert list(plan["stages"]) == ["assemble"]  # every other stage runs inside the decode+model actors
    reserved = plan["decode_tasks"] * plan["decode_cpu"] + plan["stages"]["assemble"]["num_cpus"]
    assert reserved <= cpus + 1e-9
    assert plan["torch_threads"] >= 1


def test_gpu_plan_keeps_a_pool_per_stage():
    from exvad_ray.pipeline.job import ProcessConfig, plan_resources

    plan = plan_resources(ProcessConfig(archive="a", index="i"), 16.0, 1.0)
    assert not plan["fuse"] and plan["decode_tasks"] >= 1
    stages = plan["stages"]
    assert list(stages) == ["visual", "caption", "clean", "explain", "embed_text", "score", "assemble"]
    # GPU shares in proportion to the declared weights (visual 0.5, caption 1, explain 1), fitting 1 GPU
    assert {k: v["num_gpus"] for k, v in stages.items() if v["num_gpus"]} == {"visual": 0.2, "caption": 0.4,
                                                                            "explain": 0.4}
    assert sum(v["num_gpus"] * v["actors"] for v in stages.values()) <= 1.0 + 1e-9
    reserved = sum(v["num_cpus"] * v["actors"] for v in stages.values()) + plan["decode_tasks"] * plan["decode_cpu"]
    assert reserved <= 16.0
    fixed = plan_resources(ProcessConfig(archive="a", index="i", gpu_per_stage=0.25, explainer="none"), 16.0, 1.0)
    assert {k: v["num_gpus"] for k, v in fixed["stages"].items() if v["num_gpus"]} == {"visual": 0.25}
    # vLLM engines take whole GPUs (tiny profile: 1 engine x 1 GPU); the fractional stages share the rest
    vllm = plan_resources(ProcessConfig(archive="a", index="i", explainer="vllm"), 16.0, 2.0)
    assert {k: v["num_gpus"] for k, v in vllm["stages"].items() if v["num_gpus"]} == {"visual": 0.3333,
                                                                                     "caption": 0.6667}


def test_decode_and_model_stage_in_process(tiny_dir, tmp_path):
    """The CPU layout's actor: a video in, its windows out with features and scores, no frames; a bad
    file gives no rows and one `errors` row with its reason."""
    from exvad_ray.pipeline.fused import DecodeAndModelStage, batch_rows, one_row_batch
    from exvad_ray.pipeline.stages import JobSpec, build_chain
    from exvad_ray.video import SamplingConfig
    from exvad_ray.video.badfiles import encode_test_video

    good, bad = tmp_path / "good.mp4", tmp_path / "bad.mp4"
    encode_test_video(str(good), 100)
    bad.write_bytes(b"not a video at all")
    index = str(tmp_path / "index")
    items = {"uri": np.array([str(good), str(bad)]), "video_id": np.array(["g", "b"]),
             "size": np.array([1, 2]), "etag": np.array(["", ""]), "date": np.array(["2026-01-01"] * 2),
             "camera": np.array(["c", "c"]), "processing_date": np.array(["2026-01-01"] * 2)}
    rows = batch_rows(items)
    assert rows[0]["size"] == 1 and type(rows[0]["size"]) is int and rows[1]["uri"] == str(bad)
    chain = build_chain(JobSpec(index, "run", "tiny", "none", None, "synthetic", SamplingConfig()))
    stage = DecodeAndModelStage(chain[:-1], 1)
    out = list(stage(items))
    assert len(out) == 1  # 100 frames: one window of the good video, nothing for the bad one
    win = out[0]
    assert "frames" not in win and "keyframes" not in win
    assert win["video_id"][0] == "g" and win["visual_embedding"][0].shape == (6, win["visual_embedding"][0].shape[1])
    assert len(win["anomaly_scores"][0]) == 6 and np.all((win["anomaly_scores"][0] >= 0) & (win["anomaly_scores"][0] <= 1))
    errors = idx.read_table(index, "errors").to_pylist()
    assert [(e["video_id"], e["reason"]) for e in errors] == [("b", "not_video")]
    batch = one_row_batch({"a": 1, "b": np.zeros(3), "c": b"x", "d": "s"})
    assert batch["a"].dtype.kind == "i" and batch["b"].dtype == object and batch["c"][0] == b"x"
