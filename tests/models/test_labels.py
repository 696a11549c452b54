from __future__ import annotations

import numpy as np
import pytest

from exvad_ray.errors import ConfigError
from exvad_ray.models import class_embeddings, load_label_set

UCF = ["Abuse", "Arrest", "Arson", "Assault", "Burglary", "Explosion", "Fighting", "RoadAccidents", "Robbery",
       "Shooting", "Shoplifting", "Stealing", "Vandalism"]
XD = ["Fighting", "Shooting", "Riot", "Abuse", "Car accident", "Explosion"]


@pytest.mark.parametrize("name, classes", [("ucf-crime", UCF), ("xd-violence", XD), ("ucf_crime", UCF)])
def test_builtin_label_sets(name, classes):
    ls = load_label_set(name)
    assert ls.class_names == ["Normal", *classes]
    assert ls.anomaly_classes == classes
    for c in ls.classes:
        assert len(c.descriptions) >= 8 and len(set(c.descriptions)) == len(c.descriptions)
        assert c.label_text


def test_custom_label_set_loads_the_same_way(tmp_path):
    p = tmp_path / "site.yaml"
    p.write_text("name: site\nnormal: Quiet\nclasses:\n  - name: Intrusion\n    descriptions: [a, b]\n"
                 "  - name: Quiet\n    prompt: nothing happens\n    descriptions: [c]\n")
    ls = load_label_set(p)
    assert ls.class_names == ["Quiet", "Intrusion"]  # normal first, whatever the file order
    assert ls.classes[1].label_text == "intrusion"
    p.write_text("name: x\nclasses:\n  - name: A\n  - name: A\n")
    with pytest.raises(ConfigError, match="duplicate"):
        load_label_set(p)
    with pytest.raises(ConfigError, match="unknown label"):
        load_label_set("no-such-taxonomy")


class FakeClip:
    """Text tower returning constructed vectors, so the expected top-k is known exactly."""

    def __init__(self, table: dict[str, list[float]]):
        self.table = table
        self.dim = 3

    def embed_texts(self, texts):
        v = np.array([self.table[t] for t in texts], dtype=np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_top_k_selection_follows_similarity_to_the_label(tmp_path):
    p = tmp_path / "two.yaml"
    p.write_text("name: two\nclasses:\n"
                 "  - name: Normal\n    descriptions: [n1]\n"
                 "  - name: Fire\n    prompt: fire\n    descriptions: [far, near, mid, nearest, opposite]\n")
    table = {"normal": [0, 0, 1], "n1": [0, 0.1, 1], "fire": [1, 0, 0],
             "far": [0.1, 1, 0], "near": [0.9, 0.3, 0], "mid": [0.5, 0.5, 0], "nearest": [1, 0.05, 0],
             "opposite": [-1, 0, 0]}
    emb, selected = class_embeddings(FakeClip(table), load_label_set(p), k=3)
    assert selected["Fire"] == ["nearest", "near", "mid"]
    assert selected["Normal"] == ["n1"]  # fewer than k: all kept
    assert emb.shape == (2, 3) and emb.dtype == np.float32
    fc = FakeClip(table)
    vecs = fc.embed_texts(["fire", "nearest", "near", "mid"])
    expect = vecs.mean(0) / np.linalg.norm(vecs.mean(0))
    np.testing.assert_allclose(emb[1], expect, atol=1e-6)


def test_class_embeddings_with_tiny_clip(clip):
    emb, selected = class_embeddings(clip, "ucf-crime", k=4)
    assert emb.shape == (14, clip.dim) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert list(selected) == load_label_set("ucf-crime").class_names
    assert all(len(v) == 4 for v in selected.values())
    emb2, selected2 = class_embeddings(clip, "ucf-crime", k=4)
    np.testing.assert_array_equal(emb, emb2)
    assert selected == selected2


def test_label_set_embeddings_match_class_embeddings(tiny_dir, clip):
    from exvad_ray.models import class_embeddings, label_set_embeddings, load_label_set

    emb, names = label_set_embeddings("synthetic", "tiny", k=4)
    ls = load_label_set("synthetic")
    ref, _ = class_embeddings(clip, ls, k=4)
    assert names == ls.class_names and names[0] == "Normal"
    np.testing.assert_allclose(emb, ref, rtol=1e-5, atol=1e-6)
