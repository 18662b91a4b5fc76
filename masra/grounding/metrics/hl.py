"""Highlight-detection metrics of the standard protocol (QVHighlights), vectorised (numpy only).

* GT per query: a (num_clips, A) array of the A annotators' 0-4 scores, ``num_clips =
  int(duration / clip_len)``, filled at ``relevant_clip_ids`` and 0 elsewhere.
* For a threshold m (2 Fair, 3 Good, 4 VeryGood) a clip is positive for annotator j if its score >= m.
* HL-mAP: per query and annotator, the AP of the predicted saliency (padded with 0 or cut to
  ``num_clips``) against the binary labels: a precision-recall curve over the distinct predicted
  scores (tied scores form one step, as scikit-learn's ``precision_recall_curve``), precision made
  monotone towards lower recall, averaged over the curve points where recall changes. All-negative
  labels give 0, all-positive 1. Mean over queries and annotators.
* HL-Hit1: the clip of the highest predicted score (first one on ties, over the list as submitted);
  1 if it is positive for any annotator (0 if it lies past the GT clips). Mean over queries.

Shapes: ``Q`` queries, ``C`` padded clips, ``A`` annotators.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain

import numpy as np

from masra.datasets.grid import protocol_clips

HL_THRESHOLDS: dict[str, int] = {"Fair": 2, "Good": 3, "VeryGood": 4}


def pad_ragged(rows: Sequence[Sequence[float]], fill: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Ragged lists of numbers -> (padded (Q, max length) float, lengths (Q,) int), in one pass."""
    lengths = np.fromiter(map(len, rows), dtype=int, count=len(rows))
    width = int(lengths.max(initial=0))
    flat = np.fromiter(chain.from_iterable(rows), dtype=float, count=int(lengths.sum()))
    padded = np.full((len(rows), max(width, 1)), fill)
    padded[np.arange(padded.shape[1])[None, :] < lengths[:, None]] = flat  # row-major, like flat
    return padded, lengths


