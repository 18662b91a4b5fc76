"""From model outputs to the standard prediction rows: ranked windows in seconds and clip saliency.

A prediction row (the QVHighlights submission format)::

    {"qid": 3, "query": "...", "vid": "abc_60.0_210.0",
     "pred_relevant_windows": [[start_s, end_s, score], ...],   # score-sorted, best first
     "pred_saliency_scores": [s_0, s_1, ...]}                   # one per clip of clip_len seconds

The ranking is configured by one :class:`~masra.grounding.config.PostprocessConfig` (a checkpoint's
``train.postprocess``), passed whole to :func:`rank_candidates`, :func:`decode_query` and
:func:`predictions_from_outputs`. Its defaults (documented in docs/training.md): the top 10 windows by
foreground probability, no snapping, no NMS, no saliency re-scoring. Spans are normalised by the clip
grid ``num_clips * clip_len`` (see :mod:`masra.grounding.data.batch`) and come back in seconds,
clamped to ``[0, duration]``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import fields, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from masra.datasets.grid import num_clips as grid_clips
from masra.grounding.config import PostprocessConfig
from masra.grounding.metrics.mr import iou_paired

__all__ = [
    "decode_query",
    "foreground_prob",
    "minmax_saliency",
    "postprocess_with",
    "predictions_from_outputs",
    "rank_candidates",
    "saliency_lists",
    "saliency_proposals",
    "saliency_rescore",
    "saliency_row_length",
    "spans_to_windows",
    "temporal_nms",
    "window_clips",
    "window_iou",
]

Window = list[float]  # [start_s, end_s, score]


def window_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two (start, end, ...) windows in seconds (the metrics' :func:`iou_paired`); 0 when both
    are empty."""
    return float(iou_paired(np.array([a[:2]], np.float64), np.array([b[:2]], np.float64))[0])


def temporal_nms(windows: Sequence[Sequence[float]], iou: float) -> list[Window]:
    """Greedy score-aware NMS: keep the best window, drop the others overlapping it by more than ``iou``.

    ``windows`` are ``[start, end, score]``; the result is sorted by score, best first.

    Example:
        >>> temporal_nms([[0, 10, 0.9], [1, 10, 0.8], [20, 30, 0.5]], iou=0.7)
        [[0.0, 10.0, 0.9], [20.0, 30.0, 0.5]]
    """
    if not 0.0 < iou <= 1.0:
        raise ValueError(f"NMS iou threshold must be in (0, 1], got {iou}")
    ranked = sorted(([float(w[0]), float(w[1]), float(w[2])] for w in windows), key=lambda w: -w[2])
    kept: list[Window] = []
    spans = np.empty((len(ranked), 2), np.float64)  # rows [0, len(kept)) hold the kept windows
    for w in ranked:
        n = len(kept)
        if n and (iou_paired(np.broadcast_to(w[:2], (n, 2)), spans[:n]) > iou).any():
            continue  # one IoU call against every kept window, not one per pair
        spans[n] = w[:2]
        kept.append(w)
    return kept


