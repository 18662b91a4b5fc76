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


def test_without_rows_skips_those_videos_priors() -> None:
    import torch

    from masra.grounding.data.batch import PriorBatch

    member = torch.ones(3, 2, 4, dtype=torch.bool)
    priors = PriorBatch(
        event_spans=torch.zeros(3, 2, 2),
        event_emb=torch.zeros(3, 2, 5),
        event_mask=torch.ones(3, 2, dtype=torch.bool),
        caption_emb=torch.zeros(3, 4, 5),
        caption_mask=torch.ones(3, 4, dtype=torch.bool),
        has_prior=torch.tensor([True, True, False]),
        member=member,
    )
    out = priors.without_rows(torch.tensor([False, True, False]))
    assert out.has_prior.tolist() == [True, False, False]
    assert out.member is not None and out.member.any(-1).any(-1).tolist() == [True, False, True]
    assert priors.has_prior.tolist() == [True, True, False]  # a copy


def _last_epoch_losses(tmp_path: Path, name: str, fraction: float) -> dict[str, float]:
    card = make_world(tmp_path / "world", num_train=16, num_val=4, num_clips=10)
    over = tiny_overrides(
        card,
        epochs=4,
        batch_size=8,
        label_fraction=fraction,
        prior_video_ratio=1.0,
        loss={"prior_decay_steps": 2, "prior_decay_scope": "labelled"},
    )
    cfg = load_train_config(str(card), None, over, no_config=True)
    run_training(cfg, tmp_path / name)
    rows = [json.loads(x) for x in (tmp_path / name / "train_log.jsonl").read_text().splitlines()]
    return [r for r in rows if r.get("epoch_end")][-1]


def test_decay_scoped_to_labelled_videos_keeps_the_others_priors(tmp_path: Path) -> None:
    # Every video labelled: after the decay no video has priors left, so the prior losses are 0.
    full = _last_epoch_losses(tmp_path, "full", 1.0)
    assert full["loss_esta_event"] == 0.0 and full["loss_lrca"] == 0.0
    # Half the queries labelled: the videos without a labelled query keep their priors.
    half = _last_epoch_losses(tmp_path, "half", 0.5)
    assert half["loss_esta_event"] > 0.0 and half["loss_lrca"] > 0.0
    with pytest.raises(ValueError, match="prior_decay_scope"):
        LossConfig(prior_decay_scope="some")