def gt_saliency_arrays(
    durations: Sequence[float],
    clip_ids: Sequence[Sequence[int]],
    scores: Sequence[Sequence[Sequence[int]]],
    clip_len: float = 2.0,
    names: Sequence[object] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Every query's full-video GT scores at once -> (gt (Q, C, A) float, num_clips (Q,) int).

    Query i has ``int(durations[i] / clip_len)`` clips, filled at its ``clip_ids`` with its ``scores``.

    Raises:
        ValueError: ids and scores of different lengths, rows of different widths, or a clip id
            outside its video (naming the query by ``names[i]``, its qid, or else its position).
    """

    def who(i: int) -> str:
        return f"GT qid {names[i]!r}" if names is not None else f"query {i}"

    num_clips = np.array([protocol_clips(d, clip_len) for d in durations], dtype=int)
    n_ids = np.fromiter(map(len, clip_ids), dtype=int, count=len(clip_ids))
    n_rows = np.fromiter(map(len, scores), dtype=int, count=len(scores))
    if (n_ids != n_rows).any():
        i = int(np.nonzero(n_ids != n_rows)[0][0])
        raise ValueError(f"{who(i)}: {n_ids[i]} relevant_clip_ids but {n_rows[i]} saliency_scores rows")
    flat_rows = list(chain.from_iterable(scores))
    widths = {len(r) for r in flat_rows}
    if len(widths) > 1:
        raise ValueError(f"saliency_scores rows of different widths {sorted(widths)}")
    width = widths.pop() if widths else 3
    ids = np.fromiter(chain.from_iterable(clip_ids), dtype=int, count=int(n_ids.sum()))
    owner = np.repeat(np.arange(len(clip_ids)), n_ids)
    bad = (ids < 0) | (ids >= num_clips[owner])
    if bad.any():
        i, cid = int(owner[bad][0]), int(ids[bad][0])
        raise ValueError(
            f"{who(i)}: relevant clip id {cid} outside the {num_clips[i]} clips of a {durations[i]} s "
            f"video ({clip_len} s clips)"
        )
    gt = np.zeros((len(clip_ids), int(max(num_clips.max(initial=0), 1)), width))
    if len(ids):
        gt[owner, ids] = np.asarray(flat_rows, dtype=float)
    return gt, num_clips


def saliency_ap(scores: np.ndarray, valid: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Interpolated AP of ``scores`` against binary ``labels`` per query and annotator -> (Q, A).

    Args:
        scores: (Q, C) predicted scores, already padded/cut to each query's clips.
        valid: (Q, C) bool, True for a real clip.
        labels: (Q, C, A) bool, False where not valid.
    """
    q, c = scores.shape
    order = np.argsort(np.where(valid, -scores, np.inf), axis=1, kind="stable")  # (Q, C), padding last
    s = np.take_along_axis(scores, order, axis=1)
    v = np.take_along_axis(valid, order, axis=1)
    y = np.take_along_axis(labels, order[..., None], axis=1)  # (Q, C, A)
    nxt_differs = np.ones((q, c), dtype=bool)
    nxt_differs[:, :-1] = (s[:, 1:] != s[:, :-1]) | ~v[:, 1:]
    group_end = v & nxt_differs  # last clip of each tied-score group: one curve point per group
    group_start = np.zeros((q, c), dtype=bool)
    group_start[:, 0] = True
    group_start[:, 1:] = group_end[:, :-1]
    idx = np.arange(c)
    start_of = np.maximum.accumulate(np.where(group_start, idx, 0), axis=1)  # (Q, C)
    last_pos = np.maximum.accumulate(np.where(y, idx[None, :, None], -1), axis=1)  # (Q, C, A)
    changes = group_end[..., None] & (last_pos >= start_of[..., None])  # recall changes at this point

    tps = np.cumsum(y, axis=1)  # (Q, C, A)
    precision = np.where(group_end[..., None], tps / (idx + 1)[None, :, None], 0.0)
    interp = np.flip(np.maximum.accumulate(np.flip(precision, axis=1), axis=1), axis=1)
    n_points = changes.sum(axis=1)  # (Q, A)
    ap = np.where(changes, interp, 0.0).sum(axis=1) / np.maximum(n_points, 1)
    npos = y.sum(axis=1)
    nvalid = v.sum(axis=1)[:, None]
    ap = np.where(npos == 0, 0.0, ap)
    return np.where(npos == nvalid, 1.0, ap)


def hit_at_one(top: np.ndarray, labels: np.ndarray, num_clips: np.ndarray) -> np.ndarray:
    """Per query, 1.0 if clip ``top`` is positive for any annotator, 0.0 if not or past the GT clips.

    Args:
        top: (Q,) int, the first clip of each query's highest predicted score.
        labels: (Q, C, A) bool.
        num_clips: (Q,) int.
    """
    inside = top < num_clips
    safe = np.where(inside, top, 0)
    hit = labels[np.arange(len(top)), safe].any(axis=1)
    return (hit & inside).astype(float)


def highlight_metrics_arrays(
    pred_saliency: Sequence[Sequence[float]],
    gt: np.ndarray,
    num_clips: np.ndarray,
    thresholds: dict[str, int] = HL_THRESHOLDS,
) -> dict[str, dict[str, float]]:
    """HL-mAP and HL-Hit1 (percent) per threshold name, from packed GT: ``gt`` (Q, C, A) 0-4 scores
    (:func:`gt_saliency_arrays`), ``num_clips`` (Q,).

    Args:
        pred_saliency: Q predicted score lists (any lengths, non-empty).
    Returns:
        ``{"HL-min-Fair": {"HL-mAP": .., "HL-Hit1": ..}, "HL-min-Good": .., "HL-min-VeryGood": ..}``.
    """
    if len(pred_saliency) != len(gt):
        raise ValueError(f"{len(pred_saliency)} saliency predictions but {len(gt)} GT arrays")
    raw, lengths = pad_ragged(pred_saliency, fill=-np.inf)  # (Q, Lmax) as submitted
    if (lengths == 0).any():
        raise ValueError("a predicted saliency list is empty")
    if (num_clips == 0).any():
        raise ValueError("a GT saliency array has no clips (duration shorter than one clip)")
    c = gt.shape[1]
    valid = np.arange(c)[None, :] < num_clips[:, None]  # (Q, C)
    cols = min(c, raw.shape[1])
    scores = np.zeros((len(gt), c))  # cut to the video's clips, padded with 0
    keep = valid[:, :cols] & (np.arange(cols)[None, :] < lengths[:, None])
    scores[:, :cols] = np.where(keep, raw[:, :cols], 0.0)
    top = raw.argmax(axis=1)  # first maximum of the list as submitted
    width = gt.shape[2]
    labels = np.concatenate(
        [(gt >= m) & valid[..., None] for m in thresholds.values()], axis=2
    )  # (Q, C, T*A)
    ap = saliency_ap(scores, valid, labels)  # one sort for every threshold and annotator
    out: dict[str, dict[str, float]] = {}
    for k, name in enumerate(thresholds):
        hit = hit_at_one(top, labels[..., k * width : (k + 1) * width], num_clips)
        out[f"HL-min-{name}"] = {
            "HL-mAP": float(f"{100 * np.mean(ap[:, k * width : (k + 1) * width]):.2f}"),
            "HL-Hit1": float(f"{100 * np.mean(hit):.2f}"),
        }
    return out
