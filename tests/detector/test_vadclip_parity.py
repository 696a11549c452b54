"""Reference parity: in `reference_parity` mode the detector and the losses compute what VadCLIP's
code (nwpu-zxr/VadCLIP) computes, on full and on padded batches, for the UCF and XD settings.

With EXVAD_VADCLIP_REF pointing at a clone, the reference network itself is built (random weights,
CLIP stubbed) at full size; without it, stored goldens produced the same way (shrunk sizes,
`make_vadclip_goldens.py`) stand in for it.
"""

import os
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
import vadclip_ref as V  # noqa: E402

from exvad_ray.detector import DetectorOutput, ExVADNet, LossWeights, exvad_loss  # noqa: E402

TOL = 1e-5


def _ours(net: ExVADNet, batch: dict[str, torch.Tensor], contrast: float) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        out: DetectorOutput = net(batch["features"], batch["lengths"])
        total, parts = exvad_loss(out, batch["lengths"], batch["labels"], LossWeights(contrast=contrast))
    return {"binary_logits": out.binary_logits, "align_logits": out.align_logits,
            "class_features": out.class_features, **{k: torch.tensor(v) for k, v in parts.items()}}


def _max_diffs(ours: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> dict[str, float]:
    return {k: float((ours[k] - torch.as_tensor(ref[k])).abs().max()) for k in V.OUTPUTS}


def _goldens() -> dict[str, np.ndarray]:
    with np.load(V.GOLDENS) as z:
        return {k: z[k] for k in z.files}


@pytest.mark.parametrize("setting", V.SMALL, ids=lambda s: s.name)
def test_parity_with_stored_reference_outputs(setting):
    g = _goldens()
    s = setting.name
    weights = {k.split("/weights/", 1)[1]: torch.from_numpy(v) for k, v in g.items() if k.startswith(f"{s}/weights/")}
    net = V.parity_detector(setting, torch.from_numpy(g[f"{s}/class_embeddings"]), weights)
    for kind in ("full", "padded"):
        batch = {k: torch.from_numpy(g[f"{s}/{kind}/{k}"]) for k in ("features", "lengths", "labels")}
        diffs = _max_diffs(_ours(net, batch, setting.contrast), {k: g[f"{s}/{kind}/out/{k}"] for k in V.OUTPUTS})
        assert max(diffs.values()) <= TOL, (kind, diffs)


@pytest.mark.skipif(V.ref_root() is None, reason=f"{V.REF_ENV} does not point at a VadCLIP clone")
@pytest.mark.parametrize("setting", [V.UCF, V.XD], ids=lambda s: s.name)
def test_parity_with_the_reference_code(setting):
    emb = V.class_embeddings(setting, 1)
    with V.reference_modules(V.ref_root()) as ref_model:
        ref = V.Reference(ref_model, setting, emb, seed=0)
    net = V.parity_detector(setting, emb, V.weights_for_detector(ref.net, setting.layers))
    for kind, batch in V.batches(setting, 2).items():
        with torch.no_grad():
            expected = ref.run(batch["features"], batch["lengths"], batch["labels"])
        diffs = _max_diffs(_ours(net, batch, setting.contrast), expected)
        assert max(diffs.values()) <= TOL, (kind, diffs)


def test_default_mode_differs_from_the_reference_only_through_padding():
    """Same weights without parity: identical on full-length videos, different on padded ones
    (the cleaner masking; docs/DETECTOR.md, deviations)."""
    g = _goldens()
    setting = V.SMALL[0]
    weights = {k.split("/weights/", 1)[1]: torch.from_numpy(v) for k, v in g.items() if k.startswith("ucf/weights/")}
    parity = V.parity_detector(setting, torch.from_numpy(g["ucf/class_embeddings"]), weights)
    cfg = setting.detector()
    cfg.reference_parity = False
    default = ExVADNet(cfg, torch.from_numpy(g["ucf/class_embeddings"]))
    default.load_state_dict(parity.state_dict())
    default.eval()
    for kind, same in (("full", True), ("padded", False)):
        batch = {k: torch.from_numpy(g[f"ucf/{kind}/{k}"]) for k in ("features", "lengths", "labels")}
        with torch.no_grad():
            a = parity(batch["features"], batch["lengths"]).binary_logits
            b = default(batch["features"], batch["lengths"]).binary_logits
        assert torch.allclose(a, b, atol=TOL) == same, kind
