"""The batch contract between the data pipeline, the model, the criterion and the predictor.

Mask convention (the one for the whole code base): a boolean mask is ``True`` where the entry is
real and ``False`` where it is padding.

Span convention: a moment is stored normalised by the length of the video's clip grid,
``num_clips * clip_len`` seconds, so clip ``i`` of a video with ``L`` clips covers
``[i / L, (i + 1) / L]``. Model predictions and matching targets use (center, width) form;
see :mod:`masra.grounding.spans` for conversions.

Priors are optional and only ever present in training batches; the model never reads them, only
the criterion does.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch
from torch import Tensor


@dataclass
class PriorBatch:
    """Prior embeddings of the videos in a batch (training only).

    Attributes:
        event_spans: (B, E, 2) event (start, end), normalised like moments; 0 where padded.
        event_emb: (B, E, Dp) event-description embeddings.
        event_mask: (B, E) bool, True for a real event.
        caption_emb: (B, L, Dp) clip-caption embeddings, aligned with the video clips.
        caption_mask: (B, L) bool, True where the clip has a caption.
        has_prior: (B,) bool, False for videos without priors (partial coverage); their prior losses
            are skipped.
        clip_mask: (B, L) bool real clips of these rows when they are not the batch's own videos
            (prior-only videos appended, see :meth:`cat`); None means the batch's ``video_mask``.
        member: (B, E, L) bool event-clip membership of the real events of videos with priors
            (:func:`event_membership` of ``event_spans``, ``event_mask & has_prior`` and the clip
            mask, :meth:`with_member`), derived once per split instead of once per step; None lets
            the criterion derive it.
    """

    event_spans: Tensor
    event_emb: Tensor
    event_mask: Tensor
    caption_emb: Tensor
    caption_mask: Tensor
    has_prior: Tensor
    clip_mask: Tensor | None = None
    member: Tensor | None = None

    def to(self, device: torch.device | str) -> PriorBatch:
        moved: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            moved[f.name] = None if value is None else value.to(device)
        return PriorBatch(**moved)

    def with_member(self, clip_mask: Tensor) -> PriorBatch:
        """A copy whose ``member`` is derived from its events and ``clip_mask`` (B, L) (see the field)."""
        valid = self.event_mask & self.has_prior[:, None]  # (B, E)
        return replace(self, member=event_membership(self.event_spans, valid, clip_mask))

    def without_rows(self, drop: Tensor) -> PriorBatch:
        """A copy in which the rows ``drop`` ((B,) bool) count as videos without priors: their prior
        losses are skipped (``has_prior`` False, and no event membership)."""
        keep = ~drop
        member = None if self.member is None else self.member & keep[:, None, None]
        return replace(self, has_prior=self.has_prior & keep, member=member)

    def rows(self, index: Tensor) -> PriorBatch:
        """The rows ``index`` ((B,) int64, on this batch's device) of every field."""
        picked: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            picked[f.name] = None if value is None else value[index]
        return PriorBatch(**picked)

    @staticmethod
    def cat(first: PriorBatch, first_mask: Tensor, second: PriorBatch, second_mask: Tensor) -> PriorBatch:
        """The rows of ``first`` then ``second`` (same L and E), with their clip masks in ``clip_mask``.

        An optional field is kept only when both carry it."""
        joined: dict[str, Any] = {}
        for f in fields(first):
            a, b = getattr(first, f.name), getattr(second, f.name)
            if f.name != "clip_mask":
                joined[f.name] = None if a is None or b is None else torch.cat([a, b])
        return PriorBatch(**joined, clip_mask=torch.cat([first_mask, second_mask]))


@dataclass
class VideoBatch:
    """Videos that carry priors but no query (training only): their prior losses alone are computed.

    Attributes:
        video: (Bv, L, Dv) clip features; video_mask: (Bv, L) bool; priors: their priors.
    """

    video: Tensor
    video_mask: Tensor
    priors: PriorBatch

    def to(self, device: torch.device | str) -> VideoBatch:
        return VideoBatch(self.video.to(device), self.video_mask.to(device), self.priors.to(device))


@dataclass
class Batch:
    """A collated batch of queries.

    Attributes:
        video: (B, L, Dv) float clip features (temporal-endpoint features included when enabled).
        video_mask: (B, L) bool.
        text: (B, T, Dt) float query token features.
        text_mask: (B, T) bool.
        spans: per-sample ground-truth moments, each (N_i, 2) normalised (center, width); None on
            unlabelled data. N_i may be 0.
        saliency: (B, L) float per-clip saliency target (mean annotator score for QVHighlights,
            1 inside a GT window and 0 outside for datasets without saliency labels); None when
            unlabelled.
        priors: prior embeddings (training only) or None.
        prior_videos: further videos with priors and no query whose prior losses join the batch's
            (training only), or None.
        meta: per-sample dicts with at least ``qid``, ``vid``, ``duration`` and ``clip_len``.
    """

    video: Tensor
    video_mask: Tensor
    text: Tensor
    text_mask: Tensor
    spans: list[Tensor] | None = None
    saliency: Tensor | None = None
    priors: PriorBatch | None = None
    meta: list[dict[str, Any]] = field(default_factory=list)
    prior_videos: VideoBatch | None = None

    def __len__(self) -> int:
        return int(self.video.shape[0])

    def to(self, device: torch.device | str) -> Batch:
        return replace(
            self,
            video=self.video.to(device),
            video_mask=self.video_mask.to(device),
            text=self.text.to(device),
            text_mask=self.text_mask.to(device),
            spans=None if self.spans is None else [s.to(device) for s in self.spans],
            saliency=None if self.saliency is None else self.saliency.to(device),
            priors=None if self.priors is None else self.priors.to(device),
            prior_videos=None if self.prior_videos is None else self.prior_videos.to(device),
        )


def host_to_device(x: Tensor, device: torch.device) -> Tensor:
    """Copy a small host tensor to ``device`` without making the host wait for the device.

    A copy from pageable host memory waits for the work queued before it; from pinned memory with
    ``non_blocking`` it is queued like a kernel (PyTorch's caching host allocator keeps the pinned
    buffer alive until the copy has run).
    """
    if device.type != "cuda":
        return x.to(device)
    return x.pin_memory().to(device, non_blocking=True)


def event_membership(event_spans: Tensor, event_mask: Tensor, clip_mask: Tensor) -> Tensor:
    """(B, E, 2) spans, (B, E) event mask, (B, L) clip mask -> (B, E, L) bool: clip i lies in event e.

    Clip ``i`` of a video with ``n`` real clips has center ``(i + 0.5) / n`` and lies in event ``e``
    when the center is inside the (start, end) span; an event that covers no clip center takes the
    clip holding its midpoint. Spans are read in float32. ESTA's targets
    (:mod:`masra.grounding.losses.esta`) are built from it.
    """
    n = clip_mask.sum(1, keepdim=True).clamp(min=1).to(torch.float32)[:, None]  # (B, 1, 1)
    steps = torch.arange(clip_mask.shape[1], device=clip_mask.device, dtype=torch.float32)  # (L,)
    centers = (steps + 0.5) / n  # (B, 1, L)
    spans = event_spans.float()
    start, end = spans[..., :1], spans[..., 1:]  # (B, E, 1)
    inside = (centers >= start) & (centers <= end) & clip_mask[:, None, :]  # (B, E, L)
    # The clip holding the midpoint, an exact integer kept in float32 (no one_hot: it syncs).
    mid = torch.minimum(((start + end) / 2 * n).floor(), n - 1).clamp(min=0)  # (B, E, 1)
    inside = torch.where(inside.any(-1, keepdim=True), inside, steps == mid)
    return inside & event_mask[..., None]
