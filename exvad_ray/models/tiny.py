"""Tiny, randomly initialised models of the paper's architectures, built offline.

`make_tiny_models(DIR)` writes three models in their ecosystems' standard formats, so the same
loaders that read the real models read these:
- ``clip/``: open_clip ``open_clip_config.json`` + ``open_clip_model.safetensors`` (open_clip's own BPE
  tokenizer), loaded with ``create_model_and_transforms('local-dir:DIR/clip')``;
- ``captioner/``: transformers ``Blip2ForConditionalGeneration`` + ``Blip2Processor`` (``save_pretrained``);
- ``llm/``: transformers ``Qwen2ForCausalLM`` + fast tokenizer with a ChatML chat template.
Tokenizers are trained here with `tokenizers` on a generated corpus; nothing is downloaded.
The architectures are data: ``architectures/tiny_*.json``.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from exvad_ray.errors import ConfigError

log = logging.getLogger(__name__)

ARCH_DIR = Path(__file__).parent / "architectures"
FORMAT_VERSION = 1


def architecture(name: str) -> dict[str, Any]:
    """Load an architecture description (``architectures/<name>.json``)."""
    path = ARCH_DIR / f"{name}.json"
    if not path.is_file():
        raise ConfigError(f"unknown architecture {name!r} (no {path})")
    return json.loads(path.read_text())


def _corpus() -> list[str]:
    """A deterministic English corpus of scene descriptions for training the tiny tokenizers."""
    subjects = ["a man", "a woman", "two people", "a group of people", "a person", "a child", "a police officer",
                "a car", "a truck", "a crowd", "a dog", "a cyclist", "someone", "the driver", "a shopper"]
    actions = ["is walking", "is running", "is standing", "is fighting", "is sitting", "climbs a fence",
               "breaks a window", "opens a door", "carries a bag", "falls down", "is shooting", "steals a wallet",
               "sets a fire", "crashes into a pole", "is arguing", "is hitting another person", "drives away"]
    places = ["in a street", "in a parking lot", "inside a store", "at night", "near a building", "on a road",
              "in an office", "at a gas station", "in a hallway", "on a sidewalk", "in a park", "at the entrance"]
    lines = [f"{s} {a} {p}." for s, a, p in itertools.product(subjects, actions, places)]
    lines += [
        "The video shows normal activity with no anomaly.",
        "At 12.0 s a fight starts; an abnormal event is visible until 30.5 s.",
        "You are a video analyst. Explain what is abnormal in the video and when it happens.",
        "Captions with timestamps: [0.0 s] [8.5 s] [16.0 s] explosion smoke fire road accident robbery",
        "abuse arrest arson assault burglary explosion fighting road accidents robbery shooting shoplifting "
        "stealing vandalism riot car accident normal violence",
    ]
    return lines


def _train_tokenizer(spec: dict[str, Any], out_dir: Path, chat_template: str | None = None):
    """Train a byte-level BPE tokenizer and save it as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = [t for t in [spec.get("unk"), spec.get("pad"), spec.get("bos"), spec.get("eos")] if t]
    specials += [t for t in spec.get("extra_special", []) if t not in specials]
    specials = list(dict.fromkeys(specials))
    tok = Tokenizer(models.BPE(unk_token=spec.get("unk")))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=spec["vocab_size"], special_tokens=specials, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    if spec.get("bos"):  # OPT prepends </s> as BOS, like the real facebook/opt tokenizer
        bos = spec["bos"]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))]
        )
    kwargs = {k: spec[k] for k in ("bos", "eos", "pad", "unk") if spec.get(k)}
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        **{f"{k}_token": v for k, v in kwargs.items()},
        additional_special_tokens=[t for t in spec.get("extra_special", []) if t not in kwargs.values()],
        model_max_length=4096,
    )
    if chat_template:
        fast.chat_template = chat_template
    fast.save_pretrained(out_dir)
    _portable_tokenizer_config(out_dir, chat_template)
    return fast


def _portable_tokenizer_config(out_dir: Path, chat_template: str | None) -> None:
    """Make the saved tokenizer load with older transformers too (the vLLM environment's)."""
    cfg_path = out_dir / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    if chat_template:
        cfg["chat_template"] = chat_template
    cfg_path.write_text(json.dumps(cfg, indent=2))