def spans_to_windows(
    pred_spans: Tensor | np.ndarray,
    scores: Tensor | np.ndarray,
    *,
    num_clips: int,
    clip_len: float,
    duration: float,
    top_k: int = 10,
    snap: bool = False,
    nms_iou: float | None = None,
) -> list[Window]:
    """Turn one query's predicted spans into ranked windows in seconds.

    Args:
        pred_spans: (Q, 2) normalised (center, width) spans.
        scores: (Q,) foreground probabilities.
        num_clips: clips L of the video as the model saw it; spans are fractions of
            ``num_clips * clip_len`` seconds.
        clip_len: clip length in seconds.
        duration: video duration in seconds; windows are clamped to ``[0, duration]``.
        top_k: windows returned (after NMS).
        snap: round starts down and ends up to clip boundaries (still clamped).
        nms_iou: temporal NMS threshold, or None for no NMS.

    Returns:
        ``[[start_s, end_s, score], ...]`` sorted by score, best first.

    Example:
        >>> spans_to_windows(np.array([[0.5, 0.2], [0.1, 0.4]]), np.array([0.3, 0.9]),
        ...                  num_clips=10, clip_len=2.0, duration=19.0)
        [[0.0, 6.0, 0.9], [8.0, 12.0, 0.3]]
    """
    if num_clips < 1 or clip_len <= 0 or duration <= 0:
        raise ValueError(
            f"need num_clips >= 1, clip_len > 0, duration > 0; got {num_clips}, {clip_len}, {duration}"
        )
    spans = torch.as_tensor(pred_spans, dtype=torch.float64).reshape(-1, 2)
    prob = torch.as_tensor(scores, dtype=torch.float64).reshape(-1)
    if spans.shape[0] != prob.shape[0]:
        raise ValueError(f"{spans.shape[0]} spans but {prob.shape[0]} scores")
    grid = num_clips * clip_len
    start = (spans[:, 0] - 0.5 * spans[:, 1]) * grid
    end = (spans[:, 0] + 0.5 * spans[:, 1]) * grid
    if snap:
        start = torch.floor(start / clip_len) * clip_len
        end = torch.ceil(end / clip_len) * clip_len
    start = start.clamp(0.0, duration)
    end = torch.maximum(end.clamp(0.0, duration), start)
    order = torch.argsort(-prob, stable=True)
    windows = [[round(float(start[i]), 4), round(float(end[i]), 4), round(float(prob[i]), 6)] for i in order]
    if nms_iou is not None:
        windows = temporal_nms(windows, nms_iou)
    return windows[:top_k]


def minmax_saliency(saliency: Sequence[float] | np.ndarray, caller: str = "saliency") -> np.ndarray:
    """Clip saliency min-max normalised to [0, 1] (all ones when flat); ``caller`` names the error."""
    sal = np.asarray(saliency, dtype=np.float64)
    if sal.size == 0:
        raise ValueError(f"{caller} needs at least one clip score")
    lo, hi = float(sal.min()), float(sal.max())
    return (sal - lo) / (hi - lo) if hi > lo else np.ones_like(sal)


def window_clips(start: float, end: float, clip_len: float, num_clips: int) -> tuple[int, int]:
    """The clips ``[first, last)`` a window of seconds overlaps, at least one, within ``num_clips``."""
    first = min(math.floor(start / clip_len), num_clips - 1)
    return first, max(math.ceil(end / clip_len), first + 1)


