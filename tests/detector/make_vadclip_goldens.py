"""Write tests/detector/data/vadclip_goldens.npz: for the shrunk UCF and XD settings, random
reference weights (in the project's names), class embeddings, a full and a padded batch, and what
VadCLIP's own code outputs for them. Needs the clone:

    EXVAD_VADCLIP_REF=/path/to/VadCLIP python tests/detector/make_vadclip_goldens.py
"""

from __future__ import annotations

import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import vadclip_ref as V  # noqa: E402


def main() -> None:
    root = V.ref_root()
    if root is None:
        raise SystemExit(f"set {V.REF_ENV} to a clone of nwpu-zxr/VadCLIP")
    torch.set_num_threads(1)
    arrays: dict[str, np.ndarray] = {}
    for s in V.SMALL:
        emb = V.class_embeddings(s, 1)
        with V.reference_modules(root) as m:
            ref = V.Reference(m, s, emb, 0)
        arrays[f"{s.name}/class_embeddings"] = emb.numpy()
        for k, v in V.weights_for_detector(ref.net, s.layers).items():
            arrays[f"{s.name}/weights/{k}"] = v.numpy()
        for kind, b in V.batches(s, 2).items():
            out = ref.run(b["features"], b["lengths"], b["labels"])
            for k, v in b.items():
                arrays[f"{s.name}/{kind}/{k}"] = v.numpy()
            for k in V.OUTPUTS:
                arrays[f"{s.name}/{kind}/out/{k}"] = out[k].detach().numpy()
    os.makedirs(os.path.dirname(V.GOLDENS), exist_ok=True)
    np.savez_compressed(V.GOLDENS, **arrays)
    print(f"{V.GOLDENS}: {os.path.getsize(V.GOLDENS)} bytes, {len(arrays)} arrays")


if __name__ == "__main__":
    main()
