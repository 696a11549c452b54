from __future__ import annotations

import numpy as np
import pytest

from exvad_ray.errors import ExvadError
from exvad_ray.models import build_explanation_messages, clean_captions
from exvad_ray.models.prompts import build_video_summary_messages, format_timed_captions


def test_clean_captions_picks_most_similar_caption():
    caps = ["a man walks", "a car burns", "two people fight"]
    cap_f = np.eye(3, dtype=np.float32)
    # frame 0 looks like caption 2, frame 1 like caption 1, frame 2 like caption 2 (unnormalised on purpose)
    img_f = np.array([[0.1, 0.2, 5.0], [0.0, 1.0, 0.3], [0.2, 0.1, 0.4]], dtype=np.float32)
    assert clean_captions(img_f, cap_f, caps) == ["two people fight", "a car burns", "two people fight"]
    assert clean_captions(np.zeros((0, 3)), cap_f, caps) == []
    with pytest.raises(ExvadError, match="3 captions but 2"):
        clean_captions(img_f, cap_f[:2], caps)
    with pytest.raises(ExvadError, match="feature sizes differ"):
        clean_captions(img_f[:, :2], cap_f, caps)


def test_clean_captions_with_clip_text_tower(clip):
    caps = ["a man climbs a fence", "a car crashes into a pole", "people walk in a park"]
    target = clip.embed_texts([caps[1], caps[1], caps[0]])  # constructed "image" features
    assert clean_captions(target, clip.embed_texts(caps), caps) == [caps[1], caps[1], caps[0]]


def test_explanation_messages_video_and_window():
    msgs = build_explanation_messages([(8.0, "a man falls"), (0.0, "a man walks"), (4.0, "a man walks")])
    assert [m["role"] for m in msgs] == ["system", "user"]
    user = msgs[1]["content"]
    assert "[0.0 s - 4.0 s] a man walks" in user and "[8.0 s] a man falls" in user
    assert user.index("a man walks") < user.index("a man falls")
    assert "abnormal" in user and "the video" in user
    win = build_explanation_messages([(130.0, "fire")], window=(120.0, 256.5))[1]["content"]
    assert "from 120.0 s to 256.5 s" in win
    many = format_timed_captions([(float(i), f"c{i}") for i in range(500)], max_captions=10)
    assert len(many.splitlines()) == 10 and "c0" in many and "c499" in many
    summary = build_video_summary_messages([(0.0, 100.0, "normal"), (100.0, 200.0, "a fight at 150 s")])
    assert "[100.0 s - 200.0 s] a fight at 150 s" in summary[1]["content"]
