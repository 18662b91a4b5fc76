"""Per-query forms of the highlight-detection metrics for the hand-computed and reference tests.

The package scores packed arrays (:func:`masra.grounding.metrics.gt_saliency_arrays`,
:func:`masra.grounding.metrics.highlight_metrics_arrays`); these wrap them for one query's GT at a
time, which is how the protocol's cases are easiest to write down.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from masra.grounding.metrics import HL_THRESHOLDS, gt_saliency_arrays, highlight_metrics_arrays


def gt_saliency_matrix(
    duration: float, clip_ids: Sequence[int], scores: Sequence[Sequence[int]], clip_len: float = 2.0
) -> np.ndarray:
    """The (int(duration / clip_len), A) full-video GT score array of one query (ValueError for a clip
    id outside the video, or ids and scores of different lengths)."""
    gt, num_clips = gt_saliency_arrays([duration], [clip_ids], [scores], clip_len)
    return gt[0, : num_clips[0]]


def highlight_metrics(
    pred_saliency: Sequence[Sequence[float]],
    gt_full: Sequence[np.ndarray],
    thresholds: dict[str, int] = HL_THRESHOLDS,
) -> dict[str, dict[str, float]]:
    """HL-mAP and HL-Hit1 (percent) per threshold name, from Q per-query (num_clips_i, A) GT arrays."""
    if len(pred_saliency) != len(gt_full):
        raise ValueError(f"{len(pred_saliency)} saliency predictions but {len(gt_full)} GT arrays")
    width = gt_full[0].shape[1] if len(gt_full) else 3
    if any(g.ndim != 2 or g.shape[1] != width for g in gt_full):
        raise ValueError("GT saliency arrays must be (num_clips, A) with the same A")
    num_clips = np.array([len(g) for g in gt_full], dtype=int)
    gt = np.zeros((len(gt_full), int(max(num_clips.max(initial=0), 1)), width))
    mask = np.arange(gt.shape[1])[None, :] < num_clips[:, None]
    if len(gt_full):
        gt[mask] = np.concatenate(list(gt_full))
    return highlight_metrics_arrays(pred_saliency, gt, num_clips, thresholds)
