"""Build VadCLIP's own network (nwpu-zxr/VadCLIP, `src/model.py`) from a local clone, with random
weights and its CLIP stubbed, and copy its weights into the project's detector in parity mode.

Used by the live parity test (when EXVAD_VADCLIP_REF points at the clone's root) and by
`make_vadclip_goldens.py`, which stores reference inputs/outputs for CI without the clone. Nothing of
the reference is copied here: its modules are imported from the clone at test time.
"""

from __future__ import annotations

import contextlib
import os
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from exvad_ray.detector import DetectorConfig, ExVADNet

REF_ENV = "EXVAD_VADCLIP_REF"


@dataclass(frozen=True)
class Setting:
    """One reference configuration: `src/ucf_option.py` or `src/xd_option.py` (shrunk for goldens)."""

    name: str
    classes: int
    layers: int
    window: int
    dim: int = 512
    length: int = 256
    contrast: float = 0.1  # ucf_train.py: loss3 / 13 * 1e-1 (= mean |cos| x 0.1); xd_train.py: mean x 1e-4

    def detector(self) -> DetectorConfig:
        return DetectorConfig(embed_dim=self.dim, num_classes=self.classes, visual_length=self.length,
                              layers=self.layers, heads=1, attention_block=self.window, fusion="none", class_pooling="logits",
                              reference_parity=True)


UCF = Setting("ucf", classes=14, layers=2, window=8)
XD = Setting("xd", classes=7, layers=1, window=64, contrast=1e-4)
# shrunk copies for the stored goldens (the reference takes any width and length; window and layers kept)
SMALL = (Setting("ucf", classes=14, layers=2, window=8, dim=16, length=32),
         Setting("xd", classes=7, layers=1, window=64, dim=16, length=128, contrast=1e-4))
GOLDENS = os.path.join(os.path.dirname(__file__), "data", "vadclip_goldens.npz")
OUTPUTS = ("binary_logits", "align_logits", "class_features", "loss", "loss_bce", "loss_align", "loss_contrast")


def ref_root() -> str | None:
    root = os.environ.get(REF_ENV)
    return root if root and os.path.isfile(os.path.join(root, "src", "model.py")) else None


def _clip_stub() -> types.ModuleType:
    """`from clip import clip` + `clip.load(...)`: the visual branch never uses CLIP, the class
    features are replaced by fixed embeddings (see `build_reference`)."""
    pkg = types.ModuleType("clip")
    mod = types.ModuleType("clip.clip")
    mod.load = lambda *a, **k: (nn.Linear(1, 1), None)
    pkg.clip = mod
    return pkg


@contextlib.contextmanager
def reference_modules(root: str) -> Iterator[types.ModuleType]:
    """Import the clone's `model` module (and its `utils.layers`) and remove it from sys.modules after."""
    src = os.path.join(root, "src")
    stub = _clip_stub()
    saved = {k: sys.modules.get(k) for k in ("clip", "clip.clip", "model", "utils", "utils.layers")}
    sys.modules["clip"], sys.modules["clip.clip"] = stub, stub.clip
    for k in ("model", "utils", "utils.layers"):
        sys.modules.pop(k, None)
    sys.path.insert(0, src)
    try:
        import model as ref_model  # the clone's src/model.py

        yield ref_model
    finally:
        sys.path.remove(src)
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


