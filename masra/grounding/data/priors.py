"""The prior table joined to a resident split: one :class:`PriorBatch` row per video, on its clip grid.

Priors and features describe one clip grid (:mod:`masra.datasets.grid`), both cut at ``max_clips``.
Events are in seconds: those starting past a video's cut or empty are dropped and counted, the rest
are clipped to the grid, normalised like moments and packed first. Captions are fitted to the
features' clips in time: where the two clip counts differ by a clip or two at the end (floor, round
or ceil releases, an extractor's extra clip), the features' last clips take the priors' last caption,
and the video is counted in ``SplitReport.prior_clips_fitted``. Counts that disagree further
(:func:`~masra.datasets.grid.counts_agree`: another clip length or another cut of the video) are
refused, naming the videos and the shard.
"""

from __future__ import annotations

import numpy as np
import torch

from masra.datasets.grid import counts_agree
from masra.grounding.data.batch import PriorBatch
from masra.grounding.data.report import SplitReport
from masra.grounding.spans import paired_iou, span_cxw_to_xx
from masra.priors.table import PriorTable, shard_of

__all__ = [
    "EDGE_MIN_MATCHED",
    "PriorCoverageError",
    "edge_share_from_error",
    "join_priors",
    "prior_edge_error",
]

_EPS = 1e-6


class PriorCoverageError(ValueError):
    """Training videos without priors while prior losses are on; names the count and a few ids."""


def join_priors(
    priors: PriorTable,
    vids: list[str],
    full_len: np.ndarray,
    vlen: np.ndarray,
    grid_len: np.ndarray,
    l_max: int,
    clip_len: float,
    *,
    max_clips: int,
    prior_dim: int | None,
    allow_partial: bool,
    dtype: torch.dtype,
    name: str,
    report: SplitReport,
) -> PriorBatch:
    """The priors of the split's videos as one :class:`PriorBatch` of V rows on the CPU.

    Args:
        priors: the prior table read from the run's shards.
        vids: the split's V video ids, in row order.
        full_len: (V,) clips of each video's features; vlen: (V,) clips kept (``<= max_clips``);
            grid_len: (V,) clips of the clip grid of each video's annotated duration.
        l_max: the split's padded clip count.
        clip_len: seconds per clip; max_clips: the cut applied to the priors' clip grid too.
        prior_dim, allow_partial, dtype, name: as in ``build_split``; ``report`` counts what is cut.

    Raises:
        ValueError: the embeddings have another width than ``prior_dim``, or a video's priors have
            a clip count that does not agree with its features' (module doc).
        PriorCoverageError: videos without priors and ``allow_partial`` false.
    """
    if prior_dim is not None and priors.dim != prior_dim:
        raise ValueError(
            f"{name}: prior embeddings have dim {priors.dim} (encoder {priors.encoder}) but the model "
            f"expects prior_dim {prior_dim}"
        )
    missing = [v for v in vids if v not in priors.index]
    if missing and not allow_partial:
        extra = sorted(set(priors.index) - set(vids))
        held = ""
        if priors.folder is not None:
            where = (shard_of(priors.folder, extra[0]) if extra else None) or priors.folder
            held = f"; {where} holds {len(extra)} video ids not in this split" + (
                f" (e.g. {', '.join(extra[:3])})" if extra else ""
            )
        raise PriorCoverageError(
            f"{name}: {len(missing)} of {len(vids)} videos have no priors (e.g. {', '.join(missing[:5])})"
            f"{held}; "
            "generate them, train with --no-masra, or set allow_partial_priors=true"
        )
    report.videos_without_priors = len(missing)
    report.missing_prior_ids = missing[:20]
    has = np.array([v in priors.index for v in vids], dtype=bool)  # (V,)
    rows = np.array([priors.index.get(v, 0) for v in vids], dtype=np.int64)  # (V,) prior row (0 if none)
    # The prior grid cut like the features: both describe clips [0, kept) of one clip grid.
    p_kept = np.minimum(np.maximum(priors.num_clips[rows], 1), max_clips)  # (V,)
    _check_clip_counts(priors, vids, has, full_len, vlen, grid_len, max_clips, name)
    fitted = has & (p_kept != vlen)
    report.prior_clips_fitted = int(fitted.sum())
    report.prior_fitted_ids = [v for v, f in zip(vids, fitted, strict=True) if f][:20]
    grid = (vlen * clip_len).astype(np.float64)  # (V,) seconds of each (cut) clip grid

    # Captions fitted in time: feature clip i takes the prior clip covering the same seconds, i.e.
    # caption min(i, P - 1); a feature clip or two past the priors' end takes their last caption.
    src = np.minimum(np.arange(l_max)[None, :], p_kept[:, None] - 1)  # (V, L) prior clip of each clip
    clip_ok = (np.arange(l_max)[None, :] < vlen[:, None]) & has[:, None]  # (V, L)
    cap_mask = priors.caption_valid[rows[:, None], src] & clip_ok  # (V, L)
    caption_emb = torch.from_numpy(priors.caption_emb[rows[:, None], src]).to(dtype)  # (V, L, Dp)
    caption_emb[~torch.from_numpy(cap_mask)] = 0

    # Events: drop those starting past the cut (or empty), clip the rest, then pack the kept ones first.
    se = priors.event_se[rows].astype(np.float64)  # (V, E, 2) seconds
    real = (np.arange(se.shape[1])[None, :] < priors.event_count[rows][:, None]) & has[:, None]
    keep = real & (se[..., 0] < grid[:, None] - _EPS) & (se[..., 1] > se[..., 0])
    report.events_dropped = int((real & ~keep).sum())
    order = np.argsort(~keep, axis=1, kind="stable")  # kept events first, in their original order
    keep = np.take_along_axis(keep, order, axis=1)
    se = np.take_along_axis(se, order[..., None], axis=1)
    norm = (
        np.stack([np.maximum(se[..., 0], 0.0), np.minimum(se[..., 1], grid[:, None])], -1)
        / grid[:, None, None]
    )
    event_spans = torch.from_numpy(np.where(keep[..., None], norm, 0.0).astype(np.float32))  # (V, E, 2)
    emb = np.take_along_axis(priors.event_emb[rows], order[..., None], axis=1)  # (V, E, Dp)
    event_emb = torch.from_numpy(emb).to(dtype)
    event_mask = torch.from_numpy(keep)
    event_emb[~event_mask] = 0
    return PriorBatch(
        event_spans=event_spans,
        event_emb=event_emb,
        event_mask=event_mask,
        caption_emb=caption_emb,
        caption_mask=torch.from_numpy(cap_mask),
        has_prior=torch.from_numpy(has),
    )


