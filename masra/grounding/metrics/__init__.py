"""Evaluation of the standard VTG protocol (moment retrieval + highlight detection), numpy only.

This package imports no model code and no torch: any submission file can be scored with it.
"""

from masra.grounding.metrics.evaluate import (
    GroundTruth,
    QidMismatchError,
    evaluate_submission,
    format_table,
    read_ground_truth,
)
from masra.grounding.metrics.hl import (
    HL_THRESHOLDS,
    gt_saliency_arrays,
    highlight_metrics_arrays,
    saliency_ap,
)
from masra.grounding.metrics.mr import (
    LENGTH_BUCKETS,
    MAP_THRESHOLDS,
    R1_THRESHOLDS,
    MomentArrays,
    detection_ap,
    iou_cross,
    iou_paired,
    moment_retrieval_metrics,
    top1_iou,
)

__all__ = [
    "HL_THRESHOLDS",
    "LENGTH_BUCKETS",
    "MAP_THRESHOLDS",
    "R1_THRESHOLDS",
    "GroundTruth",
    "MomentArrays",
    "QidMismatchError",
    "detection_ap",
    "evaluate_submission",
    "format_table",
    "gt_saliency_arrays",
    "highlight_metrics_arrays",
    "iou_cross",
    "iou_paired",
    "moment_retrieval_metrics",
    "read_ground_truth",
    "saliency_ap",
    "top1_iou",
]
