from __future__ import annotations

import json

from exvad_ray.cli import main


def test_make_tiny_and_show_profile(tiny_dir, capsys):
    assert main(["models", "make-tiny", str(tiny_dir)]) == 0  # already there: kept
    assert str(tiny_dir) in capsys.readouterr().out
    assert main(["models", "show-profile", "paper"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["captioner"]["model"] == "Salesforce/blip2-opt-2.7b"


def test_show_profile_unknown_is_a_user_error(capsys):
    assert main(["models", "show-profile", "nope"]) == 2
    assert "unknown profile" in capsys.readouterr().err


def test_vllm_processor_config_cpu_and_gpu(tiny_profile):
    import pytest

    pytest.importorskip("ray.data.llm")
    from exvad_ray.models.profiles import load_profile
    from exvad_ray.models.vllm_explainer import vllm_processor_config

    cpu = vllm_processor_config(tiny_profile.explainer, device="cpu")
    assert [(b["CPU"], b.get("GPU", 0)) for b in cpu.placement_group_config["bundles"]] == [(1, 0)]
    assert cpu.engine_kwargs["enforce_eager"] is True and cpu.engine_kwargs["tensor_parallel_size"] == 1
    gpu = vllm_processor_config(load_profile("paper", check_local=False).explainer, device="cuda")
    assert gpu.placement_group_config is None
    assert gpu.engine_kwargs["max_model_len"] == 8192 and gpu.engine_kwargs["dtype"] == "bfloat16"
    assert gpu.model_source == "meta-llama/Llama-3.1-8B-Instruct"