def _check_clip_counts(
    priors: PriorTable,
    vids: list[str],
    has: np.ndarray,
    full_len: np.ndarray,
    vlen: np.ndarray,
    grid_len: np.ndarray,
    max_clips: int,
    name: str,
) -> None:
    """Refuse videos whose priors are not on their clip grid, or do not agree with their kept features.

    A prior row of ``P`` clips is on the grid of ``G`` clips (the duration's) when the two agree, or
    when stage 1 cut the video at a ``max_clips`` no smaller than this one (``max_clips <= P < G``).
    Its cut count must then agree with the kept feature clips. ``has`` (V,) marks videos with priors;
    ``full_len`` / ``vlen`` (V,) are the features' clips before / after the cut.
    """
    bad = []
    for i in np.flatnonzero(has):
        p = int(priors.num_clips[priors.index[vids[i]]])
        on_grid = counts_agree(p, int(grid_len[i])) or max_clips <= p < int(grid_len[i])
        if not on_grid or not counts_agree(min(p, max_clips), int(vlen[i])):
            bad.append(i)
    if not bad:
        return
    ex = ", ".join(
        f"{vids[i]} (priors {int(priors.num_clips[priors.index[vids[i]]])}, features {int(full_len[i])}"
        + (f", kept {int(vlen[i])}" if vlen[i] != full_len[i] else "")
        + f", duration grid {int(grid_len[i])})"
        for i in bad[:5]
    )
    shard = shard_of(priors.folder, vids[bad[0]]) if priors.folder is not None else None
    raise ValueError(
        f"{name}: {len(bad)} videos have priors on another clip grid than their features: {ex}"
        + (f"; {vids[bad[0]]} is in {shard}" if shard is not None else "")
        + ". Counts a clip or two apart are fitted; these differ more (another clip length or another "
        "cut of the video, or priors written with a smaller max_clips): regenerate or re-import their "
        "priors with this card (docs/datasets.md, 'One clip grid')"
    )


