"""The training-cost candidates: ESTA reading SGE's prediction (``esta_reads_sge``) and SORA on the
query-free video features (``sora_placement: video``). Off by default; on, they keep every part's
loss and gradient path and do the work they replace once."""

from __future__ import annotations

import pytest
import torch

from masra.grounding.losses import build_criterion, weighted_total
from masra.grounding.model import build_model
from masra.grounding.model.sge import SemanticRelevance
from tests.test_model import LossConfig, _batch, _cfg

pytestmark = pytest.mark.usefixtures("one_thread")


def test_defaults_keep_the_published_layout() -> None:
    cfg = _cfg()
    assert not cfg.esta_reads_sge and cfg.sora_placement == "clip"
    assert build_model(cfg).esta_head is not None


def test_esta_reads_sge_shares_one_projection_and_one_clip_term() -> None:
    torch.manual_seed(0)
    cfg = _cfg(esta_reads_sge=True)
    model = build_model(cfg).train()
    assert model.esta_head is None
    batch = _batch()
    out = model(batch.video, batch.video_mask, batch.text, batch.text_mask)
    assert out["esta_clip"] is out["sge_pred"]
    criterion = build_criterion(LossConfig(), cfg)
    losses = criterion(out, batch)
    assert torch.equal(losses["esta_clip"], losses["sge"])  # one term, reported under both names
    assert losses["esta_event"] > 0
    weighted_total(losses, criterion.weights).backward()
    assert model.sge is not None and model.sge.predict.weight.grad is not None
    assert model.sge.predict.weight.grad.abs().sum() > 0


def test_esta_reads_sge_needs_sge_for_its_head() -> None:
    cfg = _cfg(esta_reads_sge=True, use_sge=False)
    assert not cfg.esta_on_sge
    assert build_model(cfg).esta_head is not None  # without SGE, ESTA keeps its own head


def test_sora_on_video_runs_once_per_video_and_learns() -> None:
    torch.manual_seed(0)
    cfg = _cfg(sora_placement="video")
    model = build_model(cfg).train()
    calls: list[int] = []
    assert model.sora is not None
    model.sora.register_forward_hook(lambda _m, inputs, _o: calls.append(inputs[0].shape[0]))
    batch = _batch()
    out = model(batch.video, batch.video_mask, batch.text, batch.text_mask)
    assert calls == [batch.video.shape[0]]  # B videos, not the 2B (matched, rolled) pairs
    criterion = build_criterion(LossConfig(), cfg)
    weighted_total(criterion(out, batch), criterion.weights).backward()
    assert model.sora.out.weight.grad is not None and model.sora.out.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        pred = model(batch.video, batch.video_mask, batch.text, batch.text_mask)
    assert pred["pred_spans"].shape == (batch.video.shape[0], cfg.num_queries, 2)


def test_sora_placement_is_checked() -> None:
    with pytest.raises(ValueError, match="sora_placement"):
        _cfg(sora_placement="decoder")


def test_relevance_scores_k_query_blocks_like_k_calls() -> None:
    """The matched and rolled-query relevance in one call equals one call per block."""
    torch.manual_seed(0)
    rel = SemanticRelevance(text_dim=6, prior_dim=5, dim=8)
    semantics = torch.randn(3, 4, 5)
    text, mask = torch.randn(6, 7, 6), torch.rand(6, 7) > 0.3
    both = rel.relevance(semantics, text, mask)
    assert both.shape == (6, 4)
    assert torch.allclose(both[:3], rel.relevance(semantics, text[:3], mask[:3]), atol=1e-6)
    assert torch.allclose(both[3:], rel.relevance(semantics, text[3:], mask[3:]), atol=1e-6)
    with pytest.raises(ValueError, match="queries for 3 videos"):
        rel.relevance(semantics, text[:4], mask[:4])


def test_video_ffn_dim_sets_the_video_layers_ffn_only() -> None:
    default = build_model(_cfg())
    assert default.video_encoder is not None
    assert all(layer.ffn is not None for layer in default.video_encoder.layers)
    attn_only = build_model(_cfg(video_ffn_dim=0))
    assert attn_only.video_encoder is not None
    assert all(layer.ffn is None for layer in attn_only.video_encoder.layers)
    assert all(layer.ffn is not None for layer in attn_only.clip_encoder.layers)  # the baseline's keep theirs
    narrow = build_model(_cfg(video_ffn_dim=16))
    assert narrow.video_encoder is not None
    ffn = narrow.video_encoder.layers[0].ffn
    assert ffn is not None and ffn.net[0].out_features == 16
    with pytest.raises(ValueError, match="video_ffn_dim"):
        _cfg(video_ffn_dim=-1)
