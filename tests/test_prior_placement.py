"""Where the priors act: the query-free video encoder, prior-only videos and the label fraction."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _train_world import make_world, tiny_overrides

from masra.grounding.config import LossConfig, ModelConfig, TrainConfig, load_train_config
from masra.grounding.data.batch import Batch, PriorBatch, VideoBatch
from masra.grounding.data.resident import label_subset
from masra.grounding.losses import build_criterion, weighted_total
from masra.grounding.model import build_model
from masra.grounding.train.recipe import run_training
from masra.grounding.train.trainer import TrainStep

B, L, E, DV, DT, DP = 3, 10, 3, 12, 16, 8
PRIOR_LOSSES = ("esta_event", "esta_clip", "sge", "lrca")


def _model_cfg(**kw: object) -> ModelConfig:
    base = {
        "video_dim": DV,
        "text_dim": DT,
        "prior_dim": DP,
        "hidden_dim": 32,
        "num_heads": 4,
        "ffn_dim": 64,
        "num_queries": 4,
        "lrca_dim": 8,
        "input_dropout": 0.0,
        "dropout": 0.0,
    }
    base.update(kw)
    return ModelConfig.from_dict(base)


def _priors(n: int, gen: torch.Generator, has: bool = True) -> PriorBatch:
    starts = torch.rand(n, E, generator=gen) * 0.6
    return PriorBatch(
        event_spans=torch.stack([starts, starts + 0.3], -1),
        event_emb=torch.randn(n, E, DP, generator=gen),
        event_mask=torch.ones(n, E, dtype=torch.bool),
        caption_emb=torch.randn(n, L, DP, generator=gen),
        caption_mask=torch.ones(n, L, dtype=torch.bool),
        has_prior=torch.full((n,), has),
    )


def _batch(gen: torch.Generator, has_prior: bool = True, extra: int = 0) -> Batch:
    return Batch(
        video=torch.randn(B, L, DV, generator=gen),
        video_mask=torch.ones(B, L, dtype=torch.bool),
        text=torch.randn(B, 5, DT, generator=gen),
        text_mask=torch.ones(B, 5, dtype=torch.bool),
        spans=[torch.tensor([[0.5, 0.2]]) for _ in range(B)],
        saliency=torch.rand(B, L, generator=gen),
        priors=_priors(B, gen, has_prior),
        meta=[{"qid": i} for i in range(B)],
        prior_videos=None
        if not extra
        else VideoBatch(
            video=torch.randn(extra, L, DV, generator=gen),
            video_mask=torch.ones(extra, L, dtype=torch.bool),
            priors=_priors(extra, gen),
        ),
    )


def _prior_grad(model_cfg: ModelConfig, batch: Batch, weight: float = 1.0) -> float:
    """Norm of the gradient of the weighted prior losses alone on the video encoder's parameters."""
    torch.manual_seed(0)
    model = build_model(model_cfg)
    step = TrainStep(model, build_criterion(LossConfig(), model_cfg)).train()
    _, losses = step(batch)
    prior = {k: v for k, v in losses.items() if k in PRIOR_LOSSES}
    assert set(prior) == set(PRIOR_LOSSES)
    weighted_total(prior, dict.fromkeys(prior, weight)).backward()
    assert model.video_encoder is not None
    grads = [p.grad for p in model.video_encoder.parameters() if p.grad is not None]
    return float(sum(g.norm() ** 2 for g in grads) ** 0.5) if grads else 0.0


def test_prior_gradients_reach_the_video_encoder_only_when_weighted() -> None:
    cfg = _model_cfg()
    gen = torch.Generator().manual_seed(1)
    batch = _batch(gen)
    assert _prior_grad(cfg, batch) > 1e-6
    assert _prior_grad(cfg, batch, weight=0.0) == 0.0
    # No priors in the batch (has_prior False): the prior losses give the encoder nothing.
    assert _prior_grad(cfg, _batch(torch.Generator().manual_seed(1), has_prior=False)) == 0.0


def test_a_video_without_a_query_trains_the_encoder_through_its_priors() -> None:
    cfg = _model_cfg()
    # The labelled videos carry no priors; only the appended query-less videos do.
    without = _batch(torch.Generator().manual_seed(2), has_prior=False)
    with_extra = _batch(torch.Generator().manual_seed(2), has_prior=False, extra=2)
    assert _prior_grad(cfg, without) == 0.0
    assert _prior_grad(cfg, with_extra) > 1e-6
    # One optimiser step on the prior losses alone moves the encoder's weights only with such videos.
    for batch, moves in ((without, False), (with_extra, True)):
        torch.manual_seed(0)
        model = build_model(cfg)
        assert model.video_encoder is not None
        before = [p.detach().clone() for p in model.video_encoder.parameters()]
        step = TrainStep(model, build_criterion(LossConfig(), cfg)).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        _, losses = step(batch)
        weighted_total(
            {k: v for k, v in losses.items() if k in PRIOR_LOSSES}, dict.fromkeys(PRIOR_LOSSES, 1.0)
        ).backward()
        opt.step()
        changed = any(
            not torch.equal(a, b) for a, b in zip(before, model.video_encoder.parameters(), strict=True)
        )
        assert changed == moves


