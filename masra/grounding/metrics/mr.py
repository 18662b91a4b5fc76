"""Moment-retrieval metrics of the standard VTG protocol, vectorised over queries (numpy only).

The protocol (``docs/evaluation.md``) in short:

* temporal IoU of two windows: intersection / union, 0 when disjoint;
* R1@t: the first predicted window of a query against the GT window of highest IoU with it;
  the query counts when that IoU >= t. mIoU is the mean of that IoU;
* mAP@t: ActivityNet-style detection AP per query over the first 10 predicted windows, sorted by
  score (stable for ties), greedily matched in score order, each GT window at most once; VOC-2011
  interpolated area under the precision envelope; mean over queries;
* length buckets by GT window length ``l``: short ``0 < l <= 10``, middle ``10 < l <= 30``, long
  ``30 < l <= 150``; full keeps every window.

Floating-point expressions follow the standard tool's (same IoU formulas, thresholds rounded to two
decimals), so comparisons at a threshold land on the same side. Ties in IoU between GT windows are
broken as the standard tool breaks them on the same numpy build (``argsort(iou)[::-1]``).

Arrays are padded: ``Q`` queries, ``P`` predicted windows, ``G`` GT windows, ``T`` thresholds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np

MAP_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))  # 0.5 .. 0.95
R1_THRESHOLDS: tuple[float, ...] = tuple(round(0.3 + 0.05 * i, 2) for i in range(14))  # 0.3 .. 0.95
MAX_PRED_WINDOWS = 10
LENGTH_BUCKETS: dict[str, tuple[float, float] | None] = {
    "short": (0.0, 10.0),
    "middle": (10.0, 30.0),
    "long": (30.0, 150.0),
    "full": None,  # every GT window, whatever its length
}


def iou_cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every window in ``a`` (..., N, 2) with every window in ``b`` (..., M, 2) -> (..., N, M)."""
    area_a = a[..., 1] - a[..., 0]  # (..., N)
    area_b = b[..., 1] - b[..., 0]  # (..., M)
    left = np.maximum(a[..., :, None, 0], b[..., None, :, 0])  # (..., N, M)
    right = np.minimum(a[..., :, None, 1], b[..., None, :, 1])
    inter = np.clip(right - left, 0, None)
    union = area_a[..., :, None] + area_b[..., None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / union


def iou_paired(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of ``a[i]`` with ``b[i]``; (N, 2), (N, 2) -> (N,). The union is the hull, as in R1."""
    inter = np.maximum(0, np.minimum(a[:, 1], b[:, 1]) - np.maximum(a[:, 0], b[:, 0]))
    union = np.maximum(a[:, 1], b[:, 1]) - np.minimum(a[:, 0], b[:, 0])  # equals the union when overlapping
    return np.divide(inter, union, out=np.zeros_like(inter), where=union != 0)


def _pad_windows(rows: Sequence[Sequence[Sequence[float]]], width: int) -> tuple[np.ndarray, np.ndarray]:
    """Ragged per-query window lists -> ((Q, N, width) float, (Q, N) bool mask), in one conversion."""
    lengths = np.fromiter(map(len, rows), dtype=int, count=len(rows))
    n = max(int(lengths.max(initial=0)), 1)
    mask = np.arange(n)[None, :] < lengths[:, None]  # (Q, N)
    out = np.zeros((len(rows), n, width))
    flat = [w[:width] for w in chain.from_iterable(rows)]
    if flat:
        values = np.asarray(flat, dtype=float)
        if values.shape != (len(flat), width):
            raise ValueError(f"every window needs {width} numbers, got shape {values.shape}")
        out[mask] = values
    return out, mask


@dataclass(frozen=True)
class MomentArrays:
    """Padded moment data of ``Q`` queries.

    Attributes:
        pred: (Q, P, 3) float ``(start, end, score)`` of the first ``P`` windows in file order.
        pred_mask: (Q, P) bool, True for a real window.
        gt: (Q, G, 2) float GT windows in seconds.
        gt_mask: (Q, G) bool, True for a real GT window.
    """

    pred: np.ndarray
    pred_mask: np.ndarray
    gt: np.ndarray
    gt_mask: np.ndarray

    def __post_init__(self) -> None:
        q, p = self.pred_mask.shape
        if self.pred.shape != (q, p, 3) or self.gt.shape[:1] != (q,) or self.gt.shape[2:] != (2,):
            raise ValueError(f"inconsistent shapes: pred {self.pred.shape}, gt {self.gt.shape}")
        if self.gt_mask.shape != self.gt.shape[:2]:
            raise ValueError(f"gt_mask {self.gt_mask.shape} does not match gt {self.gt.shape}")

    @classmethod
    def pack(
        cls,
        pred_windows: Sequence[Sequence[Sequence[float]]],
        gt_windows: Sequence[Sequence[Sequence[float]]],
        max_pred: int | None = MAX_PRED_WINDOWS,
    ) -> MomentArrays:
        """Pad ragged per-query lists; keep the first ``max_pred`` predicted windows (file order)."""
        if len(pred_windows) != len(gt_windows):
            raise ValueError(f"{len(pred_windows)} prediction lists but {len(gt_windows)} GT lists")
        preds = [w[:max_pred] if max_pred is not None else w for w in pred_windows]
        pred, pred_mask = _pad_windows(preds, 3)
        gt, gt_mask = _pad_windows(gt_windows, 2)
        return cls(pred, pred_mask, gt, gt_mask)

    def select(self, rows: np.ndarray, gt_keep: np.ndarray | None = None) -> MomentArrays:
        """Queries ``rows`` (index array); optionally only the GT windows where ``gt_keep`` (Q, G)."""
        gt_mask = self.gt_mask if gt_keep is None else self.gt_mask & gt_keep
        gt_mask = gt_mask[rows]
        gt = self.gt[rows]
        # Compact kept GT windows to the front, in their original order.
        order = np.argsort(~gt_mask, axis=1, kind="stable")
        gt = np.take_along_axis(gt, order[..., None], axis=1)
        gt_mask = np.take_along_axis(gt_mask, order, axis=1)
        return MomentArrays(self.pred[rows], self.pred_mask[rows], gt, gt_mask)


def _gt_priority(iou: np.ndarray, gt_mask: np.ndarray, min_thr: float) -> np.ndarray:
    """Visiting rank of each GT window per prediction, as ``argsort(iou)[::-1]`` gives it.

    The order among GT windows of equal IoU only matters when that IoU reaches a threshold, so only
    those rows (rare) are re-sorted one by one the way the standard tool sorts them.

    Args:
        iou: (Q, P, G) IoU, any value where the GT is padding.
        gt_mask: (Q, G) bool.
        min_thr: the lowest IoU threshold in use.
    Returns:
        (Q, P, G) int rank (0 = visited first); padded GT windows rank last.
    """
    q, p, g = iou.shape
    real = np.broadcast_to(gt_mask[:, None, :], iou.shape)
    key = np.where(real, iou, -np.inf)
    order = np.argsort(-key, axis=2, kind="stable")  # descending; ties: lowest index first
    ranked = np.take_along_axis(key, order, axis=2)
    tie = ((ranked[..., 1:] == ranked[..., :-1]) & (ranked[..., 1:] >= min_thr)).any(axis=2)  # (Q, P)
    for qi, pi in zip(*np.nonzero(tie), strict=True):  # rare: reproduce the standard tool's order
        n = int(gt_mask[qi].sum())
        order[qi, pi, :n] = np.argsort(iou[qi, pi, :n])[::-1]
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(g)[None, None, :].repeat(q, 0).repeat(p, 1), axis=2)
    return rank


def detection_ap(m: MomentArrays, thresholds: Sequence[float] = MAP_THRESHOLDS) -> np.ndarray:
    """ActivityNet/VOC-2011 interpolated AP per query and IoU threshold -> (Q, T).

    A query without predicted windows gets AP 0. Every query must have at least one GT window.
    """
    if (m.gt_mask.sum(1) == 0).any():
        raise ValueError("every query needs at least one GT window to compute AP")
    thr = np.asarray(thresholds, dtype=float)  # (T,)
    q, p = m.pred_mask.shape
    t = len(thr)
    # Sort the kept windows by score, stable: `list.sort(key=-score)` in the standard tool.
    key = np.where(m.pred_mask, -m.pred[..., 2], np.inf)
    order = np.argsort(key, axis=1, kind="stable")  # (Q, P)
    pred = np.take_along_axis(m.pred, order[..., None], axis=1)
    valid = np.take_along_axis(m.pred_mask, order, axis=1)
    iou = iou_cross(pred[..., :2], m.gt)  # (Q, P, G)
    rank = _gt_priority(iou, m.gt_mask, float(thr.min()))

    locked = np.broadcast_to(~m.gt_mask[:, None, :], (q, t, m.gt_mask.shape[1])).copy()  # (Q, T, G)
    tp = np.zeros((q, t, p), dtype=bool)
    qi = np.arange(q)[:, None]
    ti = np.arange(t)[None, :]
    big = np.iinfo(rank.dtype).max
    for k in range(p):
        r = np.where(locked, big, rank[:, None, k, :])  # (Q, T, G)
        cand = r.argmin(axis=2)  # first unlocked GT in visiting order, (Q, T)
        free = ~np.take_along_axis(locked, cand[..., None], axis=2)[..., 0]
        cand_iou = iou[qi, k, cand]  # (Q, T)
        hit = valid[:, k, None] & free & (cand_iou >= thr[None, :])
        tp[:, :, k] = hit
        locked[qi, ti, cand] |= hit

    num_gt = m.gt_mask.sum(1).astype(float)  # (Q,)
    cum_tp = np.cumsum(tp, axis=2).astype(float)  # (Q, T, P)
    precision = np.where(valid[:, None, :], cum_tp / np.arange(1, p + 1), 0.0)
    recall = cum_tp / num_gt[:, None, None]
    zeros = np.zeros((q, t, 1))
    mprec = np.concatenate([zeros, precision, zeros], axis=2)
    mrec = np.concatenate([zeros, recall, np.ones((q, t, 1))], axis=2)
    mprec = np.flip(np.maximum.accumulate(np.flip(mprec, axis=2), axis=2), axis=2)
    step = mrec[..., 1:] - mrec[..., :-1]
    ap = np.where(step != 0, step * mprec[..., 1:], 0.0).sum(axis=2)
    has_pred = np.asarray(valid.any(axis=1))  # (Q,)
    return np.where(has_pred[:, None], ap, 0.0)


def top1_iou(m: MomentArrays) -> np.ndarray:
    """IoU of each query's first predicted window with its best-matching GT window -> (Q,).

    A query without predicted windows scores 0.
    """
    top1 = m.pred[:, 0, :2]  # (Q, 2), file order
    iou = iou_cross(top1[:, None, :], m.gt)[:, 0, :]  # (Q, G)
    best = np.where(m.gt_mask, iou, -np.inf).argmax(axis=1)  # first maximum, as np.argmax
    gt = m.gt[np.arange(len(best)), best]
    out = iou_paired(top1, gt)
    return np.where(m.pred_mask[:, 0], out, 0.0)


def bucket_rows(m: MomentArrays, bucket: tuple[float, float] | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Rows of queries with a GT window in ``(lo, hi]`` and the (Q, G) mask of those windows."""
    if bucket is None:
        return np.arange(m.gt_mask.shape[0]), None
    lo, hi = bucket
    length = m.gt[..., 1] - m.gt[..., 0]
    keep = m.gt_mask & (length > lo) & (length <= hi)
    return np.nonzero(keep.any(axis=1))[0], keep


def pct(value: float) -> float:
    """100 x value rounded to 2 decimals, formatted exactly as the standard tool formats it."""
    return float(f"{100 * value:.2f}")


def moment_retrieval_metrics(
    m: MomentArrays,
    map_thresholds: Sequence[float] = MAP_THRESHOLDS,
    r1_thresholds: Sequence[float] = R1_THRESHOLDS,
) -> tuple[dict[str, dict[str, object]], dict[str, int]]:
    """The four length buckets' metrics, in percent.

    Returns:
        ``({bucket: {"MR-mAP": {"0.5": .., .., "average": ..}, "MR-R1": {"0.3": .., ..},
        "MR-mIoU": ..}}, {bucket: number of queries})``. An empty bucket reports zeros.
    """
    out: dict[str, dict[str, object]] = {}
    counts: dict[str, int] = {}
    for name, bucket in LENGTH_BUCKETS.items():
        rows, keep = bucket_rows(m, bucket)
        counts[name] = len(rows)
        if len(rows) == 0:
            out[name] = {
                "MR-mAP": {**{str(t): 0.0 for t in map_thresholds}, "average": 0.0},
                "MR-R1": {str(t): 0.0 for t in r1_thresholds},
                "MR-mIoU": 0.0,
            }
            continue
        sub = m.select(rows, keep)
        ap = detection_ap(sub, map_thresholds).mean(axis=0)  # (T,)
        ious = top1_iou(sub)
        mr_map: dict[str, float] = {str(t): pct(v) for t, v in zip(map_thresholds, ap, strict=True)}
        mr_map["average"] = pct(float(np.mean(ap)))
        out[name] = {
            "MR-mAP": mr_map,
            "MR-R1": {str(t): pct(float(np.mean(ious >= t))) for t in r1_thresholds},
            "MR-mIoU": pct(float(np.mean(ious))),
        }
    return out, counts
