"""The declared stages (pipeline.stages): the chain is checked before anything runs, the declarations
say what the stage classes really do, both layouts run from them, and a failing model stage becomes
an errors row naming it."""

from __future__ import annotations

import io

import numpy as np
import pytest

from exvad_ray import index as idx
from exvad_ray.errors import ExvadError
from exvad_ray.pipeline import stages as st
from exvad_ray.video import SamplingConfig


def job(tmp_path, explainer: str, **kw) -> st.JobSpec:
    from exvad_ray.detector.localize import LocalizationConfig
    from exvad_ray.pipeline.scoring import scorer_class_names

    return st.JobSpec(index=str(tmp_path / "index"), run_id="run", profile="tiny", explainer=explainer,
                      detector=None, label_set="synthetic", sampling=SamplingConfig(),
                      class_names=tuple(scorer_class_names(None, "synthetic")),
                      localization=LocalizationConfig(), **kw)


@pytest.mark.parametrize("explainer", ["none", "transformers", "vllm"])
def test_every_chain_checks_and_drops_only_what_exists(tmp_path, explainer):
    chain = st.build_chain(job(tmp_path, explainer))
    after = st.check_chain(chain)
    assert chain[0].name == "decode" and chain[-1].name == "assemble"
    assert not {"frames", "keyframes", "keyframe_embedding"} & after[-1]  # heavy columns never reach assembly
    assert [s.name for s in chain][2:-2] == ([] if explainer == "none" else ["caption", "clean", "explain",
                                                                               "embed_text"])


def test_a_missing_input_column_fails_when_the_dataset_is_built(tmp_path):
    from exvad_ray.pipeline.job import build_dataset

    class NeedsDepth(st.Stage):
        name = "depth_score"
        reads = ("depth_map",)

    chain = st.build_chain(job(tmp_path, "none"))
    chain.insert(2, NeedsDepth(chain[0].job))
    plan = {"fuse": True, "torch_threads": 1, "decode_tasks": 1, "decode_cpu": 1.0, "stages": {}}
    with pytest.raises(ExvadError, match=r"stage 'depth_score' reads column 'depth_map', which no earlier stage"):
        build_dataset([{"uri": "x"}], chain, plan, 2)
    # a stage dropping a column that is not there (the old `--explainer none` KeyError) fails the same way
    chain = st.build_chain(job(tmp_path, "none"))
    chain[1].drops = ("frames", "keyframe_embedding")
    with pytest.raises(ExvadError, match=r"stage 'visual' drops column 'keyframe_embedding', which is not there"):
        st.check_chain(chain)


def _decoded_window(tmp_path, spec: st.JobSpec, n_frames: int = 100) -> dict:
    from exvad_ray.pipeline.fused import batch_rows, one_row_batch
    from exvad_ray.video.badfiles import encode_test_video

    path = tmp_path / "v.mp4"
    encode_test_video(str(path), n_frames)
    item = batch_rows({"uri": np.array([str(path)]), "video_id": np.array(["00000000-0000-0000-0000-00000000000a"]),
                       "size": np.array([1]), "etag": np.array([""]), "date": np.array(["2026-01-01"]),
                       "camera": np.array(["c"]), "processing_date": np.array(["2026-01-01"])})[0]
    rows = list(st.DecodeStage(spec).instance()(item))
    assert len(rows) == 1
    return one_row_batch(rows[0])


def test_declarations_match_what_the_stage_classes_do(tiny_dir, tmp_path):
    """Each stage of the transformers chain, run on a real decoded window, writes what it declares and
    the batch after it holds exactly the columns check_chain predicts."""
    spec = job(tmp_path, "transformers")
    chain = st.build_chain(spec)
    after = st.check_chain(chain)
    batch = _decoded_window(tmp_path, spec)
    assert set(batch) - set(st.ITEM_COLUMNS) == set(chain[0].writes)
    for stage, expected in zip(chain[1:-1], after[1:-1]):
        batch = stage.instance()(batch)
        assert set(stage.writes) <= set(batch), stage.name
        for col in stage.drops:
            batch.pop(col)
        assert set(batch) == expected, (stage.name, set(batch) ^ expected)
    assert batch["error"][0] is None and len(batch["anomaly_scores"][0]) == 6


