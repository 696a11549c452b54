from __future__ import annotations

import pytest

from exvad_ray.errors import ConfigError
from exvad_ray.models import load_profile


def test_paper_profile_names_the_papers_models():
    p = load_profile("paper", check_local=False)
    assert (p.clip.model, p.clip.pretrained, p.clip.dtype, p.clip.batch_size) == ("ViT-B-16", "openai", "bf16", 256)
    assert p.captioner.model == "Salesforce/blip2-opt-2.7b"
    assert p.explainer.model == "meta-llama/Llama-3.1-8B-Instruct" and p.explainer.backend == "vllm"
    assert p.label_k == 4


def test_tiny_profile_points_at_tiny_dir(tiny_dir):
    p = load_profile("tiny")
    assert p.clip.model == f"local-dir:{tiny_dir}/clip"
    assert p.captioner.model == f"{tiny_dir}/captioner" and p.explainer.model == f"{tiny_dir}/llm"
    assert p.explainer.backend == "transformers" and p.clip.device == "cpu"


def test_tiny_profile_missing_models_says_how_to_build(monkeypatch, tmp_path):
    monkeypatch.setenv("EXVAD_TINY_MODELS", str(tmp_path / "none"))
    with pytest.raises(ConfigError, match="exvad models make-tiny"):
        load_profile("tiny")


def test_unknown_profile_and_invalid_fields(tmp_path):
    with pytest.raises(ConfigError, match="unknown profile 'nope'.*paper"):
        load_profile("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nclip: {model: ViT-B-16, device: gpu0}\ncaptioner: {model: x}\nexplainer: {model: y}\n")
    with pytest.raises(ConfigError, match="device must be"):
        load_profile(bad)
    bad.write_text("name: bad\nclip: {model: ViT-B-16, batchsize: 3}\ncaptioner: {model: x}\nexplainer: {model: y}\n")
    with pytest.raises(ConfigError, match="batchsize"):
        load_profile(bad)
    bad.write_text("name: bad\nclip: {model: ViT-B-16}\ncaptioner: {model: x}\nexplainer: {model: y}\n"
                   "detector: {layer: 0}\n")
    with pytest.raises(ConfigError, match="unknown detector settings \\['layer'\\]"):
        load_profile(bad)


def test_custom_profile_with_local_dirs(tiny_dir, tmp_path):
    p = tmp_path / "mine.yaml"
    p.write_text(f"clip: {{model: {tiny_dir}/clip}}\ncaptioner: {{model: {tiny_dir}/captioner}}\n"
                 f"explainer: {{model: {tiny_dir}/llm, backend: transformers, max_new_tokens: 4}}\n")
    prof = load_profile(p)
    assert prof.name == "mine" and prof.explainer.max_new_tokens == 4
    p.write_text("clip: {model: /does/not/exist}\ncaptioner: {model: x}\nexplainer: {model: y}\n")
    with pytest.raises(ConfigError, match="clip model directory not found"):
        load_profile(p)
