"""Keyframe captioning with a transformers image-to-text model (BLIP-2 in the paper), batched ``generate``."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from exvad_ray.errors import ConfigError
from exvad_ray.models._util import as_images, chunks
from exvad_ray.models.profiles import CaptionerSpec, model_id, resolve_device, resolve_dtype


class Captioner:
    """``AutoProcessor`` + ``AutoModelForImageTextToText``/BLIP-2 ``from_pretrained``; greedy decoding."""

    def __init__(self, spec: CaptionerSpec):
        import torch
        import transformers

        self.spec = spec
        self.device = resolve_device(spec.device)
        self.dtype = resolve_dtype(spec.dtype, self.device)
        path = os.path.expanduser(spec.model)
        try:
            self.processor = transformers.AutoProcessor.from_pretrained(path)
            config = transformers.AutoConfig.from_pretrained(path)
            arch = (config.architectures or [""])[0]
            cls = getattr(transformers, arch, None) or transformers.AutoModelForImageTextToText
            self.model = cls.from_pretrained(path, dtype=self.dtype).to(self.device).eval()
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load captioner {spec.model!r}: {exc}") from exc
        tok = getattr(self.processor, "tokenizer", None)
        if tok is not None and tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        if tok is not None:
            tok.padding_side = "left"  # decoder-only text models generate after the prompt
        self.model_id = model_id(spec.model)
        self._torch = torch

    def caption(self, images: np.ndarray | Sequence[np.ndarray]) -> list[str]:
        """uint8 (N, H, W, 3) RGB -> N captions."""
        images = as_images(images)
        torch = self._torch
        prompt = self.spec.prompt
        captions: list[str] = []
        with torch.inference_mode():
            for sl in chunks(len(images), self.spec.batch_size):
                batch = list(images[sl])
                kwargs = {"images": batch, "return_tensors": "pt"}
                if prompt:
                    kwargs.update(text=[prompt] * len(batch), padding=True)
                inputs = self.processor(**kwargs).to(self.device)
                if "pixel_values" in inputs:
                    inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
                out = self.model.generate(**inputs, max_new_tokens=self.spec.max_new_tokens, do_sample=False,
                                          num_beams=1)
                for text in self.processor.batch_decode(out, skip_special_tokens=True):
                    text = text.strip()
                    if prompt and text.startswith(prompt):
                        text = text[len(prompt):].strip()
                    captions.append(text)
        return captions