def test_a_model_stage_failure_becomes_an_errors_row(tiny_dir, tmp_path):
    from exvad_ray.pipeline.fused import FusedModelStage

    spec = job(tmp_path, "none")
    chain = st.build_chain(spec)
    batch = _decoded_window(tmp_path, spec)
    batch["frames"][0] = batch["frames"][0].astype(np.float32)  # a decoder bug: float frames
    out = FusedModelStage(chain[1:-1])(batch)
    assert out["error"][0].startswith("visual: ExvadError")
    summary = chain[-1].instance()(out)
    assert summary["status"] == ["error"] and summary["stage"] == ["visual"]
    errors = idx.read_table(spec.index, "errors").to_pylist()
    assert [(e["stage"], e["reason"], e["error_type"]) for e in errors] == [("visual", "stage_failed", "StageError")]
    assert idx.read_table(spec.index, "videos").num_rows == 0


def test_a_video_longer_than_one_window(tmp_path):
    """262 snippets = windows of 256 + 6: a flagged interval across the boundary is one segment, its
    peak (in window 1) takes window 1's explanation and thumbnail; snippets keep one numbering."""
    from PIL import Image

    from exvad_ray.detector.localize import LocalizationConfig
    from exvad_ray.pipeline.assemble import VideoContext, build_video_tables
    from exvad_ray.pipeline.decode import jpeg_thumbs

    names = ["Normal", "Fight"]
    n, d, fps = 262, 8, 25.0
    scores = np.full(n, 0.1, np.float32)
    scores[250:260] = 0.8
    scores[258] = 0.95  # the peak, in window 1 (snippet 2 of it)
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(n, d)).astype(np.float32)
    windows = []
    for w, (a, b) in enumerate([(0, 256), (256, n)]):
        k = b - a
        frames = np.zeros((k, 8, 8, 3), np.uint8)
        frames[:, :, :, 0] = np.arange(a, b)[:, None, None] % 256  # each thumbnail tells its snippet
        blob, offsets = jpeg_thumbs(frames, size=8, quality=100)
        probs = np.tile([0.2, 0.8], (k, 1)).astype(np.float32)
        windows.append({
            "video_id": "00000000-0000-0000-0000-0000000000bb", "uri": "file:///a/long.mp4", "window_index": w,
            "n_windows": 2, "n_snippets": k, "start_s": np.arange(a, b) * 16 / fps, "end_s": np.arange(a + 1, b + 1) * 16 / fps,
            "frame_index": np.arange(a, b) * 16 + 8, "thumbs_blob": blob, "thumbs_offsets": offsets,
            "visual_embedding": feats[a:b], "visual_model": "m", "anomaly_scores": scores[a:b], "class_probs": probs,
            "explanation": f"window {w}", "fps": fps, "n_frames": n * 16, "width": 8, "height": 8, "codec": "h264",
            "size": 1, "etag": "", "date": "2026-01-01", "camera": "c", "processing_date": "2026-01-01"})
    ctx = VideoContext(str(tmp_path / "index"), "run", names, "zero-shot", "synthetic", LocalizationConfig())
    tables, summary = build_video_tables(ctx, windows)
    (part, seg), = tables["segments"]
    assert seg["first_snippet"] == [250] and seg["last_snippet"] == [259] and seg["label"] == ["Fight"]
    assert seg["start_s"] == [250 * 16 / fps] and seg["end_s"] == [260 * 16 / fps]  # [start_s, end_s)
    assert seg["peak_s"] == [258 * 16 / fps] and seg["explanation"] == ["window 1"]
    red = np.asarray(Image.open(io.BytesIO(seg["thumbnail_jpeg"][0])))[..., 0].mean()
    assert abs(red - 258 % 256) <= 3  # window 1's thumbnail of snippet 258
    expected_emb = feats[250:260].mean(0)
    np.testing.assert_allclose(seg["visual_embedding"][0], expected_emb / np.linalg.norm(expected_emb), atol=1e-6)
    idx.write_video_tables(ctx.index, windows[0]["video_id"], tables)
    snip = idx.read_table(ctx.index, "snippets", ["snippet_index", "window_index"]).sort_by("snippet_index")
    assert snip.column("snippet_index").to_pylist() == list(range(n))
    assert snip.column("window_index").to_pylist() == [0] * 256 + [1] * 6
    video = idx.read_table(ctx.index, "videos").to_pylist()[0]
    assert video["n_windows"] == 2 and video["n_snippets"] == n and video["n_segments"] == 1
    assert video["explanation"] == "[0:00-2:44] window 0\n[2:44-2:48] window 1"