def saliency_rescore(
    windows: Sequence[Sequence[float]], saliency: Sequence[float], *, clip_len: float, weight: float
) -> list[Window]:
    """Blend each window's score with the video's saliency over it, then re-rank.

    ``score' = (1 - weight) * score + weight * mean(s[i] for clips i overlapping the window)``, where
    ``s`` is the query's clip saliency min-max normalised to [0, 1]. ``weight = 0`` keeps the ranking.

    Example:
        >>> saliency_rescore([[0, 2, 0.9], [4, 6, 0.8]], [0.0, 1.0, 3.0], clip_len=2.0, weight=0.5)
        [[4.0, 6.0, 0.9], [0.0, 2.0, 0.45]]
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"saliency weight must be in [0, 1], got {weight}")
    norm = minmax_saliency(saliency, "saliency_rescore")
    out = []
    for w in windows:
        start, end = float(w[0]), float(w[1])
        first, last = window_clips(start, end, clip_len, len(norm))
        inside = float(norm[first:last].mean())
        out.append([start, end, round((1.0 - weight) * float(w[2]) + weight * inside, 6)])
    return sorted(out, key=lambda x: -x[2])


PROPOSAL_LEVELS = (0.3, 0.5, 0.7)
"""Thresholds of the min-max normalised saliency whose runs become window proposals."""


def saliency_proposals(
    windows: Sequence[Sequence[float]],
    saliency: Sequence[float],
    *,
    clip_len: float,
    duration: float,
    levels: Sequence[float] = PROPOSAL_LEVELS,
) -> list[Window]:
    """Add the saliency curve's high runs to the decoder's windows and rank all by saliency contrast.

    Every maximal run of clips whose min-max normalised saliency ``s`` is at least a level in
    ``levels`` is a proposal. Each candidate (decoder window or proposal) is scored by
    ``mean(s inside) - mean(s outside)`` (inside: the clips it overlaps), so both kinds compete on one
    scale; duplicates keep their best score. Sorted best first.

    Example:
        >>> saliency_proposals([[0, 2, 0.9]], [0.0, 1.0, 1.0, 0.0], clip_len=2.0, duration=8.0)
        [[2.0, 6.0, 1.0], [0.0, 2.0, -0.666667]]
    """
    norm = minmax_saliency(saliency, "saliency_proposals")
    n = len(norm)
    spans = [window_clips(float(w[0]), float(w[1]), clip_len, n) for w in windows]
    for level in levels:
        above = np.concatenate([[False], norm >= level, [False]])
        edges = np.flatnonzero(above[1:] != above[:-1])  # run starts and ends, alternating
        spans.extend((int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True))
    total = float(norm.sum())
    best: dict[tuple[int, int], float] = {}
    for a, b in spans:
        inside = float(norm[a:b].mean())
        outside = (total - float(norm[a:b].sum())) / (n - (b - a)) if b - a < n else 0.0
        best[(a, b)] = max(best.get((a, b), -math.inf), inside - outside)
    out = [
        [round(a * clip_len, 4), round(min(b * clip_len, duration), 4), round(score, 6)]
        for (a, b), score in best.items()
    ]
    return sorted(out, key=lambda x: -x[2])


def foreground_prob(pred_logits: Tensor) -> Tensor:
    """(..., 2) logits -> (...) probability of the foreground class (index 0, DETR convention)."""
    return pred_logits.float().softmax(-1)[..., 0]


def saliency_lists(saliency: Tensor, lengths: Sequence[int] | Tensor) -> list[list[float]]:
    """(B, L) clip scores -> per-sample lists cut to each video's clip count."""
    sal = saliency.detach().float().cpu().numpy()
    lens = [int(n) for n in (lengths.tolist() if isinstance(lengths, Tensor) else lengths)]
    return [[round(float(v), 5) for v in sal[b, :n]] for b, n in enumerate(lens)]


POSTPROCESS_FIELDS = tuple(f.name for f in fields(PostprocessConfig))
"""The keywords older callers passed one by one (``top_k``, ``snap``, ``nms_iou``, ...)."""


def postprocess_with(
    base: PostprocessConfig | None, keywords: Mapping[str, Any], caller: str
) -> PostprocessConfig:
    """``base`` (default :class:`PostprocessConfig()`) with the deprecated loose keywords applied.

    Passing ``top_k=...``, ``snap=...``, ... one by one still works for users of the Python API but
    warns (DeprecationWarning): give ``postprocess=PostprocessConfig(...)`` instead. Any other
    keyword is a TypeError naming ``caller``.
    """
    pp = base if base is not None else PostprocessConfig()
    if not keywords:
        return pp
    unknown = sorted(set(keywords) - set(POSTPROCESS_FIELDS))
    if unknown:
        raise TypeError(f"{caller}() got unexpected keyword arguments {unknown}")
    warnings.warn(
        f"{caller}({', '.join(f'{k}=...' for k in keywords)}) is deprecated: pass "
        f"postprocess=PostprocessConfig(...) (or dataclasses.replace(config.postprocess, ...))",
        DeprecationWarning,
        stacklevel=3,
    )
    return replace(pp, **keywords)


def rank_candidates(
    candidates: Sequence[Sequence[float]],
    saliency: Sequence[float],
    *,
    clip_len: float,
    duration: float,
    postprocess: PostprocessConfig,
) -> list[Window]:
    """The ranking stage every caller shares: candidate windows in seconds -> the final top windows.

    With ``postprocess.proposals`` the saliency curve's high runs join the candidates and all are
    ranked by :func:`saliency_proposals`; else with ``saliency_weight > 0`` each candidate is
    re-scored by :func:`saliency_rescore`; else the candidates keep their scores (ranked best first).
    Then NMS (``nms_iou``, None = off) and ``top_k``. (``snap`` applies earlier, to spans.)
    """
    pp = postprocess
    if pp.proposals:
        ranked = saliency_proposals(candidates, saliency, clip_len=clip_len, duration=duration)
    elif pp.saliency_weight > 0:
        ranked = saliency_rescore(candidates, saliency, clip_len=clip_len, weight=pp.saliency_weight)
    else:
        ranked = sorted(([float(w[0]), float(w[1]), float(w[2])] for w in candidates), key=lambda w: -w[2])
    return (temporal_nms(ranked, pp.nms_iou) if pp.nms_iou is not None else ranked)[: pp.top_k]