def test_video_semantics_is_query_free_and_refused_for_cross_placement() -> None:
    cfg = _model_cfg()
    model = build_model(cfg).train()
    gen = torch.Generator().manual_seed(3)
    video, mask = torch.randn(2, L, DV, generator=gen), torch.ones(2, L, dtype=torch.bool)
    torch.manual_seed(0)
    heads = model.video_semantics(video, mask)
    assert set(heads) == {"esta_clip", "sge_pred", "lrca_clip"}
    assert heads["esta_clip"].shape == (2, L, DP) and heads["lrca_clip"].shape == (2, L, 8)
    # The same clips give the same heads inside a full forward pass, whatever the query.
    model.eval()
    text = torch.randn(2, 5, DT, generator=gen)
    tmask = torch.ones(2, 5, dtype=torch.bool)
    out_a = model(video, mask, text, tmask)
    out_b = model(video, mask, torch.randn(2, 5, DT, generator=gen), tmask)
    assert torch.allclose(out_a["sge_pred"], out_b["sge_pred"])
    assert not torch.allclose(out_a["saliency"], out_b["saliency"])
    assert "esta_clip" not in out_a and "semantic_relevance" in out_a
    cross = build_model(_model_cfg(prior_placement="cross"))
    assert cross.video_encoder is None and cross.semantic is None
    with pytest.raises(ValueError, match="prior_placement"):
        cross.video_semantics(video, mask)


def test_semantic_relevance_starts_as_the_prior_space_cosine() -> None:
    cfg = _model_cfg(text_dim=DP)
    model = build_model(cfg)
    assert model.semantic is not None
    sem = torch.randn(1, 4, DP)
    text = torch.randn(1, 3, DP)
    rel = model.semantic.relevance(sem, text, torch.ones(1, 3, dtype=torch.bool))
    expected = torch.nn.functional.cosine_similarity(sem[0], text[0].mean(0, keepdim=True), dim=-1)
    assert torch.allclose(rel[0], expected, atol=1e-5)


def test_label_subset_is_nested_and_sized() -> None:
    small, large = label_subset(100, 0.1, 7), label_subset(100, 0.5, 7)
    assert len(small) == 10 and len(large) == 50
    assert set(small.tolist()) <= set(large.tolist())
    assert not torch.equal(small, label_subset(100, 0.1, 8))
    assert len(label_subset(3, 0.01, 0)) == 1
    with pytest.raises(ValueError):
        label_subset(10, 0.0, 0)


def test_config_refuses_prior_videos_with_cross_placement() -> None:
    with pytest.raises(ValueError, match="prior_placement"):
        TrainConfig(prior_video_ratio=0.5, model={"prior_placement": "cross"})
    with pytest.raises(ValueError, match="label_fraction"):
        TrainConfig(label_fraction=1.5)


def test_training_with_a_label_fraction_and_prior_videos(tmp_path: Path) -> None:
    card = make_world(tmp_path / "world", num_train=12, num_val=4, num_clips=10)
    over = tiny_overrides(card, epochs=2, batch_size=4, label_fraction=0.5, prior_video_ratio=1.0)
    summary = run_training(load_train_config(str(card), None, over, no_config=True), tmp_path / "run")
    # 6 of 12 labelled queries at batch 4: 2 steps per epoch.
    assert summary["steps"] == 4
    losses = [json.loads(x) for x in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert all(line["loss_esta_event"] > 0 for line in losses if "loss_esta_event" in line)


def test_saliency_proposals_find_the_salient_run_and_keep_decoder_windows() -> None:
    from masra.grounding.config import PostprocessConfig
    from masra.grounding.infer.decode import predictions_from_outputs, saliency_proposals

    sal = [0.0, 0.1, 0.9, 1.0, 0.8, 0.1, 0.0, 0.2]
    out = saliency_proposals([[0.0, 4.0, 0.99]], sal, clip_len=2.0, duration=15.0)
    assert out[0][:2] == [4.0, 10.0]  # the run >= 0.5 ranks first, whatever the decoder's score
    assert [0.0, 4.0] in [w[:2] for w in out]  # the decoder's window is kept, ranked by contrast
    assert out[-1][1] <= 15.0 and all(a < b for a, b, _ in out)
    assert [w[2] for w in out] == sorted((w[2] for w in out), reverse=True)
    meta = [{"qid": 1, "vid": "v", "duration": 16.0, "clip_len": 2.0, "num_clips": 8}]
    rows = predictions_from_outputs(
        torch.tensor([[0.9, 0.1]]),
        torch.tensor([[[0.125, 0.25], [0.9, 0.1]]]),
        torch.tensor([sal]),
        meta,
        PostprocessConfig(proposals=True, top_k=3),
    )
    assert rows[0]["pred_relevant_windows"][0][:2] == [4.0, 10.0]
    assert len(rows[0]["pred_relevant_windows"]) == 3


def test_a_checkpoint_from_before_prior_placement_loads_as_cross(tmp_path: Path) -> None:
    from safetensors.torch import save_model

    from masra.grounding.checkpoint import CHECKPOINT_FORMAT, load_checkpoint

    cfg = _model_cfg(prior_placement="cross")
    model = build_model(cfg)
    save_model(model, str(tmp_path / "model.safetensors"))
    old = cfg.to_dict()
    for key in ("prior_placement", "num_video_layers", "semantic_relevance"):
        old.pop(key)  # the keys such a checkpoint's config.json lacks
    config = {"format": CHECKPOINT_FORMAT, "model": old, "loss": LossConfig().to_dict(), "train": {}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded, saved = load_checkpoint(tmp_path)
    assert saved["model"]["prior_placement"] == "cross" and loaded.video_encoder is None
    state = model.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in loaded.state_dict().items())