@pytest.fixture(scope="module")
def ray_with_gpus():
    """A real local Ray that declares 2 GPUs: the per-stage layout gets its GPU shares; no GPU exists
    here, so the models (profile device auto) run on CPU."""
    import ray

    ray.init(address="local", num_cpus=2, num_gpus=2, object_store_memory=400 * 1024**2, include_dashboard=False)
    yield
    ray.shutdown()


@pytest.mark.slow
@pytest.mark.parametrize("explainer", ["none", "transformers"])
def test_per_stage_layout_end_to_end(ray_with_gpus, tiny_dir, tmp_path_factory, explainer):
    """`exvad process --fuse-stages no` for each explainer the CPU environment runs (vLLM: see
    tests/models/test_vllm_cpu.py): a 2-window video, a short one and a bad file."""
    from exvad_ray.pipeline.job import ProcessConfig, run_process
    from exvad_ray.video.badfiles import encode_test_video

    archive = tmp_path_factory.mktemp("archive")
    (archive / "cam1").mkdir()
    long_video = explainer == "none"  # the 2-window video without captions keeps the test short
    if long_video:
        encode_test_video(str(archive / "cam1" / "long.mp4"), 262 * 16, width=32, height=24)
    encode_test_video(str(archive / "cam1" / "short.mp4"), 100, seed=1)
    (archive / "cam1" / "bad.mp4").write_bytes(b"\x00" * 4096)
    index = str(tmp_path_factory.mktemp("index"))
    cfg = ProcessConfig(archive=str(archive), index=index, profile="tiny", label_set="synthetic", explainer=explainer,
                        fuse_stages=False, progress_interval_s=60)
    s = run_process(cfg)
    assert (s["videos_processed"], s["videos_failed"], s["snippets"]) == (1 + long_video, 1, 6 + 262 * long_video)
    videos = {v["name"]: v for v in idx.read_table(index, "videos").to_pylist()}
    errors = idx.read_table(index, "errors").to_pylist()
    assert [(e["stage"], e["uri"].rsplit("/", 1)[-1]) for e in errors] == [("decode", "bad.mp4")]
    captions = idx.read_table(index, "captions").to_pylist()
    if explainer == "none":
        assert videos["long"]["n_windows"] == 2 and videos["long"]["n_snippets"] == 262
        snip = idx.read_table(index, "snippets", ["uri", "window_index"]).to_pylist()
        assert sum(1 for r in snip if r["uri"].endswith("long.mp4") and r["window_index"] == 1) == 6
        assert {c["caption"] for c in captions} == {None}  # keyframe times only
        assert [(v["explanation"], v["explanation_embedding"]) for v in videos.values()] == [("", [])] * 2
    else:
        assert captions and all(c["clean_caption"] is not None for c in captions)
        v = videos["short"]
        assert v["explanation_model"] and v["caption_model"] and len(v["explanation_embedding"]) == 64
