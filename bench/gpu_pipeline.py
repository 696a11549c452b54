"""The archive job end to end on one GPU, per-stage layout, paper-shaped models with random weights.

    bash bench/gpu_pipeline.sh run          on a GPU host (installs what it lacks, then runs this)
    python bench/gpu_pipeline.py --dry-run  the same code path on the CPU with tiny shapes (CI)
    python bench/gpu_pipeline.py --record OUT.json   record a GPU run's JSON into bench/RESULTS.md

What runs: `run_process` (the real archive job: Ray Data, decode tasks, one actor pool per model
stage, `fuse_stages=False`) on a synthetic archive generated on local disk, with a profile whose
models have the paper's shapes - CLIP ViT-B-16 (open_clip, random init), BLIP-2 OPT-2.7B and an
8B Llama-3.1-shaped explainer (transformers backend: vLLM is not on the lent hosts). The two
transformers models are built from their configs with random weights directly on the device:
each Ray worker runs `worker_setup` (Ray's `worker_process_setup_hook`), which makes
`from_pretrained` of a folder marked `RANDOM_INIT` call `_from_config` under `torch.device(cuda)`
instead of reading weights (throughput does not depend on the weights; nothing is downloaded).
Generation is forced to the profile's `max_new_tokens` (random models stop at random).

Measured, per `--batch-windows` value (windows per model batch; one job each, same run):
- video-hours per GPU-hour end to end (job wall clock, start-up included) and in steady state;
- each stage's busy fraction: time inside the stage's `__call__` (model load excluded) / job wall
  / the stage's actors (decode: / its task slots), from per-process traces the hook writes;
- GPU memory: peak `max_memory_allocated` per stage process and NVML's device peak, and NVML
  utilisation;
- the ratio to the sum of the stages' isolated rates: after the jobs, each GPU model is timed alone
  in this process at its profile batch size (CLIP images/s, captions/s, explanations/s); with the
  job's own counts (CLIP images, captions, explanations) that gives the GPU-seconds the work costs
  with the stages back to back and nothing else, so ratio = end-to-end rate / that rate.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
SECTION = "Archive job on one GPU (paper shapes, per-stage layout)"
MARKER = "RANDOM_INIT"  # folder holds a config + tokenizer; weights are random, made on the device
TRACE_ENV = "EXVAD_GPU_PIPELINE_TRACE"
# Stage classes whose calls are traced: (module, class, what one row is).
TRACED = [("exvad_ray.pipeline.decode", "DecodeStage"), ("exvad_ray.models.stages", "ClipImageStage"),
          ("exvad_ray.models.stages", "CaptionStage"), ("exvad_ray.models.stages", "CaptionCleaningStage"),
          ("exvad_ray.models.stages", "ExplanationStage"), ("exvad_ray.models.stages", "TextEmbeddingStage"),
          ("exvad_ray.pipeline.scoring", "ScoreStage"), ("exvad_ray.pipeline.assemble", "VideoAssembler")]
GPU_STAGES = ("ClipImageStage", "CaptionStage", "ExplanationStage")


# ------------------------------------------------------------------ in every Ray worker (and here)

def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _patch_random_init() -> None:
    """`from_pretrained(folder with RANDOM_INIT)` -> `_from_config` on the device, random weights."""
    import torch
    from transformers import AutoConfig, PreTrainedModel

    if getattr(PreTrainedModel, "_exvad_random_init", False):
        return
    original = PreTrainedModel.from_pretrained.__func__

    def from_pretrained(cls, path, *args, **kwargs):
        marker = os.path.join(str(path), MARKER)
        if not os.path.isfile(marker):
            return original(cls, path, *args, **kwargs)
        opts = json.loads(Path(marker).read_text() or "{}")
        config = kwargs.get("config") or AutoConfig.from_pretrained(path)
        dtype = kwargs.get("dtype") or kwargs.get("torch_dtype") or torch.float32
        torch.manual_seed(0)
        with torch.device(_device()):
            model = cls._from_config(config, dtype=dtype)
        if opts.get("min_new_tokens"):
            model.generation_config.min_new_tokens = opts["min_new_tokens"]
        return model

    PreTrainedModel.from_pretrained = classmethod(from_pretrained)
    PreTrainedModel._exvad_random_init = True


def _count(batch: Any, column: str) -> int:
    try:
        return int(sum(len(x) for x in batch[column] if x is not None))
    except (KeyError, TypeError):
        return 0


def _patch_tracing(trace_dir: str) -> None:
    """Wrap each traced stage's `__call__` (and `_load`) to append one JSON line per call to
    `trace_dir/<pid>.jsonl`: stage, start, end, model-load seconds inside, rows, CLIP images /
    captions in the batch, and the process's peak CUDA memory."""
    import importlib
    import inspect

    path = os.path.join(trace_dir, f"{os.getpid()}.jsonl")
    state = {"load_s": 0.0}

    def emit(stage: str, t0: float, t1: float, rows: int, images: int, captions: int) -> None:
        gpu = None
        try:
            import torch

            if torch.cuda.is_initialized():
                gpu = int(torch.cuda.max_memory_allocated())
        except Exception:  # noqa: BLE001
            pass
        rec = {"stage": stage, "pid": os.getpid(), "t0": t0, "t1": t1, "load_s": state["load_s"], "rows": rows,
               "images": images, "captions": captions, "gpu_peak": gpu}
        state["load_s"] = 0.0
        with open(path, "a") as f:
            f.write(json.dumps(rec) + "\n")

    for module, name in TRACED:
        cls = getattr(importlib.import_module(module), name, None)
        if cls is None or getattr(cls, "_exvad_traced", False):
            continue  # a stage class renamed elsewhere is simply not traced (the test names it)
        call = cls.__call__
        if inspect.isgeneratorfunction(call):
            def traced(self, item, _call=call, _name=name):
                t0, rows = time.time(), 0
                for out in _call(self, item):
                    rows += 1
                    yield out
                emit(_name, t0, time.time(), rows, 0, 0)
        else:
            def traced(self, batch, _call=call, _name=name):
                t0 = time.time()
                out = _call(self, batch)
                images = _count(batch, "frames") + _count(batch, "keyframes") if _name == "ClipImageStage" else 0
                captions = _count(batch, "keyframes") if _name == "CaptionStage" else 0
                emit(_name, t0, time.time(), len(next(iter(batch.values()))) if batch else 0, images, captions)
                return out
        cls.__call__ = traced
        if hasattr(cls, "_load"):
            load = cls._load

            def traced_load(self, _load=load):
                t0 = time.time()
                try:
                    return _load(self)
                finally:
                    state["load_s"] += time.time() - t0
            cls._load = traced_load
        cls._exvad_traced = True