def prior_edge_error(
    windows: torch.Tensor,
    counts: torch.Tensor,
    q2v: torch.Tensor,
    event_spans: torch.Tensor,
    event_mask: torch.Tensor,
    min_iou: float = 0.5,
) -> tuple[float | None, int]:
    """How far the prior events' edges lie from the labelled windows, as a share of the event's length.

    Each labelled window (``windows`` (Q, S, 2) normalised (center, width), the first ``counts[q]`` of
    query ``q`` real; ``q2v`` (Q,) its video row) is matched to the prior event of its video with the
    highest IoU (``event_spans`` (V, E, 2) normalised (start, end), ``event_mask`` (V, E)); where that
    IoU is at least ``min_iou``, both edges' distances divided by the event's length are collected.
    Computed on the CPU, all windows at once.

    Returns the median of those distances (None when no window matched) and the number of windows
    matched. It is what ``loss.esta_edge_share`` should leave out: about 0 where the priors place
    edges where the labels do, more where their spans are only roughly right (docs/method.md).
    """
    q2v = q2v.cpu()
    events = event_spans.cpu().float()[q2v]  # (Q, E, 2) the events of each query's video
    if events.shape[1] == 0:
        return None, 0
    spans = span_cxw_to_xx(windows.cpu().float())  # (Q, S, 2)
    real = torch.arange(spans.shape[1])[None, :] < counts.cpu()[:, None]  # (Q, S)
    iou = paired_iou(spans[:, :, None], events[:, None])  # (Q, S, E)
    best, idx = iou.masked_fill(~event_mask.cpu()[q2v][:, None, :], -1.0).max(-1)  # (Q, S)
    keep = real & (best >= min_iou)
    if not bool(keep.any()):
        return None, 0
    matched = events.gather(1, idx[..., None].expand(-1, -1, 2))[keep]  # (M, 2)
    length = (matched[:, 1] - matched[:, 0]).clamp(min=1e-9)
    errors = ((matched - spans[keep]).abs() / length[:, None]).flatten()
    return round(float(errors.median()), 4), int(keep.sum())


EDGE_MIN_MATCHED = 20
"""Fewest matched windows from which :func:`edge_share_from_error` trusts a measured edge error."""
_HALF_NORMAL_MEDIAN = 0.6745  # median of |N(0, 1)|


def edge_share_from_error(error: float | None, matched: int, min_matched: int = EDGE_MIN_MATCHED) -> float:
    """``loss.esta_edge_share: auto``: the share of each prior span, at each end, that ESTA leaves to
    the labels, from the priors' measured edge error (:func:`prior_edge_error`).

    The error is a median distance; read as the median of a normal jitter's magnitude, it is 0.6745
    of that jitter's standard deviation, and the share is one standard deviation: the band where a
    prior edge may lie. It is rounded to steps of 0.05 (a few windows more or less do not change
    the training) and kept at most 0.45. Fewer than ``min_matched`` matched windows (no labels, few
    labels, or priors that match none) give 0: the priors' spans are then used whole, as they are
    without this option.

    Measured (docs/method.md): the open world's priors (edges jittered by 0.15 of the event's length)
    give an error of about 0.096 and a share of 0.15, which removed their full-label boundary cost;
    the shapes fixture's exact priors give 0 and a share of 0, where a share of 0.15 cost accuracy.
    """
    if error is None or matched < min_matched:
        return 0.0
    share = round(error / _HALF_NORMAL_MEDIAN / 0.05) * 0.05
    return round(min(0.45, max(0.0, share)), 2)
