"""LRCA, local relational consistency alignment.

The MLLM's clip captions ``c`` (B, L, Dp) define a textual relation between nearby clips; the model's
clip features ``f`` (B, L, Dl) (a projection of the clip encoder's output) must relate the same way.
Within the local window ``W = {(i, j): 0 < |i - j| <= w}`` of clips that are real and captioned:

    P_ij = softmax_{j in W_i}(cos(c_i, c_j) / T_text)        target relation
    Q_ij = softmax_{j in W_i}(cos(f_i, f_j) / T_video)       model relation
    L_lrca = mean_{rows i with a neighbour} KL(P_i || Q_i)

The self pair is left out: it is maximal in both and would only dilute the rows. Rows of videos
without priors are skipped through the caption mask. Shapes stay static; arithmetic runs in float32.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor

from masra.grounding.masking import MASKED_LOGIT, UNDERFLOW, log_softmax

__all__ = ["local_window", "lrca_loss"]


@functools.lru_cache(maxsize=16)
def _band(length: int, window: int, device: torch.device) -> Tensor:
    """(L, L) bool ``0 < |i - j| <= window``; built once per (L, window, device), never written to."""
    band = torch.ones(length, length, dtype=torch.bool, device=device).triu(-window).tril(window)
    return band.fill_diagonal_(False)


def local_window(valid: Tensor, window: int) -> Tensor:
    """(B, L) bool -> (B, L, L) bool: both clips valid and ``0 < |i - j| <= window``."""
    return _band(valid.shape[1], window, valid.device) & valid[:, :, None] & valid[:, None, :]


def lrca_loss(
    clip_feats: Tensor,
    caption_emb: Tensor,
    valid: Tensor,
    window: int,
    text_temperature: float,
    video_temperature: float,
) -> Tensor:
    """KL between row-normalised local caption relations and local clip-feature relations; scalar.

    Args:
        clip_feats: (B, L, Dl) model clip features; caption_emb: (B, L, Dp) caption embeddings;
        valid: (B, L) bool, clip real, captioned and from a video with priors.
    """
    allowed = local_window(valid, window)  # (B, L, L)
    blocked = ~allowed
    c = F.normalize(caption_emb.float(), dim=-1)
    f = F.normalize(clip_feats.float(), dim=-1)
    text_rel = (torch.bmm(c, c.transpose(1, 2)) / text_temperature).masked_fill(blocked, MASKED_LOGIT)
    video_rel = (torch.bmm(f, f.transpose(1, 2)) / video_temperature).masked_fill(blocked, MASKED_LOGIT)
    log_p = log_softmax(text_rel)  # the target: no gradient
    log_q = log_softmax(video_rel)
    # A row without neighbours is all masked: the ``allowed`` factor makes its KL exactly 0, so the
    # sum runs over the rows that have one. Target probabilities under exp(UNDERFLOW) count as 0 (their
    # exp, like every masked entry's, would leave the CPU's fast path; masking.py).
    p = log_p.clamp(min=UNDERFLOW).exp() * (allowed & (log_p > UNDERFLOW))
    kl = (p * (log_p - log_q)).sum(-1)  # (B, L)
    rows = allowed.any(-1)
    return kl.sum() / rows.sum().clamp(min=1)