def worker_setup() -> None:
    """Ray's worker_process_setup_hook: random-init loading, and stage tracing when asked."""
    _patch_random_init()
    if os.environ.get(TRACE_ENV):
        _patch_tracing(os.environ[TRACE_ENV])


# ------------------------------------------------------------------ models and profile

def _llama_config(tiny: bool, ids: dict[str, Any]):
    from transformers import LlamaConfig

    if tiny:
        shape = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2)
    else:  # Llama-3.1-8B
        shape = dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                     num_key_value_heads=8)
    return LlamaConfig(vocab_size=128256, max_position_embeddings=8192, rope_theta=500000.0, rms_norm_eps=1e-5,
                       tie_word_embeddings=False, architectures=["LlamaForCausalLM"], **shape, **ids)


def build_models(root: Path, tiny_dir: Path, tiny: bool, new_tokens: dict[str, int]) -> dict[str, str]:
    """Folders the profile points at: tokenizers/processors from the tiny models (ids fit the big
    vocabularies), configs of the paper's shapes (or tiny ones), a RANDOM_INIT marker, no weights."""
    sys.path.insert(0, HERE)
    from stages import blip2_opt27b_config  # noqa: E402  (bench/stages.py: the paper's BLIP-2 config)

    out = {}
    cap = root / "captioner"
    shutil.copytree(tiny_dir / "captioner", cap, ignore=shutil.ignore_patterns("*.safetensors"))
    tiny_cfg = json.loads((cap / "config.json").read_text())
    if not tiny:
        cfg = blip2_opt27b_config().to_dict()
        cfg["image_token_index"] = tiny_cfg["image_token_index"]  # the tiny tokenizer's <image> id
        cfg["architectures"] = ["Blip2ForConditionalGeneration"]
        (cap / "config.json").write_text(json.dumps(cfg))
        proc = json.loads((cap / "processor_config.json").read_text())
        proc["num_query_tokens"] = cfg["num_query_tokens"]
        proc["image_processor"]["size"] = {"height": 224, "width": 224}
        (cap / "processor_config.json").write_text(json.dumps(proc))
    (cap / MARKER).write_text(json.dumps({"min_new_tokens": new_tokens["captioner"]}))
    out["captioner"] = str(cap)

    llm = root / "llm"
    shutil.copytree(tiny_dir / "llm", llm, ignore=shutil.ignore_patterns("*.safetensors", "config.json"))
    t = json.loads((tiny_dir / "llm" / "config.json").read_text())
    ids = {"bos_token_id": t.get("bos_token_id") or t["eos_token_id"], "eos_token_id": t["eos_token_id"],
           "pad_token_id": t.get("pad_token_id", 0)}
    _llama_config(tiny, ids).save_pretrained(llm)
    (llm / MARKER).write_text(json.dumps({"min_new_tokens": new_tokens["explainer"]}))
    out["llm"] = str(llm)
    return out


