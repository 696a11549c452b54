"""Per-stage throughput of the model stages.

CPU (here, tiny models):      python bench/stages.py
CPU, the `lite` profile:       python bench/stages.py --profile lite
GPU (paper architectures):    python bench/stages.py --gpu --json OUT.json
    Needs only torch, transformers and open_clip (no exvad_ray): the paper's CLIP ViT-B-16 and
    BLIP-2 OPT-2.7B are built from their configs with random weights (throughput does not depend
    on the weights), directly on the GPU in bf16. Then record the figures here with
    python bench/stages.py --record-gpu OUT.json
Check the GPU code path on a CPU:   python bench/stages.py --gpu-dry-run   (same models, depth 1)

Projection (the `paper` profile at the default sampling, exvad_ray.video.sampling: one CLIP frame per
16-frame snippet, windows of 256 snippets, one caption keyframe per 2 s, at most 16 per window):
    W   = 256 * 16 / fps                  seconds of video per window (136.5 s at 30 fps)
    n_c = 256 + n_kf                      CLIP images per window (snippet frames + keyframes)
    n_kf = min(16, ceil(W / 2))           captions per window
    gpu_s(window) = n_c / clip_images_per_s + n_kf / captions_per_s [+ 1 explanation: T / llm_tokens_per_s]
    video-hours per GPU-hour = W / gpu_s(window)
The LLM term is not measured here (Llama-3.1-8B through vLLM); the figure without it is reported,
and the formula shows where it enters.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
SECTION = "Model stages"

# Default sampling (kept in step with exvad_ray/video/sampling.py; no import so the GPU part runs bare).
SNIPPET_FRAMES = 16
WINDOW_SNIPPETS = 256
KEYFRAME_INTERVAL_S = 2.0
MAX_KEYFRAMES_PER_WINDOW = 16
CLIP_GFLOPS_PER_IMAGE = 17.6  # ViT-B/16 image tower at 224 px

# Dense bf16 tensor-core peaks (TFLOP/s), by a substring of torch.cuda.get_device_name().
BF16_PEAK_TFLOPS = [
    ("H200", 989.4), ("H100 NVL", 835.0), ("H100 PCIe", 756.0), ("H100", 989.4), ("GH200", 989.4),
    ("B200", 2250.0), ("A100", 312.0), ("L40S", 362.1), ("L40", 181.0), ("L4", 121.0), ("A10G", 70.0),
    ("A10", 125.0), ("RTX 4090", 165.2), ("V100", 125.0), ("T4", 65.0),
]


def projection(clip_ips: float, caps_ps: float, fps: float = 30.0, llm_s_per_window: float = 0.0) -> dict[str, float]:
    """Video-hours per GPU-hour for the paper profile at the default sampling (formula in the module doc)."""
    window_s = WINDOW_SNIPPETS * SNIPPET_FRAMES / fps
    n_kf = min(MAX_KEYFRAMES_PER_WINDOW, math.ceil(window_s / KEYFRAME_INTERVAL_S))
    gpu_s = (WINDOW_SNIPPETS + n_kf) / clip_ips + n_kf / caps_ps + llm_s_per_window
    return {"window_s": window_s, "keyframes_per_window": n_kf, "gpu_s_per_window": gpu_s,
            "video_hours_per_gpu_hour": window_s / gpu_s}


# ---------------------------------------------------------------------------------------------- GPU part
def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench_clip_gpu(device: str, batch: int, iters: int, depth: int | None = None) -> dict[str, Any]:
    """CLIP ViT-B-16 image tower, bf16, random weights built on the device."""
    import open_clip
    import torch

    cfg = open_clip.get_model_config("ViT-B-16")
    if depth:
        cfg["vision_cfg"]["layers"] = depth
        cfg["text_cfg"]["layers"] = depth
    t0 = time.perf_counter()
    with torch.device(device):
        model = open_clip.CLIP(**cfg)
    visual = model.visual.to(device=device, dtype=torch.bfloat16).eval()
    build_s = time.perf_counter() - t0
    x = torch.randn(batch, 3, 224, 224, device=device, dtype=torch.bfloat16)
    with torch.inference_mode():
        for _ in range(3):
            visual(x)
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(iters):
            out = visual(x)
        _sync(device)
        dt = time.perf_counter() - t0
    assert out.shape == (batch, cfg["embed_dim"]), out.shape
    ips = batch * iters / dt
    return {"clip_batch": batch, "clip_iters": iters, "clip_images_per_s": ips, "clip_build_s": build_s,
            "clip_tflops": ips * CLIP_GFLOPS_PER_IMAGE / 1e3}


def blip2_opt27b_config(depth: int | None = None):
    """BLIP-2 OPT-2.7B (Salesforce/blip2-opt-2.7b) from explicit configs: EVA ViT-g/14, Q-Former,
    OPT-2.7b (hidden 2560, 32 layers, 32 heads, ffn 10240). ``depth`` shrinks the layer counts only."""
    from transformers import Blip2Config, Blip2QFormerConfig, Blip2VisionConfig, OPTConfig

    vision = Blip2VisionConfig(hidden_size=1408, intermediate_size=6144, num_hidden_layers=depth or 39,
                               num_attention_heads=16, image_size=224, patch_size=14, qkv_bias=True)
    qformer = Blip2QFormerConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=depth or 12,
                                 num_attention_heads=12, cross_attention_frequency=2, encoder_hidden_size=1408)
    text = OPTConfig(vocab_size=50304, hidden_size=2560, num_hidden_layers=depth or 32, ffn_dim=10240,
                     num_attention_heads=32, max_position_embeddings=2048, word_embed_proj_dim=2560,
                     do_layer_norm_before=True, bos_token_id=2, eos_token_id=2, pad_token_id=1)
    return Blip2Config(vision_config=vision.to_dict(), qformer_config=qformer.to_dict(), text_config=text.to_dict(),
                       num_query_tokens=32, image_token_index=50265)


def bench_blip2_gpu(device: str, batch: int, iters: int, new_tokens: int = 30,
                    depth: int | None = None) -> dict[str, Any]:
    """BLIP-2 OPT-2.7B captioning at exactly ``new_tokens`` new tokens (min = max), greedy, bf16."""
    import torch
    from transformers import Blip2ForConditionalGeneration

    config = blip2_opt27b_config(depth)
    t0 = time.perf_counter()
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            try:
                model = Blip2ForConditionalGeneration._from_config(config, attn_implementation="sdpa",
                                                                   dtype=torch.bfloat16)
            except (TypeError, ValueError):
                model = Blip2ForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(old)
    model = model.to(device=device, dtype=torch.bfloat16).eval()
    build_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in model.parameters())
    gen = model.generation_config
    gen.bos_token_id, gen.eos_token_id, gen.pad_token_id = 2, 2, 1
    pixel_values = torch.randn(batch, 3, 224, 224, device=device, dtype=torch.bfloat16)
    input_ids = torch.tensor([[config.image_token_index] * config.num_query_tokens + [2]] * batch, device=device)
    kwargs = dict(pixel_values=pixel_values, input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                  do_sample=False, num_beams=1)
    with torch.inference_mode():
        model.generate(**kwargs, max_new_tokens=2, min_new_tokens=2)  # warm-up
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(iters):
            out = model.generate(**kwargs, max_new_tokens=new_tokens, min_new_tokens=new_tokens)
        _sync(device)
        dt = time.perf_counter() - t0
    n_new = out.shape[1] - (input_ids.shape[1] if out.shape[1] > new_tokens else 0)
    assert n_new == new_tokens, (out.shape, n_new)
    cps = batch * iters / dt
    return {"blip2_batch": batch, "blip2_iters": iters, "blip2_new_tokens": new_tokens, "blip2_captions_per_s": cps,
            "blip2_tokens_per_s": cps * new_tokens, "blip2_build_s": build_s, "blip2_params_m": n_params / 1e6}


def run_gpu(dry_run: bool, clip_batch: int, clip_iters: int, blip_batch: int, blip_iters: int,
            fps: float, peak_tflops: float | None) -> dict[str, Any]:
    import platform

    import torch

    if dry_run:
        device, depth = "cpu", 1
        clip_batch, clip_iters, blip_batch, blip_iters = 4, 1, 2, 1
        name = "cpu (dry run, depth 1)"
    else:
        if not torch.cuda.is_available():
            raise SystemExit("--gpu needs a CUDA device (use --gpu-dry-run to check the code path on a CPU)")
        device, depth = "cuda", None
        name = torch.cuda.get_device_name(0)
        torch.backends.cuda.matmul.allow_tf32 = True
    t_all = time.perf_counter()
    res: dict[str, Any] = {"device": name, "torch": torch.__version__, "host": platform.node()}
    try:
        import open_clip
        import transformers

        res.update(open_clip=open_clip.__version__, transformers=transformers.__version__)
    except ImportError as exc:
        raise SystemExit(f"--gpu needs torch, transformers and open_clip: {exc}")
    res.update(bench_clip_gpu(device, clip_batch, clip_iters, depth))
    if device == "cuda":
        torch.cuda.empty_cache()
    res.update(bench_blip2_gpu(device, blip_batch, blip_iters, 30, depth))
    peak = peak_tflops or next((p for key, p in BF16_PEAK_TFLOPS if key in name), None)
    res["bf16_peak_tflops"] = peak
    res["clip_peak_fraction"] = res["clip_tflops"] / peak if peak else None
    proj = projection(res["clip_images_per_s"], res["blip2_captions_per_s"], fps)
    res.update({f"proj_{k}": v for k, v in proj.items()})
    res["fps"] = fps
    res["wall_s"] = time.perf_counter() - t_all
    if device == "cuda":
        res["max_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return res


# ---------------------------------------------------------------------------------------------- CPU part
def _timeit(fn, min_s: float = 2.0, max_iters: int = 20) -> tuple[float, int]:
    fn()  # warm-up
    n, t0 = 0, time.perf_counter()
    while n < max_iters and (n == 0 or time.perf_counter() - t0 < min_s):
        fn()
        n += 1
    return (time.perf_counter() - t0) / n, n


def run_cpu(tiny_dir: str | None) -> dict[str, Any]:
    import numpy as np
    import torch

    sys.path.insert(0, os.path.dirname(HERE))
    from exvad_ray.models import (Captioner, ClipModel, TransformersExplainer, build_explanation_messages,
                                  ensure_tiny_models, load_profile)

    os.environ["EXVAD_TINY_MODELS"] = str(ensure_tiny_models(tiny_dir))
    prof = load_profile("tiny")
    rng = np.random.default_rng(0)
    res: dict[str, Any] = {"torch_threads": torch.get_num_threads()}

    clip = ClipModel(prof.clip)
    imgs = rng.integers(0, 256, (64, 224, 224, 3), dtype=np.uint8)
    dt, _ = _timeit(lambda: clip.embed_images(imgs))
    res["clip_images_per_s"] = len(imgs) / dt
    texts = [f"a person number {i} walks in a street at night" for i in range(128)]
    dt, _ = _timeit(lambda: clip.embed_texts(texts))
    res["clip_texts_per_s"] = len(texts) / dt

    cap = Captioner(prof.captioner)
    kf = imgs[:16]
    dt, _ = _timeit(lambda: cap.caption(kf), min_s=2.0, max_iters=5)
    res["captions_per_s"] = len(kf) / dt
    res["caption_new_tokens"] = prof.captioner.max_new_tokens

    ex = TransformersExplainer(prof.explainer)
    convs = [build_explanation_messages([(2.0 * j, f"a man walks in a street {i}") for j in range(16)])
             for i in range(prof.explainer.batch_size)]
    ex.explain(convs[:1])
    ex.generated_tokens = 0
    t0 = time.perf_counter()
    ex.explain(convs)
    dt = time.perf_counter() - t0
    res["llm_tokens_per_s"] = ex.generated_tokens / dt
    res["explanations_per_s"] = len(convs) / dt
    res["llm_new_tokens"] = prof.explainer.max_new_tokens
    return res


def run_cpu_lite() -> dict[str, Any]:
    """The `lite` profile's stages on the CPU: EfficientNet-Lite0 images/s, MiniLM texts/s, tag captions/s
    (on images not embedded yet, and on keyframes the image stage just embedded: the pipeline's case),
    caption summaries/s."""
    import numpy as np
    import torch

    sys.path.insert(0, os.path.dirname(HERE))
    from exvad_ray.models import build_explanation_messages, load_profile
    from exvad_ray.models.encoders import load_encoders
    from exvad_ray.models.explainer import build_explainer
    from exvad_ray.models.tag_captioner import build_captioner

    prof = load_profile("lite")
    rng = np.random.default_rng(0)
    res: dict[str, Any] = {"torch_threads": torch.get_num_threads()}
    enc = load_encoders(prof.clip)
    batches = iter([rng.integers(0, 256, (32, 224, 224, 3), dtype=np.uint8) for _ in range(96)])
    dt, _ = _timeit(lambda: enc.embed_images(next(batches)), min_s=5.0, max_iters=20)  # fresh images: no cache
    res["visual_images_per_s"] = 32 / dt
    # the pipeline's call: a window's snippets -> [appearance | motion] (motion from the same feature maps)
    dt, _ = _timeit(lambda: enc.embed_snippets([next(batches)]), min_s=5.0, max_iters=20)
    res["visual_snippets_per_s"] = 32 / dt
    texts = [f"a frame showing candle number {i} and maze." for i in range(128)]
    dt, _ = _timeit(lambda: enc.embed_texts(texts))
    res["text_texts_per_s"] = len(texts) / dt
    cap = build_captioner(prof)
    kf = [rng.integers(0, 256, (16, 224, 224, 3), dtype=np.uint8) for _ in range(32)]
    it = iter(kf)
    dt, _ = _timeit(lambda: cap.caption(next(it)), min_s=3.0, max_iters=10)
    res["captions_per_s_fresh"] = 16 / dt
    enc.embed_images(kf[-1])
    dt, _ = _timeit(lambda: cap.caption(kf[-1]), min_s=1.0, max_iters=50)
    res["captions_per_s_embedded"] = 16 / dt
    ex = build_explainer(prof.explainer)
    convs = [build_explanation_messages([(2.0 * j, f"a frame showing candle {i % 3} and maze.") for j in range(16)])
             for i in range(256)]
    dt, _ = _timeit(lambda: ex.explain(convs), min_s=1.0)
    res["explanations_per_s"] = len(convs) / dt
    res["load_avg_1min"] = os.getloadavg()[0]
    return res


# ---------------------------------------------------------------------------------------------- recording
def _markdown(data: dict[str, Any]) -> str:
    sys.path.insert(0, HERE)
    from _results import table

    parts = []
    cpu = {k[len("stages.cpu."):]: v for k, v in data.items() if k.startswith("stages.cpu.")}
    if cpu:
        parts.append("CPU, `tiny` profile (random tiny models: CLIP width 64 / 64 px, BLIP-2 OPT "
                     f"{cpu.get('caption_new_tokens')} new tokens, Qwen2 hidden 128 {cpu.get('llm_new_tokens')} "
                     "new tokens; greedy), on the machine named above (2 cores shared with other work while measured):\n")
        parts.append(table(["stage", "throughput"], [
            ["CLIP image embedding (224 px in)", f"{cpu['clip_images_per_s']:.1f} images/s"],
            ["CLIP text embedding", f"{cpu['clip_texts_per_s']:.1f} texts/s"],
            ["captioning (BLIP-2, batched generate)", f"{cpu['captions_per_s']:.1f} captions/s"],
            ["explanation LLM (transformers)", f"{cpu['llm_tokens_per_s']:.1f} tokens/s "
                                               f"({cpu['explanations_per_s']:.2f} explanations/s)"],
        ]))
    lite = {k[len("stages.cpu_lite."):]: v for k, v in data.items() if k.startswith("stages.cpu_lite.")}
    if lite:
        parts.append("\nCPU, `lite` profile (real weights; fp32, channels-last, "
                     f"{lite.get('torch_threads')} torch threads; load average {lite.get('load_avg_1min', 0):.1f} "
                     "at the end of the run, the 2 cores shared with other work):\n")
        parts.append(table(["stage", "throughput"], [
            ["EfficientNet-Lite0 image features (224 px in)", f"{lite['visual_images_per_s']:.1f} images/s"],
            ["EfficientNet-Lite0 snippet features (appearance + motion, as the pipeline calls it)",
             f"{lite.get('visual_snippets_per_s', float('nan')):.1f} snippets/s"],
            ["all-MiniLM-L6-v2 text embedding", f"{lite['text_texts_per_s']:.1f} texts/s"],
            ["ImageNet tag captions, keyframes not yet embedded", f"{lite['captions_per_s_fresh']:.1f} captions/s"],
            ["ImageNet tag captions, keyframes embedded by the image stage (the pipeline)",
             f"{lite['captions_per_s_embedded']:,.0f} captions/s"],
            ["caption summary (explainer, no LM)", f"{lite['explanations_per_s']:,.0f} explanations/s"],
        ]))
        parts.append("\nOn the CPU the visual encoder bounds the `lite` job: every snippet frame and keyframe "
                     "passes through EfficientNet-Lite0, while captions reuse its features and the explainer "
                     "is a summary (bench/pipeline.py gives the job's ratio to the decode ceiling).")
    gpu = {k[len("stages.gpu."):]: v for k, v in data.items() if k.startswith("stages.gpu.")}
    if gpu:
        frac = gpu.get("clip_peak_fraction")
        parts.append(f"\nGPU, paper architectures with random weights, bf16, on **{gpu['device']}** "
                     f"(torch {gpu.get('torch')}, transformers {gpu.get('transformers')}, "
                     f"open_clip {gpu.get('open_clip')}; whole run {gpu.get('wall_s', 0):.0f} s):\n")
        parts.append(table(["stage", "setting", "throughput"], [
            ["CLIP ViT-B-16 image tower", f"batch {gpu['clip_batch']}",
             f"{gpu['clip_images_per_s']:,.0f} images/s = {gpu['clip_tflops']:.0f} TFLOP/s at "
             f"{CLIP_GFLOPS_PER_IMAGE} GFLOP/image" + (f" = {100 * frac:.0f}% of bf16 peak "
                                                       f"({gpu['bf16_peak_tflops']} TFLOP/s)" if frac else "")],
            ["BLIP-2 OPT-2.7B captioning", f"batch {gpu['blip2_batch']}, {gpu['blip2_new_tokens']} new tokens",
             f"{gpu['blip2_captions_per_s']:.1f} captions/s ({gpu['blip2_tokens_per_s']:,.0f} tokens/s)"],
        ]))
        parts.append(
            f"\nProjection for the `paper` profile at the default sampling ({gpu['fps']:.0f} fps; window "
            f"W = 256*16/fps = {gpu['proj_window_s']:.1f} s; {gpu['proj_keyframes_per_window']} keyframes/window): "
            f"gpu_s = (256 + n_kf)/clip_images_per_s + n_kf/captions_per_s = {gpu['proj_gpu_s_per_window']:.3f} s "
            f"per window -> **{gpu['proj_video_hours_per_gpu_hour']:,.0f} video-hours per GPU-hour** for CLIP + "
            "captioning. The explanation LLM (Llama-3.1-8B, vLLM) adds T/llm_tokens_per_s per window "
            "(T = explanation tokens) and is not measured here.")
    alt = {k[len("stages.gpu_alt."):]: v for k, v in data.items() if k.startswith("stages.gpu_alt.")}
    if alt:
        parts.append(
            f"\nSecond run, larger batches (same card): CLIP batch {alt['clip_batch']}: "
            f"{alt['clip_images_per_s']:,.0f} images/s ({100 * (alt.get('clip_peak_fraction') or 0):.0f}% of peak); "
            f"BLIP-2 batch {alt['blip2_batch']}: {alt['blip2_captions_per_s']:.1f} captions/s "
            f"({alt['blip2_tokens_per_s']:,.0f} tokens/s, {alt.get('max_memory_gib', 0):.1f} GiB peak) -> "
            f"**{alt['proj_video_hours_per_gpu_hour']:,.0f} video-hours per GPU-hour** (CLIP + captioning). "
            "Captioning is decode-bound: batch size pays, so the `paper` profile captions in batches of 256.")
    return "\n".join(parts)


def record(flat: dict[str, Any], machine_info: dict[str, Any] | None = None) -> None:
    sys.path.insert(0, HERE)
    from _results import RESULTS_JSON, record as _record

    data = {}
    if os.path.exists(RESULTS_JSON):
        with open(RESULTS_JSON) as f:
            data = json.load(f)
    data.update(flat)
    _record(SECTION, _markdown(data), flat, machine_info)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpu", action="store_true", help="paper architectures on the GPU (torch/transformers/open_clip)")
    ap.add_argument("--gpu-dry-run", action="store_true", help="the GPU code path on the CPU at depth 1")
    ap.add_argument("--record-gpu", metavar="JSON", nargs="+",
                    help="record a --gpu --json result (and optionally a second, larger-batch one) into "
                         "RESULTS.md/results.json")
    ap.add_argument("--json", metavar="OUT", help="also write the figures to this JSON file")
    ap.add_argument("--no-record", action="store_true", help="do not touch bench/RESULTS.md and results.json")
    ap.add_argument("--tiny-dir", help="tiny models directory (default: $EXVAD_TINY_MODELS, built if missing)")
    ap.add_argument("--profile", choices=["tiny", "lite"], default="tiny", help="CPU run: which profile (default tiny)")
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--clip-batch", type=int, default=256)
    ap.add_argument("--clip-iters", type=int, default=20)
    ap.add_argument("--blip-batch", type=int, default=64)
    ap.add_argument("--blip-iters", type=int, default=3)
    ap.add_argument("--peak-tflops", type=float, help="bf16 peak of the card, if not in the built-in table")
    args = ap.parse_args(argv)

    if args.record_gpu:
        flat: dict[str, Any] = {}
        for prefix, path in zip(("stages.gpu.", "stages.gpu_alt."), args.record_gpu):
            with open(path) as f:
                flat.update({prefix + k: v for k, v in json.load(f).items()})
        record(flat, machine_info=None)
        print(json.dumps(flat, indent=1))
        return 0
    if args.gpu or args.gpu_dry_run:
        res = run_gpu(args.gpu_dry_run, args.clip_batch, args.clip_iters, args.blip_batch, args.blip_iters,
                      args.fps, args.peak_tflops)
        prefix = "stages.gpu_dry_run." if args.gpu_dry_run else "stages.gpu."
    elif args.profile == "lite":
        res = run_cpu_lite()
        prefix = "stages.cpu_lite."
    else:
        res = run_cpu(args.tiny_dir)
        prefix = "stages.cpu."
    print(json.dumps(res, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    if not args.no_record and not args.gpu_dry_run:
        try:
            record({prefix + k: v for k, v in res.items()})
        except ImportError as exc:  # a bare GPU box without bench/_results.py: the JSON is enough
            print(f"not recorded ({exc}); record later with --record-gpu", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
