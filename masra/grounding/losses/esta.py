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

Everything the two terms read from the priors (normalised texts, the same-text classes, the masks and
the clip positives) is a fixed target: :meth:`EstaTargets.build` derives it once per batch and both
terms (and SGE's supervision) share it; :func:`esta_terms` computes both terms in one pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from masra.grounding.data.batch import event_membership  # re-exported: the membership is the data's
from masra.grounding.masking import MASKED_LOGIT, logsumexp

__all__ = [
    "EstaTargets",
    "edge_clips",
    "esta_terms",
    "event_membership",
    "same_text",
]

SAME_TEXT = 0.99


def same_text(t: Tensor, valid: Tensor, threshold: float = SAME_TEXT) -> Tensor:
    """(N, Dp) normalised event embeddings, (N,) validity -> (N, N) bool: same description.

    The diagonal is True for every valid event.
    """
    return _same_text(t, valid[:, None] & valid[None, :], threshold)


def _same_text(t: Tensor, pair_valid: Tensor, threshold: float) -> Tensor:
    """:func:`same_text` given the (N, N) mask of pairs of valid events."""
    eye = torch.eye(t.shape[0], dtype=torch.bool, device=t.device)
    return (((t @ t.T) >= threshold) | eye) & pair_valid  # an event is always its own positive


@dataclass(frozen=True)
class EstaTargets:
    """What ESTA's terms read from the priors, derived once per batch (no gradient flows through it).

    ``N = B * E`` events of the batch, flattened video-major; ``B * L`` clips likewise.

    Attributes:
        text: (N, Dp) L2-normalised event-description embeddings ``t``.
        span_mean: (B, E, L) float membership rows divided by their clip count (at least 1): the
            weights of the span means.
        event_count: () int64, number of real events, at least 1.
        pair_blocked: (N, N) bool, True where either event is padding (logit masked).
        not_same: (N, N) bool, True where two events are not the same text (not a positive).
        event_blocked: (N,) bool, True for padded events (masked as clip-level logits' columns).
        clip_not_pos: (B*L, N) bool, True where an event is not a positive of the clip.
        covered: (B*L,) bool, the clip lies in at least one real event.
        clip_count: () int64, number of covered clips, at least 1.
    """

    text: Tensor
    span_mean: Tensor
    event_count: Tensor
    pair_blocked: Tensor
    not_same: Tensor
    event_blocked: Tensor
    clip_not_pos: Tensor
    covered: Tensor
    clip_count: Tensor

    @classmethod
    def build(
        cls,
        member: Tensor,
        event_emb: Tensor,
        event_mask: Tensor,
        same_text_threshold: float = SAME_TEXT,
        clip_keep: Tensor | None = None,
    ) -> EstaTargets:
        """From the membership (B, E, L) bool, the event embeddings (B, E, Dp) and the event mask (B, E)
        (already False for videos without priors). ``clip_keep`` (B, L) bool, when given, leaves the
        clips where it is False out of the clip term (see :func:`edge_clips`)."""
        batch, events, _ = member.shape
        weight = member.float()  # (B, E, L)
        text = _normalised(event_emb).flatten(0, 1)  # (N, Dp)
        valid = event_mask.flatten()  # (N,)
        pair_valid = valid[:, None] & valid[None, :]  # (N, N)
        same = _same_text(text, pair_valid, same_text_threshold)  # (N, N), symmetric
        # Positives of clip (b, i): the events covering it, and every event sharing one of their texts.
        covering = torch.bmm(weight.transpose(1, 2), same.view(batch, events, -1).float())  # (B, L, N)
        covered = member.any(1) if clip_keep is None else member.any(1) & clip_keep
        covered = covered.flatten()  # (B*L,)
        return cls(
            text=text,
            span_mean=weight / weight.sum(-1, keepdim=True).clamp(min=1),
            event_count=valid.sum().clamp(min=1),
            pair_blocked=~pair_valid,
            not_same=~same,
            event_blocked=~valid,
            clip_not_pos=(covering <= 0).flatten(0, 1),
            covered=covered,
            clip_count=covered.sum().clamp(min=1),
        )


def _normalised(x: Tensor) -> Tensor:
    return F.normalize(x.float(), dim=-1)


def edge_clips(
    member: Tensor, event_spans: Tensor, event_mask: Tensor, clip_mask: Tensor, share: float
) -> Tensor:
    """(B, L) bool: clips in the outer ``share`` of a prior event's span, at either end.

    A prior span's edges are where the MLLM is least sure (the open world jitters them by 15 % of the
    event); pinning the clips there to the event's text pulls the features the boundaries are read from
    toward the prior's edges rather than the labels'. The edge of event ``e`` is its membership
    ``member`` (B, E, L) minus the membership of the span shrunk by ``share`` of its length at each
    end (an event too short to have an interior keeps its midpoint clip, as in
    :func:`event_membership`).
    """
    spans = event_spans.float()
    cut = (spans[..., 1:] - spans[..., :1]) * share  # (B, E, 1)
    inner = event_membership(
        torch.cat([spans[..., :1] + cut, spans[..., 1:] - cut], -1), event_mask, clip_mask
    )
    return (member & ~inner).any(1)


def esta_terms(
    targets: EstaTargets,
    temperature: float,
    event_proj: Tensor | None = None,
    clip_projs: Sequence[Tensor] = (),
) -> tuple[Tensor | None, list[Tensor]]:
    """ESTA's event term on ``event_proj`` and its clip term on each of ``clip_projs``, in one pass.

    Every row of both terms (the span means of ``event_proj``, then the clips of each ``clip_projs``)
    is scored against the same normalised event texts, so all rows share one normalisation, one
    matmul, one masking and one pair of logsumexps; the rows are then summed per term.

    Args:
        targets: the batch's :class:`EstaTargets`.
        event_proj: (B, L, Dp) clip features in the prior space for the event term, or None.
        clip_projs: (B, L, Dp) clip features for the clip term, one term each (ESTA's projection and
            SGE's prediction share one pass this way).

    Returns:
        The event term (a scalar, None without ``event_proj``) and one clip term (scalar) per entry
        of ``clip_projs``.
    """
    if event_proj is None and not clip_projs:
        raise ValueError("esta_terms needs event_proj or clip_projs")
    n = targets.text.shape[0]  # events of the batch
    rows = [z.float().flatten(0, 1) for z in clip_projs]  # (B*L, Dp) each
    blocked = [targets.event_blocked.expand(len(rows) * targets.covered.shape[0], n)]
    not_pos = [targets.clip_not_pos] * len(rows)
    if event_proj is not None:
        rows.insert(0, torch.bmm(targets.span_mean, event_proj.float()).flatten(0, 1))  # (N, Dp) means
        blocked.insert(0, targets.pair_blocked)
        # Event rows are scored both ways (video -> text, then text -> video, i.e. the transpose);
        # ``same`` is symmetric, so one positive mask serves both.
        not_pos[:0] = [targets.not_same, targets.not_same]
    # 1/T scales the (N, Dp) texts rather than the (R, N) logits: one small op instead of a large one.
    logits = _normalised(torch.cat(rows)) @ (targets.text.T / temperature)  # (R, N)
    logits = logits.masked_fill(torch.cat(blocked), MASKED_LOGIT)
    if event_proj is not None:
        events, clips = logits.split([n, logits.shape[0] - n])  # split, not slices: one op backward
        logits = torch.cat([events, events.T, clips])  # (N + R, N)
    positives = logits.masked_fill(torch.cat(not_pos), MASKED_LOGIT)
    # A row without positives is a padded event, all of whose logits are masked: its two logsumexps
    # are equal and it gives 0; clips covered by no event are skipped through ``covered``.
    loss = logsumexp(logits) - logsumexp(positives)  # (N + R,)
    event = None
    if event_proj is not None:
        event_rows, loss = loss.split([2 * n, loss.shape[0] - 2 * n])
        event = 0.5 * event_rows.sum() / targets.event_count
    if not clip_projs:
        return event, []
    per_clip = loss.view(len(clip_projs), -1) * targets.covered  # (V, B*L)
    return event, list((per_clip.sum(-1) / targets.clip_count).unbind(0))