def write_profile(path: Path, models: dict[str, str], tiny_dir: Path, tiny: bool) -> str:
    """The paper profile's settings (batches, tokens, bf16) with the folders above; transformers explainer."""
    import yaml

    paper = yaml.safe_load(open(os.path.join(HERE, "..", "configs", "profiles", "paper.yaml")))
    prof = {"name": "gpu-pipeline-tiny" if tiny else "gpu-pipeline-paper-shapes",
            "description": "paper shapes, random weights (bench/gpu_pipeline.py)",
            "clip": dict(paper["clip"], pretrained=None, **({"model": f"local-dir:{tiny_dir / 'clip'}",
                                                              "dtype": "fp32", "batch_size": 64} if tiny else {})),
            "captioner": dict(paper["captioner"], model=models["captioner"]),
            "explainer": {k: v for k, v in paper["explainer"].items() if k != "vllm"}
            | {"backend": "transformers", "model": models["llm"]},
            "label_k": paper.get("label_k", 4)}
    if tiny:
        prof["captioner"].update(dtype="fp32", batch_size=8, max_new_tokens=4)
        prof["explainer"].update(dtype="fp32", batch_size=4, max_new_tokens=4)
    path.write_text(yaml.safe_dump(prof, sort_keys=False))
    return str(path)


# ------------------------------------------------------------------ measuring

class GpuSampler:
    """NVML device memory (peak) and utilisation (mean) every `interval` s, when NVML is there."""

    def __init__(self, interval: float = 0.5):
        self.interval, self.peak, self.util, self.ok = interval, 0, [], False
        self._stop = threading.Event()
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml, self._h = pynvml, pynvml.nvmlDeviceGetHandleByIndex(0)
            self.ok = True
        except Exception:  # noqa: BLE001 - no NVML (CPU dry run): nothing sampled
            pass
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self._nvml.nvmlDeviceGetMemoryInfo(self._h).used)
            self.util.append(self._nvml.nvmlDeviceGetUtilizationRates(self._h).gpu)

    def __enter__(self) -> GpuSampler:
        if self.ok:
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self.ok:
            self._thread.join()

    def result(self) -> dict[str, Any]:
        if not self.ok:
            return {"nvml_peak_gib": None, "nvml_util_mean": None}
        return {"nvml_peak_gib": round(self.peak / 2**30, 2),
                "nvml_util_mean": round(sum(self.util) / len(self.util) / 100, 3) if self.util else None}


def read_trace(trace_dir: str) -> list[dict[str, Any]]:
    recs = []
    for p in glob.glob(os.path.join(trace_dir, "*.jsonl")):
        recs += [json.loads(line) for line in open(p) if line.strip()]
    return recs


