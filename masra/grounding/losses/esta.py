"""ESTA, event semantic temporal alignment (and the SGE supervision that reuses its clip target).

Inputs: clip features projected into the prior space ``z`` (B, L, Dp), the clip mask (B, L) and the
priors: event spans (B, E, 2) as normalised (start, end), event embeddings ``d`` (B, E, Dp), the
event mask (B, E) and ``has_prior`` (B,).

Clip ``i`` of a video with ``n`` real clips has center ``(i + 0.5) / n``; it lies in event ``e`` when
its center is inside the event span. An event that covers no clip center takes the clip holding its
midpoint, so every real event has at least one clip. This gives the membership ``M`` (B, E, L).

Events whose descriptions are the same text are one semantic class: ``S_ef = [t_e . t_f >= tau]``
(``tau`` = ``same_text``, 0.99 by default: identical texts embed identically). Such pairs are
positives, never negatives, so a description repeated across videos ("the empty background") does
not push apart the spans it truly describes.

Event level (all events of the batch, so other events of the same video are negatives):

    p_e = normalize(sum_i M_ei z_i / sum_i M_ei),  t_e = normalize(d_e)
    L_event = 1/2 mean_e [ lse_f (p_e . t_f / T) - lse_{f: S_ef} (p_e . t_f / T)
                         + lse_f (t_e . p_f / T) - lse_{f: S_ef} (t_e . p_f / T) ]  over the real events

Clip level (each covered clip against every event of the batch; positives are the events covering
it and every event with the same text as one of those):

    L_clip = mean_i [ lse_{e in batch} (z_i . t_e / T) - lse_{e in P_i} (z_i . t_e / T) ]

with ``z_i`` normalised. Videos with ``has_prior`` False contribute neither rows nor columns. Shapes stay
static (padded events are masked, never dropped), and everything runs in float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["esta_clip_loss", "esta_event_loss", "event_membership", "same_text"]

_NEG = -1e4
SAME_TEXT = 0.99


def same_text(t: Tensor, valid: Tensor, threshold: float = SAME_TEXT) -> Tensor:
    """(N, Dp) normalised event embeddings, (N,) validity -> (N, N) bool: same description.

    The diagonal is True for every valid event.
    """
    eye = torch.eye(t.shape[0], dtype=torch.bool, device=t.device)
    same = ((t @ t.T) >= threshold) | eye  # an event is always its own positive
    return same & valid[:, None] & valid[None, :]


def _multi_positive_nce(logits: Tensor, positives: Tensor) -> Tensor:
    """Per row: ``logsumexp(all) - logsumexp(positives)``; rows without positives give 0."""
    has = positives.any(-1)
    loss = torch.logsumexp(logits, dim=-1) - torch.logsumexp(logits.masked_fill(~positives, _NEG), dim=-1)
    return loss * has


def event_membership(event_spans: Tensor, event_mask: Tensor, clip_mask: Tensor) -> Tensor:
    """(B, E, 2) spans, (B, E) event mask, (B, L) clip mask -> (B, E, L) bool: clip i lies in event e."""
    n = clip_mask.sum(1).clamp(min=1).to(torch.float32)  # (B,)
    steps = torch.arange(clip_mask.shape[1], device=clip_mask.device, dtype=torch.float32)
    centers = (steps[None, :] + 0.5) / n[:, None]  # (B, L)
    start, end = event_spans.float().unbind(-1)  # (B, E)
    inside = (centers[:, None, :] >= start[..., None]) & (centers[:, None, :] <= end[..., None])
    inside = inside & clip_mask[:, None, :]
    mid_idx = torch.minimum(((start + end) / 2 * n[:, None]).floor(), n[:, None] - 1).clamp(min=0).long()
    fallback = steps.long() == mid_idx[..., None]  # (B, E, L); no one_hot: it syncs to check indices
    inside = torch.where(inside.any(-1, keepdim=True), inside, fallback)
    return inside & event_mask[..., None]


def _normalised(x: Tensor) -> Tensor:
    return F.normalize(x.float(), dim=-1)


def esta_event_loss(
    clip_proj: Tensor,
    member: Tensor,
    event_emb: Tensor,
    event_mask: Tensor,
    temperature: float,
    same_text_threshold: float = SAME_TEXT,
) -> Tensor:
    """Symmetric multi-positive InfoNCE between span-pooled clip projections and event embeddings.

    Args:
        clip_proj: (B, L, Dp) clip features in the prior space.
        member: (B, E, L) bool :func:`event_membership`.
        event_emb: (B, E, Dp) event-description embeddings.
        event_mask: (B, E) bool, already False for videos without priors.
        same_text_threshold: cosine at or above which two descriptions count as the same text.

    Returns:
        A scalar.
    """
    weight = member.float()  # (B, E, L)
    pooled = torch.einsum("bel,bld->bed", weight, clip_proj.float())
    pooled = pooled / weight.sum(-1, keepdim=True).clamp(min=1)  # (B, E, Dp) span means
    p = _normalised(pooled).flatten(0, 1)  # (B*E, Dp)
    t = _normalised(event_emb).flatten(0, 1)  # (B*E, Dp)
    valid = event_mask.flatten()  # (B*E,)
    logits = (p @ t.T) / temperature  # (B*E, B*E)
    logits = logits.masked_fill(~(valid[:, None] & valid[None, :]), _NEG)
    same = same_text(t, valid, same_text_threshold)  # (B*E, B*E), symmetric
    rows = _multi_positive_nce(logits, same)  # video -> text
    cols = _multi_positive_nce(logits.T, same)  # text -> video
    return 0.5 * (rows + cols).sum() / valid.sum().clamp(min=1)


def esta_clip_loss(
    clip_proj: Tensor,
    member: Tensor,
    event_emb: Tensor,
    event_mask: Tensor,
    temperature: float,
    same_text_threshold: float = SAME_TEXT,
) -> Tensor:
    """Multi-positive InfoNCE of every covered clip against all events of the batch.

    Arguments as in :func:`esta_event_loss`, except that ``clip_proj`` may carry leading dims,
    (..., B, L, Dp), e.g. ESTA's projection and SGE's prediction stacked to share one pass; the result
    then has shape (...), else it is a scalar. Clips covered by no event are skipped.
    """
    batch = member.shape[0]
    z = _normalised(clip_proj).flatten(-3, -2)  # (..., B*L, Dp)
    t = _normalised(event_emb).flatten(0, 1)  # (B*E, Dp)
    logits = (z @ t.T) / temperature  # (..., B*L, B*E)
    logits = logits.masked_fill(~event_mask.flatten(), _NEG)
    # Positives: the events of the clip's own video that cover it (block-diagonal in the batch).
    eye = torch.eye(batch, dtype=torch.bool, device=member.device)  # (B, B)
    pos = eye[:, None, :, None] & member.permute(0, 2, 1)[:, :, None, :]  # (B, L, B, E)
    pos = pos.flatten(2).flatten(0, 1)  # (B*L, B*E)
    covered = pos.any(-1)  # (B*L,)
    same = same_text(t, event_mask.flatten(), same_text_threshold)  # (B*E, B*E)
    pos = (pos.float() @ same.float()) > 0  # + events sharing a covering event's text
    loss = _multi_positive_nce(logits, pos)
    return (loss * covered).sum(-1) / covered.sum().clamp(min=1)
