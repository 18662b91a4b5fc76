"""``model.negative_share``: only the first K samples of a training batch run the rolled-query pass.

At 1.0 (the default) every sample does, as before; below, the matched pass is unchanged and the
negatives of the first K samples are those the full pass would give them; the criterion's negative
terms read only those K rows."""

from __future__ import annotations

import pytest
import torch

from masra.grounding.losses import build_criterion, weighted_total
from masra.grounding.losses.saliency import saliency_rank_contrastive_loss
from masra.grounding.model import build_model
from tests.test_model import B, L, LossConfig, _batch, _cfg

pytestmark = pytest.mark.usefixtures("one_thread")


def _outputs(share: float) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = build_model(_cfg(negative_share=share, dropout=0.0, input_dropout=0.0)).train()
    batch = _batch()
    return model(batch.video, batch.video_mask, batch.text, batch.text_mask)


def test_negatives_count() -> None:
    model = build_model(_cfg(negative_share=0.25))
    assert [model.negatives(n) for n in (32, 3, 1)] == [8, 1, 1]
    assert build_model(_cfg(negative_share=0.0)).negatives(32) == 0
    assert build_model(_cfg()).negatives(32) == 32


def test_share_is_checked() -> None:
    with pytest.raises(ValueError, match="negative_share"):
        _cfg(negative_share=1.5)
    with pytest.raises(ValueError, match="negative_share"):
        _cfg(negative_share=-0.1)


def test_partial_pass_keeps_the_matched_outputs_and_the_first_negatives() -> None:
    full, part = _outputs(1.0), _outputs(2 / 3)  # B = 3: K = 2
    assert full["saliency_neg"].shape == (B, L) and part["saliency_neg"].shape == (2, L)
    for key in ("saliency", "pred_spans", "pred_logits", "semantic_relevance", "dai_relevance"):
        assert torch.allclose(full[key], part[key], atol=1e-5), key
    assert torch.allclose(full["saliency_neg"][:2], part["saliency_neg"], atol=1e-5)


def test_no_share_runs_no_negative_pass_and_still_trains() -> None:
    torch.manual_seed(0)
    cfg = _cfg(negative_share=0.0)
    model = build_model(cfg).train()
    batch = _batch()
    out = model(batch.video, batch.video_mask, batch.text, batch.text_mask)
    assert "saliency_neg" not in out
    criterion = build_criterion(LossConfig(), cfg)
    losses = criterion(out, batch)
    assert "saliency_neg" not in losses
    weighted_total(losses, criterion.weights).backward()
    params = dict(model.saliency_head.named_parameters())
    *inner, last_bias = params
    assert all((g := params[n].grad) is not None and g.abs().sum() > 0 for n in inner)
    # the saliency terms left compare clips with each other (shift-invariant), so the head's last
    # bias learns only from the negative term: without it its gradient is zero up to rounding
    bias_grad = params[last_bias].grad
    assert last_bias.endswith("bias") and bias_grad is not None and bias_grad.abs().max() < 1e-6


def test_criterion_reads_the_first_rows_of_the_mask() -> None:
    cfg = _cfg(negative_share=2 / 3)
    out = _outputs(2 / 3)
    batch = _batch()
    losses = build_criterion(LossConfig(), cfg)(out, batch)
    mask = batch.video_mask[:2]
    expected = (torch.nn.functional.softplus(out["saliency_neg"]) * mask).sum() / mask.sum()
    assert torch.allclose(losses["saliency_neg"], expected)


def test_rank_term_gives_extra_negatives_to_the_first_rows_only() -> None:
    gen = torch.Generator().manual_seed(1)
    scores, extra = torch.randn(3, 6, generator=gen), torch.randn(2, 6, generator=gen)
    target = (torch.rand(3, 6, generator=gen) > 0.5).float()
    target[:, 0] = 1.0  # every video has a positive
    mask = torch.ones(3, 6, dtype=torch.bool)
    both = saliency_rank_contrastive_loss(scores, target, mask, 4, 0.5, extra)
    first = saliency_rank_contrastive_loss(scores[:2], target[:2], mask[:2], 4, 0.5, extra)
    last = saliency_rank_contrastive_loss(scores[2:], target[2:], mask[2:], 4, 0.5)
    assert torch.allclose(both, (2 * first + last) / 3, atol=1e-6)
