"""NormalityModel: per-camera banks with the global fallback, evidence, serialisation without pickle."""

from __future__ import annotations

import numpy as np
import pytest

from exvad_ray.errors import ExvadError
from exvad_ray.normality import GLOBAL, BankBuilder, NormalityModel, calibrate_bank, detect_layout


def unit(x):
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def scene(rng, centre, n, noise=0.05):
    x = centre + noise * rng.standard_normal((n, 2, 8))
    return unit(x).reshape(n, 16)


def build(rng, centres, videos=6, n=80):
    lay = detect_layout(scene(rng, centres[0], 2))
    bb = BankBuilder(lay, cap=5000)
    vids = {}
    for v in range(videos):
        x = scene(rng, centres[v % len(centres)], n)
        vids[f"v{v}"] = x
        bb.add(f"v{v}", "cam01", x, np.arange(n), np.arange(n) * 0.64)
    bank = bb.build(trim_fraction=0.0)
    raws = [bank.search(x, exclude_video=v)[0] for v, x in vids.items()]
    return lay, bank, calibrate_bank(raws, [n * 0.64] * len(raws), (1.0, 1.0))


def test_scores_evidence_and_round_trip():
    rng = np.random.default_rng(0)
    centres = unit(rng.standard_normal((3, 2, 8)))
    lay, bank, cal = build(rng, centres)
    model = NormalityModel(lay, {GLOBAL: bank}, {GLOBAL: cal}, (1.0, 1.0), {"fit_s": 1.0})
    x = scene(rng, centres[1], 40).reshape(40, 2, 8)
    other_motion = unit(rng.standard_normal((2, 8)))[0]
    x[20:26, 1] = unit(other_motion + 0.05 * rng.standard_normal((6, 8)))  # unusual motion only
    x = x.reshape(40, 16)
    s = model.score(x, "new", "cam01")
    assert s.bank == GLOBAL and s.percentile.shape == (40,)
    assert s.percentile[20:26].min() > s.percentile[:20].max()
    assert s.segments() == [(20, 25)]
    ev = s.evidence(22)
    assert ev["unusual"] == "motion" and ev["halves"]["motion"] > ev["halves"]["appearance"]
    assert ev["nearest"]["video_id"].startswith("v") and ev["nearest"]["camera"] == "cam01"
    assert -1 <= ev["nearest"]["similarity"] <= 1 and ev["nearest"]["start_s"] == pytest.approx(
        ev["nearest"]["snippet_index"] * 0.64)
    data = model.to_bytes()
    assert b"pickle" not in data[:100]
    again = NormalityModel.from_bytes(data)
    assert np.allclose(again.score(x, "new").percentile, s.percentile) and again.card == {"fit_s": 1.0}
    with pytest.raises(ExvadError, match="not a normality model"):
        NormalityModel.from_bytes(b"garbage")
    import io

    doc = NormalityModel.describe(io.BytesIO(data))  # a file object: only the JSON member is read
    assert doc["format"] == "exvad-normality/1" and doc["banks"][0]["name"] == GLOBAL and doc["card"] == {"fit_s": 1.0}
    with pytest.raises(ExvadError, match="not a normality model"):
        NormalityModel.describe(io.BytesIO(b"PK\x03\x04 not a zip"))


def test_a_camera_without_a_bank_uses_the_global_one():
    rng = np.random.default_rng(1)
    centres = unit(rng.standard_normal((4, 2, 8)))
    lay, g, gcal = build(rng, centres)
    _lay, c1, c1cal = build(rng, centres[:1])
    model = NormalityModel(lay, {GLOBAL: g, "cam01": c1}, {GLOBAL: gcal, "cam01": c1cal}, (1.0, 1.0))
    x = scene(rng, centres[2], 30)
    assert model.bank_for("cam01") == "cam01" and model.bank_for("cam07") == GLOBAL and model.bank_for(None) == GLOBAL
    # cam01 only ever shows scene 0: scene 2 is unusual there, ordinary for the archive as a whole
    assert model.score(x, None, "cam01").percentile.mean() > 0.99
    assert model.score(x, None, "cam07").percentile.mean() < 0.9
    assert model.score(x, None, "cam07").bank == GLOBAL


def test_smoothing_averages_neighbouring_snippets_and_is_kept_by_the_model():
    from exvad_ray.normality import smooth_series

    r = np.array([[0.0, 1.0], [3.0, 1.0], [0.0, 1.0], [0.0, 4.0]])
    assert np.allclose(smooth_series(r, 1), r)
    assert np.allclose(smooth_series(r, 3)[:, 0], [1.0, 1.0, 1.0, 0.0])
    assert np.allclose(smooth_series(r, 3)[:, 1], [1.0, 1.0, 2.0, 3.0])
    rng = np.random.default_rng(2)
    centres = unit(rng.standard_normal((3, 2, 8)))
    lay, bank, cal = build(rng, centres)
    model = NormalityModel(lay, {GLOBAL: bank}, {GLOBAL: cal}, (1.0, 1.0), smooth=3)
    assert NormalityModel.from_bytes(model.to_bytes()).smooth == 3
