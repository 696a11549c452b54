"""configs/labels/synthetic.yaml loads with the same loader as UCF-Crime's and names exactly the
classes the generator writes."""

from __future__ import annotations

from exvad_ray.models.labels import load_label_set
from exvad_ray.synth import CLASSES, NORMAL


def test_synthetic_label_set_matches_generator_classes() -> None:
    ls = load_label_set("synthetic")
    assert ls.name == "synthetic" and ls.normal == NORMAL
    assert ls.class_names == list(CLASSES)
    for c in ls.classes:
        assert len(c.descriptions) >= 8, c.name
        assert len(set(c.descriptions)) == len(c.descriptions)
        assert c.label_text == c.name.lower() or c.name == "FallingObject" or c.name == "CrowdRush"
