"""The prior-loss weight decay (LossConfig.prior_decay_steps): its shape, and that a run stops paying
for priors once their weights reach 0."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from _train_world import make_world, tiny_overrides

from masra.grounding.config.model import LossConfig
from masra.grounding.config.train import load_train_config
from masra.grounding.train.recipe import run_training
from masra.grounding.train.step import prior_weight_scale


def test_scale_is_a_half_cosine_to_zero() -> None:
    assert [prior_weight_scale(s, 0) for s in (0, 10, 10_000)] == [1.0, 1.0, 1.0]
    values = [prior_weight_scale(s, 8) for s in range(10)]
    assert values[0] == 1.0 and values[4] == pytest.approx(0.5) and values[8:] == [0.0, 0.0]
    assert all(a > b for a, b in itertools.pairwise(values[:9]))
    with pytest.raises(ValueError, match="prior_decay_steps"):
        LossConfig(prior_decay_steps=-1)


def test_prior_losses_stop_after_the_decay(tmp_path: Path) -> None:
    card = make_world(tmp_path / "world", num_train=16, num_val=4, num_clips=10)
    over = tiny_overrides(card, epochs=3, batch_size=8, prior_video_ratio=0.5, loss={"prior_decay_steps": 2})
    cfg = load_train_config(str(card), None, over, no_config=True)
    run_training(cfg, tmp_path / "run")
    rows = [json.loads(x) for x in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    ends = [r for r in rows if r.get("epoch_end")]
    assert len(ends) == 3  # 2 steps per epoch: the decay ends with epoch 1
    assert "loss_esta_event" in ends[0] and "loss_lrca" in ends[0]
    assert not any(k.startswith(("loss_esta", "loss_lrca", "loss_sge")) for k in ends[2])
