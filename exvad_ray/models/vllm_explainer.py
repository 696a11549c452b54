"""Explanation backend for GPU clusters: vLLM through ``ray.data.llm``.

Imports only ray.data.llm, pydantic and yaml (through profiles), so it runs in the separate
``vllm-cpu`` test environment, which has no open_clip or torchvision.

GPU: one engine per GPU (``vllm.concurrency`` engines), ``tensor_parallel_size`` GPUs each for big
models. CPU (``device: cpu``, the vllm-cpu test): a ``{"CPU": 1}`` placement group (else the
engine waits for a GPU forever), small ``num_cpus`` for the CPU-side stages (else 2 cores
deadlock), and ``VLLM_CPU_KVCACHE_SPACE`` (GiB) set small.
"""

from __future__ import annotations

import os
from typing import Any

from exvad_ray.models.profiles import ExplainerSpec, model_id, resolve_device


def vllm_processor_config(spec: ExplainerSpec, *, device: str | None = None, batch_size: int | None = None,
                          cpu_stage_num_cpus: float = 0.25, kv_cache_gib: int = 1) -> Any:
    """The ``vLLMEngineProcessorConfig`` for a profile's explainer spec."""
    from ray.data.llm import vLLMEngineProcessorConfig

    device = device or (spec.device if spec.device != "auto" else _auto_device())
    s = spec.vllm
    engine_kwargs: dict[str, Any] = {
        "max_model_len": s.max_model_len,
        "enforce_eager": s.enforce_eager,
        "seed": spec.seed,
    }
    if spec.dtype != "auto":
        engine_kwargs["dtype"] = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}[spec.dtype]
    cfg: dict[str, Any] = {
        "model_source": os.path.expanduser(spec.model),
        "batch_size": batch_size or spec.batch_size,
        "concurrency": s.concurrency,
        # vLLM's Ray metrics need ray[serve]; the batch job does not export engine metrics.
        "log_engine_metrics": False,
    }
    if device == "cpu":
        engine_kwargs.update(tensor_parallel_size=1, enforce_eager=True)
        if "dtype" not in engine_kwargs or engine_kwargs["dtype"] == "float16":
            engine_kwargs["dtype"] = "float32" if spec.dtype in ("auto", "fp32") else "bfloat16"
        stage = {"num_cpus": cpu_stage_num_cpus}
        cfg.update(
            placement_group_config={"bundles": [{"CPU": 1}]},
            chat_template_stage=stage, tokenize_stage=stage, detokenize_stage=stage,
            runtime_env={"env_vars": {"VLLM_CPU_KVCACHE_SPACE": str(kv_cache_gib)}},
        )
    else:
        engine_kwargs.update(tensor_parallel_size=s.tensor_parallel_size,
                             gpu_memory_utilization=s.gpu_memory_utilization)
    engine_kwargs.update(s.engine_kwargs)
    cfg["engine_kwargs"] = engine_kwargs
    return vLLMEngineProcessorConfig(**cfg)


def _auto_device() -> str:
    try:
        return resolve_device("auto")
    except ImportError:  # pragma: no cover - torch is always there with vLLM
        return "cpu"


def build_vllm_explainer(spec: ExplainerSpec, *, device: str | None = None, batch_size: int | None = None,
                         cpu_stage_num_cpus: float = 0.25, kv_cache_gib: int = 1,
                         pre_num_cpus: float | None = None) -> Any:
    """A ``ray.data.llm`` processor: ``ds = processor(ds)`` on rows with a ``messages`` column
    (chat messages, e.g. from :func:`build_explanation_messages`) adds ``explanation`` and
    ``explanation_model``; other columns pass through."""
    from ray.data.llm import build_processor

    config = vllm_processor_config(spec, device=device, batch_size=batch_size,
                                   cpu_stage_num_cpus=cpu_stage_num_cpus, kv_cache_gib=kv_cache_gib)
    sampling = {"temperature": float(spec.temperature), "max_tokens": int(spec.max_new_tokens),
                "seed": int(spec.seed)}
    mid = model_id(spec.model)

    def preprocess(row: dict[str, Any]) -> dict[str, Any]:
        messages = [{"role": str(m["role"]), "content": str(m["content"])} for m in row["messages"]]
        return dict(row, messages=messages, sampling_params=sampling)

    def postprocess(row: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in row.items() if k not in _ENGINE_COLUMNS}
        out["explanation"] = str(row.get("generated_text") or "").strip()
        out["explanation_model"] = mid
        out["explanation_tokens"] = int(row.get("num_generated_tokens") or 0)
        return out

    kwargs: dict[str, Any] = {"preprocess": preprocess, "postprocess": postprocess}
    if (device or spec.device) == "cpu" or pre_num_cpus is not None:
        ncpu = pre_num_cpus if pre_num_cpus is not None else cpu_stage_num_cpus
        kwargs.update(preprocess_map_kwargs={"num_cpus": ncpu}, postprocess_map_kwargs={"num_cpus": ncpu})
    return build_processor(config, **kwargs)


# Columns the engine stages add that the index does not keep.
_ENGINE_COLUMNS = {
    "messages", "sampling_params", "prompt", "tokenized_prompt", "prompt_token_ids", "generated_tokens",
    "generated_text", "num_generated_tokens", "num_input_tokens", "request_id", "batch_uuid", "time_taken_llm",
    "params", "metrics", "embeddings", "generated_logprobs", "prompt_logprobs", "image", "multimodal_data",
    "mm_processor_kwargs", "multimodal_uuids",
}