def stage_stats(recs: list[dict[str, Any]], wall_s: float, slots: dict[str, float]) -> dict[str, dict[str, Any]]:
    """Per stage: busy seconds (load excluded), busy fraction of the job wall per slot, calls, peak GPU."""
    out: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(r["stage"] for r in recs):
        rs = [r for r in recs if r["stage"] == name]
        busy = sum(max(0.0, r["t1"] - r["t0"] - r["load_s"]) for r in rs)
        n = slots.get(name) or len({r["pid"] for r in rs})
        peaks = [r["gpu_peak"] for r in rs if r["gpu_peak"]]
        out[name] = {"calls": len(rs), "busy_s": round(busy, 2), "slots": n,
                     "busy_fraction": round(busy / wall_s / n, 3) if wall_s > 0 else None,
                     "load_s": round(sum(r["load_s"] for r in rs), 1),
                     "gpu_peak_gib": round(max(peaks) / 2**30, 2) if peaks else None,
                     "images": sum(r["images"] for r in rs), "captions": sum(r["captions"] for r in rs),
                     "rows": sum(r["rows"] for r in rs)}
    return out


def isolated_rates(profile: str, device: str, repeats: int) -> dict[str, float]:
    """Each GPU model alone, in this process, at its profile batch size, on inputs of the job's
    shapes: CLIP images/s, captions/s, explanations/s (full max_new_tokens)."""
    import numpy as np
    import torch

    from exvad_ray.models import load_profile
    from exvad_ray.models.captioner import Captioner
    from exvad_ray.models.clip import ClipModel
    from exvad_ray.models.explainer import TransformersExplainer
    from exvad_ray.models.stages import explanation_messages_for_row

    _patch_random_init()
    prof = load_profile(profile, check_local=False)
    rng = np.random.default_rng(0)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def rate(fn, n: int) -> float:
        fn()  # warm-up (kernels, allocator, lazy init)
        sync()
        t0 = time.perf_counter()
        for _ in range(repeats):
            fn()
        sync()
        return n * repeats / (time.perf_counter() - t0)

    res = {}
    clip = ClipModel(prof.clip)
    imgs = rng.integers(0, 255, (2 * prof.clip.batch_size, 224, 224, 3), dtype=np.uint8)
    res["clip_images_per_s"] = rate(lambda: clip.embed_images(imgs), len(imgs))
    clip = None  # free the device before the next model
    cap = Captioner(prof.captioner)
    kf = imgs[: prof.captioner.batch_size]
    res["captions_per_s"] = rate(lambda: cap.caption(kf), len(kf))
    cap = None
    llm = TransformersExplainer(prof.explainer)
    row = {"clean_captions": [f"a person walks past a parked car near gate {i}" for i in range(16)],
           "keyframe_s": [2.0 * i for i in range(16)], "window_index": 0, "n_windows": 1}
    msgs = [explanation_messages_for_row(row)] * prof.explainer.batch_size
    res["explanations_per_s"] = rate(lambda: llm.explain(msgs), len(msgs))
    llm = None
    if device == "cuda":
        torch.cuda.empty_cache()
    return res


# ------------------------------------------------------------------ the run

def make_archive(root: str, args: argparse.Namespace) -> None:
    from exvad_ray.synth import SynthConfig, generate_archive
    from exvad_ray.synth.plan import parse_duration

    classes = tuple(c.strip() for c in args.classes.split(",")) if args.classes else None
    cfg = SynthConfig(videos_per_class=args.videos_per_class, normal_videos=args.normal_videos,
                      duration=parse_duration(args.duration), workers=os.cpu_count() or 1,
                      **({"classes": classes} if classes else {}))
    generate_archive(root, cfg)
    sys.path.insert(0, HERE)
    from pipeline import replicate  # noqa: E402  (bench/pipeline.py: copies under new names)

    replicate(root, args.copies)


def run_job(archive: str, index: str, profile: str, bw: int, trace: str, gpus: float) -> dict[str, Any]:
    import ray

    from exvad_ray.pipeline.job import ProcessConfig, plan_resources, run_process

    cfg = ProcessConfig(archive=archive, index=index, profile=profile, explainer="transformers",
                        label_set="synthetic", fuse_stages=False, batch_windows=bw, progress_interval_s=60,
                        gpu_per_stage=None)  # the project's default shares (none without GPUs)
    plan = plan_resources(cfg, float(ray.cluster_resources().get("CPU", 1)), gpus)
    os.makedirs(trace, exist_ok=True)
    with GpuSampler() as sampler:
        t0 = time.perf_counter()
        summary = run_process(cfg, echo=lambda *_: None)
        wall = time.perf_counter() - t0
    stats = stage_stats(read_trace(trace), wall, {"DecodeStage": plan["decode_tasks"]})
    return {"batch_windows": bw, "wall_s": round(wall, 1), "summary": summary, "plan": plan,
            "stages": stats, **sampler.result()}