def decode_query(
    prob: Tensor | np.ndarray,
    spans: Tensor | np.ndarray,
    saliency: Sequence[float],
    *,
    num_clips: int,
    clip_len: float,
    duration: float,
    postprocess: PostprocessConfig,
) -> list[Window]:
    """One query's model outputs of one pass -> its ranked windows: THE decoding of masra.

    The trainer's evaluation (through :func:`predictions_from_outputs`), the Grounder (one pass per
    video, or per window of a long video) and so every inference entry
    (:func:`masra.grounding.infer.run.run_checkpoint`) call this function, so they cannot drift apart.

    Args:
        prob: (Q,) foreground probabilities.
        spans: (Q, 2) normalised (center, width) spans on the grid of ``num_clips`` clips.
        saliency: the query's clip scores as written to the prediction row (5 decimals).
        num_clips, clip_len, duration: as in :func:`spans_to_windows`.
        postprocess: the ranking (``snap`` here, the rest in :func:`rank_candidates`).
    """
    windows = spans_to_windows(
        spans,
        prob,
        num_clips=num_clips,
        clip_len=clip_len,
        duration=duration,
        top_k=len(prob),
        snap=postprocess.snap,
    )
    return rank_candidates(windows, saliency, clip_len=clip_len, duration=duration, postprocess=postprocess)


def saliency_row_length(num_scores: int, duration: float, clip_len: float) -> int:
    """Saliency scores a prediction row keeps: the clips that start inside the video, at least one."""
    return max(1, min(num_scores, grid_clips(duration, clip_len)))


def predictions_from_outputs(
    prob: Tensor,
    spans: Tensor,
    saliency: Tensor,
    meta: Sequence[dict[str, Any]],
    postprocess: PostprocessConfig | None = None,
    **deprecated: Any,
) -> list[dict[str, Any]]:
    """Batched outputs of one pass -> prediction rows, each query through :func:`decode_query`.

    Args:
        prob: (B, Q) foreground probabilities.
        spans: (B, Q, 2) normalised (center, width) spans.
        saliency: (B, L) clip scores.
        meta: per-sample dicts with ``qid``, ``query``, ``vid``, ``duration``, ``clip_len`` and
            ``num_clips`` (the clips the model saw).
        postprocess: the ranking (default ``PostprocessConfig()``: top 10 by foreground probability).
        deprecated: ``top_k``, ``snap``, ``nms_iou``, ``saliency_weight``, ``proposals`` one by one,
            as before (:func:`postprocess_with`: a DeprecationWarning).
    """
    pp = postprocess_with(postprocess, deprecated, "predictions_from_outputs")
    if not (prob.shape[0] == spans.shape[0] == saliency.shape[0] == len(meta)):
        raise ValueError(
            f"batch sizes differ: prob {prob.shape[0]}, spans {spans.shape[0]}, "
            f"saliency {saliency.shape[0]}, meta {len(meta)}"
        )
    prob_np = prob.detach().float().cpu().numpy()
    spans_np = spans.detach().float().cpu().numpy()
    sal = saliency_lists(saliency, [int(m["num_clips"]) for m in meta])
    rows = []
    for b, m in enumerate(meta):
        duration, clip_len = float(m["duration"]), float(m["clip_len"])
        windows = decode_query(
            prob_np[b],
            spans_np[b],
            sal[b],
            num_clips=int(m["num_clips"]),
            clip_len=clip_len,
            duration=duration,
            postprocess=pp,
        )
        rows.append(
            {
                "qid": m["qid"],
                "query": m.get("query", ""),
                "vid": m["vid"],
                "pred_relevant_windows": windows,
                "pred_saliency_scores": sal[b][: saliency_row_length(len(sal[b]), duration, clip_len)],
            }
        )
    return rows
