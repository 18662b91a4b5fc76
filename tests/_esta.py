"""ESTA's two terms one at a time, on given targets (:func:`event_term`, :func:`clip_term`) or on
targets built from the priors (:func:`esta_event_loss`, :func:`esta_clip_loss`): the tests compare
them with the reference formulations and check their behaviour alone. The criterion computes both in
one pass (:func:`masra.grounding.losses.esta.esta_terms`) on targets built once per batch."""

from __future__ import annotations

import torch
from torch import Tensor

from masra.grounding.losses.esta import SAME_TEXT, EstaTargets, esta_terms


def event_term(clip_proj: Tensor, targets: EstaTargets, temperature: float) -> Tensor:
    """Symmetric multi-positive InfoNCE between span-pooled clip projections (B, L, Dp) and the event
    embeddings; a scalar. See :func:`~masra.grounding.losses.esta.esta_terms`."""
    event, _ = esta_terms(targets, temperature, event_proj=clip_proj)
    assert event is not None
    return event


def clip_term(clip_proj: Tensor, targets: EstaTargets, temperature: float) -> Tensor:
    """Multi-positive InfoNCE of every covered clip against all events of the batch.

    ``clip_proj`` is (..., B, L, Dp): leading dims give a result of shape (...), else a scalar.
    Clips covered by no event are skipped. See :func:`~masra.grounding.losses.esta.esta_terms`.
    """
    lead = clip_proj.shape[:-3]
    _, values = esta_terms(
        targets, temperature, clip_projs=clip_proj.reshape(-1, *clip_proj.shape[-3:]).unbind(0)
    )
    return torch.stack(values).reshape(lead)


def esta_event_loss(
    clip_proj: Tensor,
    member: Tensor,
    event_emb: Tensor,
    event_mask: Tensor,
    temperature: float,
    same_text_threshold: float = SAME_TEXT,
) -> Tensor:
    """:func:`event_term` with the targets built from the priors.

    Args:
        clip_proj: (B, L, Dp) clip features in the prior space.
        member: (B, E, L) bool :func:`~masra.grounding.losses.esta.event_membership`.
        event_emb: (B, E, Dp) event-description embeddings.
        event_mask: (B, E) bool, already False for videos without priors.
        same_text_threshold: cosine at or above which two descriptions count as the same text.

    Returns:
        A scalar.
    """
    targets = EstaTargets.build(member, event_emb, event_mask, same_text_threshold)
    return event_term(clip_proj, targets, temperature)


def esta_clip_loss(
    clip_proj: Tensor,
    member: Tensor,
    event_emb: Tensor,
    event_mask: Tensor,
    temperature: float,
    same_text_threshold: float = SAME_TEXT,
) -> Tensor:
    """:func:`clip_term` with the targets built from the priors; arguments
    as in :func:`esta_event_loss`, except that ``clip_proj`` may carry leading dims (..., B, L, Dp)
    and the result then has shape (...)."""
    targets = EstaTargets.build(member, event_emb, event_mask, same_text_threshold)
    return clip_term(clip_proj, targets, temperature)