def _write_meta(path: Path, model_id: str, arch: str, seed: int) -> None:
    (path / "exvad_model.json").write_text(json.dumps(
        {"model_id": model_id, "architecture": arch, "seed": seed, "random_weights": True}, indent=2))


def make_tiny_clip(out_dir: Path, seed: int = 0) -> Path:
    """open_clip CLIP with a registered config and a saved state dict (safetensors)."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    arch = architecture("tiny_clip")
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = {"model_cfg": arch["model_cfg"], "preprocess_cfg": arch["preprocess_cfg"]}
    (out_dir / "open_clip_config.json").write_text(json.dumps(cfg, indent=2))
    torch.manual_seed(seed)
    model = open_clip.CLIP(**arch["model_cfg"])
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out_dir / "open_clip_model.safetensors"))
    _write_meta(out_dir, f"exvad-tiny/clip-vit@seed{seed}", "open_clip CLIP (ViT)", seed)
    return out_dir


def make_tiny_captioner(out_dir: Path, seed: int = 0) -> Path:
    """BLIP-2 (vision ViT + Q-Former + OPT) with a Blip2Processor, saved with save_pretrained."""
    import torch
    from transformers import Blip2Config, Blip2ForConditionalGeneration, Blip2Processor, BlipImageProcessor

    arch = architecture("tiny_blip2")
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = _train_tokenizer(arch["tokenizer"], Path(tmp))
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    text_cfg = dict(arch["text_config"])
    text_cfg.update(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                    eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    config = Blip2Config(
        vision_config=arch["vision_config"], qformer_config=arch["qformer_config"], text_config=text_cfg,
        num_query_tokens=arch["num_query_tokens"], image_token_index=image_token_id,
    )
    torch.manual_seed(seed)
    model = Blip2ForConditionalGeneration(config).eval()
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    size = arch["image_size"]
    image_processor = BlipImageProcessor(
        size={"height": size, "width": size},
        image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711],
    )
    processor = Blip2Processor(image_processor=image_processor, tokenizer=tokenizer,
                               num_query_tokens=arch["num_query_tokens"])
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    _portable_tokenizer_config(out_dir, None)
    _write_meta(out_dir, f"exvad-tiny/blip2-opt@seed{seed}", "Blip2ForConditionalGeneration", seed)
    return out_dir


def make_tiny_llm(out_dir: Path, seed: int = 0) -> Path:
    """Qwen2 causal LM with a locally trained tokenizer and a ChatML chat template."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    arch = architecture("tiny_qwen2")
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_tokenizer(arch["tokenizer"], out_dir, chat_template=arch["chat_template"])
    cfg = {k: v for k, v in arch["config"].items() if k != "model_type"}
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    config = Qwen2Config(vocab_size=len(tokenizer), eos_token_id=eos, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=None, **cfg)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).eval()
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.do_sample = False
    model.save_pretrained(out_dir)
    _write_meta(out_dir, f"exvad-tiny/qwen2-chat@seed{seed}", "Qwen2ForCausalLM", seed)
    return out_dir


def make_tiny_models(out_dir: str | os.PathLike, seed: int = 0) -> Path:
    """Build all three tiny models under ``out_dir`` (written to a temp dir, then moved into place)."""
    out = Path(os.path.expanduser(str(out_dir))).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-", dir=out.parent))
    try:
        make_tiny_clip(tmp / "clip", seed)
        make_tiny_captioner(tmp / "captioner", seed)
        make_tiny_llm(tmp / "llm", seed)
        (tmp / "MANIFEST.json").write_text(json.dumps(
            {"format": FORMAT_VERSION, "seed": seed, "models": ["clip", "captioner", "llm"]}, indent=2))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("tiny models written to %s", out)
    return out


def ensure_tiny_models(out_dir: str | os.PathLike | None = None, seed: int = 0) -> Path:
    """Build the tiny models if ``out_dir`` (default: ``$EXVAD_TINY_MODELS``) does not hold them yet."""
    from exvad_ray.models.profiles import tiny_models_dir

    out = Path(os.path.expanduser(str(out_dir))) if out_dir else tiny_models_dir()
    manifest = out / "MANIFEST.json"
    if manifest.is_file():
        try:
            if json.loads(manifest.read_text()).get("format") == FORMAT_VERSION:
                return out
        except ValueError:
            pass
    return make_tiny_models(out, seed=seed)