def derive(job: dict[str, Any], iso: dict[str, float], gpus: float) -> dict[str, Any]:
    """End-to-end rate, and the rate the same work would have with the stages back to back, alone."""
    st, s = job["stages"], job["summary"]
    hours = float(s["hours"])
    images = st.get("ClipImageStage", {}).get("images", 0)
    captions = st.get("CaptionStage", {}).get("captions", 0)
    explanations = st.get("ExplanationStage", {}).get("rows", 0)
    iso_s = images / iso["clip_images_per_s"] + captions / iso["captions_per_s"] + \
        explanations / iso["explanations_per_s"]
    e2e = hours / (job["wall_s"] / 3600) / max(gpus, 1)
    iso_rate = hours / (iso_s / 3600) if iso_s > 0 else math.inf
    return {"video_hours": hours, "videos": s["videos_processed"], "failed": s["videos_failed"],
            "clip_images": images, "captions": captions, "explanations": explanations,
            "video_hours_per_gpu_hour": round(e2e, 2),
            "steady_video_hours_per_gpu_hour": s.get("steady_video_hours_per_hour"),
            "isolated_sum_video_hours_per_gpu_hour": round(iso_rate, 2),
            "ratio_to_isolated_sum": round(e2e / iso_rate, 3) if iso_rate else None}


