"""Clip saliency losses (pure functions on tensors).

Notation: ``s`` (B, L) predicted saliency logits, ``y`` (B, L) saliency targets (higher = more
salient; mean annotator score, or 1 inside a ground-truth window and 0 outside), ``m`` (B, L) the
clip mask. All three return a scalar; the arithmetic runs in float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from masra.grounding.masking import MASKED_LOGIT

__all__ = ["negative_pair_loss", "saliency_margin_loss", "saliency_rank_contrastive_loss"]


def saliency_margin_loss(scores: Tensor, target: Tensor, mask: Tensor, margin: float) -> Tensor:
    """Hinge over every ordered clip pair of a video whose targets differ.

        L = mean_{(b, i, j): y_bi > y_bj} max(0, margin + s_bj - s_bi)

    Returns 0 when no video has two clips with different targets.
    """
    s, y = scores.float(), target.float()
    valid = mask[:, :, None] & mask[:, None, :]  # (B, L, L)
    pairs = valid & (y[:, :, None] > y[:, None, :])  # i more salient than j
    hinge = (margin + s[:, None, :] - s[:, :, None]).clamp(min=0)  # (B, i, j)
    return (hinge * pairs).sum() / pairs.sum().clamp(min=1)


def saliency_rank_contrastive_loss(
    scores: Tensor,
    target: Tensor,
    mask: Tensor,
    levels: int,
    temperature: float,
    extra_negatives: Tensor | None = None,
) -> Tensor:
    """Rank-contrastive InfoNCE over clips at ``levels`` saliency thresholds.

    For threshold ``k`` of video ``b``, ``tau_bk = k / levels * max_i y_bi``; the positives are the real
    clips with ``y >= tau_bk`` and the softmax runs over all real clips (plus ``extra_negatives``,
    e.g. the same video's clips under a mismatched query, (B', L') with :data:`SALIENCY_PAD`-style
    values where padded, for the first B' <= B videos):

        L_bk = -1/|P_bk| sum_{i in P_bk} log softmax(s_b / T)_i

    averaged over videos with a positive target and over thresholds. A binary target gives the same
    term at every threshold.
    """
    s = scores.float() / temperature
    y = target.float()
    logits = s.masked_fill(~mask, MASKED_LOGIT)  # (B, L)
    if extra_negatives is not None:
        extra = extra_negatives.float()
        if extra.shape[0] < logits.shape[0]:  # only the first rows have them: pad the rest out
            pad = extra.new_full((logits.shape[0] - extra.shape[0], extra.shape[1]), MASKED_LOGIT)
            extra = torch.cat([extra, pad])
        logits = torch.cat([logits, extra / temperature], dim=1)
    log_prob = (logits - torch.logsumexp(logits, dim=1, keepdim=True))[:, : s.shape[1]]  # (B, L)
    top = y.masked_fill(~mask, 0).amax(dim=1)  # (B,)
    steps = torch.arange(1, levels + 1, device=s.device, dtype=torch.float32) / levels  # (K,)
    thresholds = steps[None, :] * top[:, None]  # (B, K)
    pos = mask[:, None, :] & (y[:, None, :] >= thresholds[..., None])  # (B, K, L)
    per = -(log_prob[:, None, :] * pos).sum(-1) / pos.sum(-1).clamp(min=1)  # (B, K)
    has_pos = (top > 0).float()  # (B,)
    return (per.mean(1) * has_pos).sum() / has_pos.sum().clamp(min=1)


def negative_pair_loss(scores_neg: Tensor, mask: Tensor) -> Tensor:
    """A clip under a mismatched query must score low: mean_{real i} -log(1 - sigmoid(s_neg_i))."""
    per = F.softplus(scores_neg.float())  # -log(1 - sigmoid(x)) = softplus(x)
    return (per * mask).sum() / mask.sum().clamp(min=1)
