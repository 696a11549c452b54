"""exvad_ray.records: what counts as normal footage is decided once, for the fit and the scoring."""

from __future__ import annotations

from exvad_ray.pipeline.normality_scoring import is_normal
from exvad_ray.records import normal_labels


def test_normal_labels_in_any_spelling():
    assert normal_labels(["Normal"]) and normal_labels(["normal"]) and normal_labels(["NORMAL", "Normal"])
    assert normal_labels([]) and normal_labels(None)  # a labels row without classes
    assert not normal_labels(["Normal", "Fighting"]) and not normal_labels(["Abnormal"])
    # the normality scoring's calibration footage and the fit's bank use the same rule
    assert is_normal({"labels": ["normal"]}) and not is_normal(None) and not is_normal({"labels": ["Arson"]})
