"""A trained model on a video five times longer than it was trained on (slow: trains for ~15 s).

The toy world's videos have 16 clips. After training, every validation query the model answers on
its own video (top-1 IoU >= 0.5) is asked again with that video embedded late in an 80-clip video of
noise: the Grounder, by windows, must still find it, where a single pass over the first 16 clips
(a length cap) cannot.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _train_world import make_world, tiny_overrides

from masra.datasets.card import load_card
from masra.datasets.features import l2_normalize, load_text_features, load_video_features
from masra.datasets.readers import load_queries
from masra.grounding.infer.grounder import Grounder

LONG, OFFSET = 80, 56  # the original 16 clips become clips 56-71 of 80


def iou(a: list[float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / ((a[1] - a[0]) + (b[1] - b[0]) - inter)


@pytest.mark.slow
def test_answers_found_far_past_the_trained_length(tmp_path: Path) -> None:
    from masra.grounding.config import load_train_config
    from masra.grounding.train.recipe import run_training

    card_path = make_world(tmp_path / "data", num_train=64, num_val=16)
    cfg = load_train_config(
        str(card_path), None,
        tiny_overrides(card_path, epochs=60, eval_every=20, batch_size=16, lr=1e-3, masra=False),
        no_config=True,
    )  # fmt: skip
    run_training(cfg, tmp_path / "run")
    g = Grounder.from_pretrained(tmp_path / "run" / "best")
    card = load_card(card_path)
    rng = np.random.default_rng(5)
    answered = 0
    for q in load_queries(card, "val")[0]:
        video = load_video_features(card, q.vid)  # (16, Dv)
        tokens = load_text_features(card, q.qid)[0]
        [own] = g.predict(video, tokens)
        if iou(own.windows[0], q.windows[0]) < 0.5:
            continue
        answered += 1
        noise = l2_normalize(rng.normal(size=(LONG, video.shape[1])).astype(np.float32))
        long = noise.copy()
        long[OFFSET : OFFSET + len(video)] = video
        target = (q.windows[0][0] + OFFSET * card.clip_len, q.windows[0][1] + OFFSET * card.clip_len)
        [res] = g.predict(long, tokens)
        assert res.num_windows > 1
        assert iou(res.windows[0], target) >= 0.5, (q.qid, res.windows[:3], target)
        [capped] = g.predict(long[:16], tokens)
        assert all(e <= 32.0 for _, e, _ in capped.windows)  # a 16-clip cap never reaches 112 s
    assert answered >= 3  # the check ran on real answers, not on none