def _say(msg: str) -> None:
    print(f"[gpu_pipeline {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny shapes: checks the whole code path")
    ap.add_argument("--batch-windows", default="4,16", help="windows per model batch, one job per value")
    ap.add_argument("--videos-per-class", type=int, default=1)
    ap.add_argument("--normal-videos", type=int, default=2)
    ap.add_argument("--classes", default=None, help="comma-separated anomaly classes (default: all)")
    ap.add_argument("--duration", default="240-300", help="seconds per generated video, N or MIN-MAX")
    ap.add_argument("--copies", type=int, default=12, help="copies of each video under other names")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats of each isolated-rate batch")
    ap.add_argument("--work", default=None, help="local folder for the archive, models and indexes")
    ap.add_argument("--out", default=None, help="write the result JSON here")
    ap.add_argument("--record", metavar="JSON", help="record a GPU run's JSON into bench/RESULTS.md/results.json")
    args = ap.parse_args(argv)
    if args.record:
        return record_result(json.load(open(args.record)))
    if args.dry_run:
        args.batch_windows = args.batch_windows if argv and "--batch-windows" in argv else "2"
    for k, v in {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled",
                 "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}.items():
        os.environ.setdefault(k, v)
    import ray
    import torch

    device = _device()
    if not args.dry_run and device != "cuda":
        raise SystemExit("gpu_pipeline: no CUDA device (use --dry-run to check the code path on a CPU)")
    gpus = 0.0 if args.dry_run else 1.0
    t_all = time.perf_counter()
    work = Path(args.work or tempfile.mkdtemp(prefix="exvad-gpu-pipeline-"))
    work.mkdir(parents=True, exist_ok=True)
    from exvad_ray.models import ensure_tiny_models

    tiny_dir = ensure_tiny_models(work / "tiny")
    os.environ["EXVAD_TINY_MODELS"] = str(tiny_dir)
    tokens = {"captioner": 4 if args.dry_run else 30, "explainer": 4 if args.dry_run else 160}
    models = build_models(work / "models", tiny_dir, args.dry_run, tokens)
    profile = write_profile(work / "profile.yaml", models, tiny_dir, args.dry_run)
    archive = str(work / "archive")
    t0 = time.perf_counter()
    _say(f"models and profile in {work}; generating the archive")
    make_archive(archive, args)
    gen_s = time.perf_counter() - t0
    _say(f"archive generated in {gen_s:.0f} s")

    trace_root = work / "trace"
    # Workers import this module for the hook: the repo root and bench/ on their path.
    pypath = os.pathsep.join([HERE, os.path.dirname(HERE), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    os.environ["PYTHONPATH"] = pypath
    jobs = []
    for bw in [int(x) for x in args.batch_windows.split(",")]:
        trace = str(trace_root / f"bw{bw}")
        os.environ[TRACE_ENV] = trace
        ray.init(address="local", include_dashboard=False, num_gpus=int(gpus), log_to_driver=False,
                 runtime_env={"worker_process_setup_hook": "gpu_pipeline.worker_setup",
                              "env_vars": {TRACE_ENV: trace, "PYTHONPATH": pypath,
                                           "EXVAD_TINY_MODELS": str(tiny_dir), "HF_HUB_OFFLINE": "1"}})
        ray.data.DataContext.get_current().issue_detectors_config.detectors = []
        try:
            jobs.append(run_job(archive, str(work / f"index-bw{bw}"), profile, bw, trace, gpus))
            _say(f"job batch_windows={bw}: {jobs[-1]['wall_s']} s, {jobs[-1]['summary']['hours']} video-h")
        finally:
            ray.shutdown()
    iso = isolated_rates(profile, device, args.repeats)
    _say(f"isolated rates: {iso}")
    for j in jobs:
        j.update(derive(j, iso, gpus))
    result = {"dry_run": args.dry_run, "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
              "torch": torch.__version__, "ray": ray.__version__, "cpus": os.cpu_count(),
              "archive_generation_s": round(gen_s, 1), "isolated": {k: round(v, 2) for k, v in iso.items()},
              "jobs": jobs, "total_s": round(time.perf_counter() - t_all, 1)}
    text = json.dumps(result, indent=1, default=str)
    if args.out:
        Path(args.out).write_text(text)
    print(text)
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def flat_keys(result: dict[str, Any]) -> dict[str, Any]:
    """results.json keys: gpu_pipeline.<field> for the best job, gpu_pipeline.bw<N>.<field> for each."""
    best = max(result["jobs"], key=lambda j: j["video_hours_per_gpu_hour"])
    flat = {"gpu_pipeline.device": result["device"], **{f"gpu_pipeline.isolated.{k}": v
                                                       for k, v in result["isolated"].items()}}
    for j in result["jobs"]:
        for prefix in [f"gpu_pipeline.bw{j['batch_windows']}"] + (["gpu_pipeline"] if j is best else []):
            for k in ("video_hours_per_gpu_hour", "steady_video_hours_per_gpu_hour",
                      "isolated_sum_video_hours_per_gpu_hour", "ratio_to_isolated_sum", "video_hours", "wall_s",
                      "nvml_peak_gib", "nvml_util_mean", "batch_windows"):
                flat[f"{prefix}.{k}"] = j.get(k)
            for name, s in j["stages"].items():
                flat[f"{prefix}.busy_fraction.{name}"] = s["busy_fraction"]
    return flat


def record_result(result: dict[str, Any]) -> int:
    if result.get("dry_run"):
        raise SystemExit("gpu_pipeline: a dry run is not recorded")
    sys.path.insert(0, HERE)
    from _results import record, table  # noqa: E402

    rows = []
    for j in result["jobs"]:
        busy = ", ".join(f"{n.replace('Stage', '')} {s['busy_fraction']:.2f}" for n, s in j["stages"].items())
        rows.append([j["batch_windows"], j["video_hours"], j["wall_s"], j["video_hours_per_gpu_hour"],
                     j["isolated_sum_video_hours_per_gpu_hour"], j["ratio_to_isolated_sum"], j["nvml_peak_gib"],
                     busy])
    iso = result["isolated"]
    body = (f"`bench/gpu_pipeline.py` on **{result['device']}** (torch {result['torch']}, Ray {result['ray']}, "
            f"{result['cpus']} CPUs): the archive job, per-stage layout, paper shapes with random weights "
            "(CLIP ViT-B-16, BLIP-2 OPT-2.7B, Llama-3.1-8B-shaped explainer through transformers), bf16.\n\n"
            + table(["windows/batch", "video-h", "wall s", "video-h per GPU-h", "isolated-sum rate", "ratio",
                     "GPU peak GiB", "busy fraction per stage"], rows)
            + f"\n\nIsolated (same process, profile batch sizes): CLIP {iso['clip_images_per_s']:,.0f} images/s, "
            f"captions {iso['captions_per_s']:,.1f}/s, explanations {iso['explanations_per_s']:,.2f}/s. "
            "Projection from stages timed outside Ray (section 'Model stages'): 423 video-hours per GPU-hour "
            "(CLIP + captions, caption batch 64), 1,157 at caption batch 256, LLM term not included.\n")
    record(SECTION, body, flat_keys(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