@contextlib.contextmanager
def _cpu_only() -> Iterator[None]:
    """DistanceAdj moves its graph to 'cuda' unconditionally; keep it on the CPU."""
    orig = torch.Tensor.to

    def to(self: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        args = tuple("cpu" if a == "cuda" else a for a in args)
        return orig(self, *args, **kwargs)

    torch.Tensor.to = to  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.Tensor.to = orig  # type: ignore[method-assign]


class Reference:
    """VadCLIP's CLIPVAD with random weights; `run` returns what its training step computes."""

    def __init__(self, ref_model: types.ModuleType, setting: Setting, class_embeddings: torch.Tensor, seed: int):
        torch.manual_seed(seed)
        s = setting
        self.net = ref_model.CLIPVAD(s.classes, s.dim, s.length, s.dim, 1, s.layers, s.window, 10, 10, "cpu")
        with torch.no_grad():  # random biases too, so that no term hides behind a zero init
            for name, p in self.net.named_parameters():
                if name.endswith("bias") or "ln_" in name or "position" in name:
                    p.add_(0.1 * torch.randn_like(p))
        self.net.encode_textprompt = lambda text: class_embeddings  # the stubbed CLIP text branch
        self.net.eval()
        self.setting = s

    def run(self, x: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        with _cpu_only():
            text, logits1, logits2 = self.net(x, None, None, lengths)
        return {"binary_logits": logits1[..., 0], "align_logits": logits2, "class_features": text,
                **reference_losses(logits1, logits2, text, labels, lengths, self.setting)}


def reference_losses(logits1: torch.Tensor, logits2: torch.Tensor, text: torch.Tensor, labels: torch.Tensor,
                     lengths: torch.Tensor, setting: Setting) -> dict[str, torch.Tensor]:
    """The three loss terms as `ucf_train.py` / `xd_train.py` define them (CLAS2, CLASM, loss3),
    written from their definitions: per video the mean of the top int(len/16+1) values."""
    k = [int(int(n) / 16 + 1) for n in lengths]
    prob = torch.sigmoid(logits1[..., 0])
    video_p = torch.stack([prob[i, :int(n)].topk(k[i]).values.mean() for i, n in enumerate(lengths)])
    bce = torch.nn.functional.binary_cross_entropy(video_p, 1 - labels[:, 0])
    video_a = torch.stack([logits2[i, :int(n)].topk(k[i], dim=0).values.mean(0) for i, n in enumerate(lengths)])
    target = labels / labels.sum(1, keepdim=True)
    align = -(target * torch.log_softmax(video_a, dim=1)).sum(1).mean()
    normed = text / text.norm(dim=-1, keepdim=True)
    contrast = (normed[1:] @ normed[0]).abs().sum() / (setting.classes - 1)
    return {"loss_bce": bce, "loss_align": align, "loss_contrast": contrast,
            "loss": bce + align + setting.contrast * contrast}


def weights_for_detector(ref: nn.Module, layers: int) -> dict[str, torch.Tensor]:
    """Reference parameter names -> the project's (same layouts: MultiheadAttention's in_proj is the
    project's fused qkv Linear, q/k/v in the same order)."""
    sd = ref.state_dict()
    out = {"position.weight": sd["frame_position_embeddings.weight"]}
    for i in range(layers):
        r, o = f"temporal.resblocks.{i}.", f"blocks.{i}."
        out |= {o + "qkv.weight": sd[r + "attn.in_proj_weight"], o + "qkv.bias": sd[r + "attn.in_proj_bias"],
                o + "proj.weight": sd[r + "attn.out_proj.weight"], o + "proj.bias": sd[r + "attn.out_proj.bias"]}
        for ln in ("ln_1", "ln_2"):
            out |= {o + f"{ln}.{p}": sd[r + f"{ln}.{p}"] for p in ("weight", "bias")}
        out |= _mlp(sd, r + "mlp.", o + "mlp.")
    for g in ("gc1", "gc2", "gc3", "gc4"):
        out[f"{g}.weight"] = sd[f"{g}.weight"]
        for p in ("weight", "bias"):
            if f"{g}.residual.{p}" in sd:
                out[f"{g}.residual.{p}"] = sd[f"{g}.residual.{p}"]
    for m in ("mlp1", "mlp2"):
        out |= _mlp(sd, f"{m}.", f"{m}.")
    for m in ("linear", "classifier"):
        out |= {f"{m}.{p}": sd[f"{m}.{p}"] for p in ("weight", "bias")}
    return {k: v.detach().clone() for k, v in out.items()}


def _mlp(sd: dict[str, torch.Tensor], src: str, dst: str) -> dict[str, torch.Tensor]:
    return {f"{dst}{i}.{p}": sd[f"{src}{n}.{p}"] for i, n in ((0, "c_fc"), (2, "c_proj")) for p in ("weight", "bias")}


def parity_detector(setting: Setting, class_embeddings: torch.Tensor, weights: dict[str, torch.Tensor]) -> ExVADNet:
    net = ExVADNet(setting.detector(), class_embeddings)
    missing, unexpected = net.load_state_dict(weights, strict=False)
    assert not unexpected, unexpected
    assert set(missing) == {"class_embeddings", "context"}, missing  # context stays zero: no learned prompt yet
    return net.eval()


def batches(setting: Setting, seed: int) -> dict[str, dict[str, torch.Tensor]]:
    """A full batch (every video as long as the training length) and a padded one (short videos,
    zero padding as VadCLIP's `pad`), with multi-hot labels (Normal = class 0)."""
    g = torch.Generator().manual_seed(seed)
    t, c = setting.length, setting.classes
    out = {}
    for kind, lengths in (("full", [t, t, t]), ("padded", [t, t // 2 + 3, 5, t - 1])):
        x = torch.randn(len(lengths), t, setting.dim, generator=g)
        for i, n in enumerate(lengths):
            x[i, n:] = 0
        labels = torch.zeros(len(lengths), c)
        labels[0, 0] = 1  # a normal video
        for i in range(1, len(lengths)):
            labels[i, 1 + (i % (c - 1))] = 1
        labels[-1, 1 + ((len(lengths) + 1) % (c - 1))] = 1  # a multi-label one
        out[kind] = {"features": x, "lengths": torch.tensor(lengths), "labels": labels}
    return out


def class_embeddings(setting: Setting, seed: int) -> torch.Tensor:
    g = np.random.default_rng(seed)
    return torch.from_numpy(g.normal(size=(setting.classes, setting.dim)).astype(np.float32))
