"""Explanation backend for CPU (and small GPUs): a transformers causal LM with its chat template."""

from __future__ import annotations

import os
from typing import Sequence

from exvad_ray.errors import ConfigError, ExvadError
from exvad_ray.models._util import chunks
from exvad_ray.models.profiles import ExplainerSpec, model_id, resolve_device, resolve_dtype


class TransformersExplainer:
    """Batched, left-padded ``generate`` over chat-templated prompts; greedy unless temperature > 0."""

    def __init__(self, spec: ExplainerSpec):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.spec = spec
        self.device = resolve_device(spec.device)
        self.dtype = resolve_dtype(spec.dtype, self.device)
        path = os.path.expanduser(spec.model)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModelForCausalLM.from_pretrained(path, dtype=self.dtype).to(self.device).eval()
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load explanation LM {spec.model!r}: {exc}") from exc
        if self.tokenizer.chat_template is None:
            raise ConfigError(f"explanation LM {spec.model!r} has no chat template")
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "left"
        self.model_id = model_id(spec.model)
        self.generated_tokens = 0  # running count, for throughput measurements
        self._torch = torch

    def explain(self, list_of_messages: Sequence[list[dict[str, str]]]) -> list[str]:
        """One explanation per conversation (list of chat messages)."""
        if isinstance(list_of_messages, dict) or (list_of_messages and isinstance(list_of_messages[0], dict)):
            raise ExvadError("explain takes a list of conversations (each a list of messages)")
        torch = self._torch
        out: list[str] = []
        sample = self.spec.temperature > 0
        for sl in chunks(len(list_of_messages), self.spec.batch_size):
            prompts = [self.tokenizer.apply_chat_template(list(m), add_generation_prompt=True, tokenize=False)
                       for m in list_of_messages[sl]]
            enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
            if sample:
                torch.manual_seed(self.spec.seed)
            with torch.inference_mode():
                gen = self.model.generate(
                    **enc, max_new_tokens=self.spec.max_new_tokens, do_sample=sample,
                    temperature=self.spec.temperature if sample else None, top_p=None, top_k=None,
                    pad_token_id=self.tokenizer.pad_token_id,
                )
            new = gen[:, enc["input_ids"].shape[1]:]
            self.generated_tokens += int((new != self.tokenizer.pad_token_id).sum())  # finished rows are padded
            out.extend(t.strip() for t in self.tokenizer.batch_decode(new, skip_special_tokens=True))
        return out


def build_explainer(spec: ExplainerSpec):
    """The explanation backend of a profile run inside the stage: a transformers LM or the deterministic
    caption summary (``backend: summary``). The vLLM backend is a Ray Data processor instead
    (``build_vllm_explainer``)."""
    if spec.backend == "summary":
        from exvad_ray.models.summary import SummaryExplainer

        return SummaryExplainer(spec)
    return TransformersExplainer(spec)
