"""Score a submission against ground truth with the standard VTG protocol.

:func:`evaluate_submission` returns ``{"brief": {...}, <full breakdown sorted by key>, "scoring": {...}}``:

* ``brief`` holds the numbers users paste into tables, keyed exactly by the standard names
  (``MR-full-mAP``, ``MR-full-R1@0.5``, ``HL-min-VeryGood-mAP``, ...), plus ``MR-full-R1@0.3`` and
  ``MR-full-mIoU`` when ``charades_style`` (Charades-STA, TACoS);
* ``full`` / ``long`` / ``middle`` / ``short`` hold ``MR-mAP`` (per IoU threshold and ``average``),
  ``MR-R1`` (0.3 .. 0.95) and ``MR-mIoU``; ``HL-min-Fair`` / ``-Good`` / ``-VeryGood`` hold ``HL-mAP``
  and ``HL-Hit1`` when saliency is scored;
* ``scoring`` says what was scored: query counts per bucket, whether only the qid intersection was
  scored and how many queries that left out.

Ground truth is read raw (:func:`read_ground_truth`): windows are not clipped, as in the standard tool.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from masra.datasets.types import AnnotationError, Query, QueryId
from masra.grounding.metrics.hl import gt_saliency_arrays, highlight_metrics_arrays
from masra.grounding.metrics.mr import MomentArrays, moment_retrieval_metrics
from masra.grounding.submission import Prediction

log = logging.getLogger(__name__)

BRIEF_MR = {
    "MR-full-mAP": ("full", "MR-mAP", "average"),
    "MR-full-mAP@0.5": ("full", "MR-mAP", "0.5"),
    "MR-full-mAP@0.75": ("full", "MR-mAP", "0.75"),
    "MR-short-mAP": ("short", "MR-mAP", "average"),
    "MR-middle-mAP": ("middle", "MR-mAP", "average"),
    "MR-long-mAP": ("long", "MR-mAP", "average"),
    "MR-full-R1@0.5": ("full", "MR-R1", "0.5"),
    "MR-full-R1@0.7": ("full", "MR-R1", "0.7"),
}
BRIEF_CHARADES = {"MR-full-R1@0.3": ("full", "MR-R1", "0.3"), "MR-full-mIoU": ("full", "MR-mIoU", None)}


@dataclass(frozen=True)
class GroundTruth:
    """Labels of one query as the annotation file gives them (nothing clipped).

    Attributes:
        qid: query id.
        duration: video duration in seconds.
        windows: GT windows ``(start, end)`` in seconds, ``start < end``.
        relevant_clip_ids: clips with saliency labels (QVHighlights), else None.
        saliency_scores: per relevant clip, the annotators' 0-4 scores, else None.
        vid / query: video id and sentence when the file gives them (not used for scoring).
    """

    qid: QueryId
    duration: float
    windows: tuple[tuple[float, float], ...]
    relevant_clip_ids: tuple[int, ...] | None = None
    saliency_scores: tuple[tuple[int, ...], ...] | None = None
    vid: str | None = None
    query: str | None = None

    @classmethod
    def from_query(cls, q: Query) -> GroundTruth:
        """From a reader's :class:`Query` (note: readers clip window ends to the duration)."""
        return cls(q.qid, q.duration, q.windows, q.relevant_clip_ids, q.saliency_scores, q.vid, q.query)


def _gt_from_record(record: Any, where: tuple[str, int]) -> GroundTruth:
    if not isinstance(record, dict):
        raise AnnotationError(*where, f"expected a JSON object, got {type(record).__name__}")
    for key in ("qid", "duration"):
        if key not in record:
            raise AnnotationError(*where, f"missing field {key!r} (fields present: {sorted(record)})")
    qid = record["qid"]
    if isinstance(qid, bool) or not isinstance(qid, int | str):
        raise AnnotationError(*where, f"qid must be an integer or a string, got {qid!r}")
    duration = record["duration"]
    if isinstance(duration, bool) or not isinstance(duration, int | float) or not duration > 0:
        raise AnnotationError(*where, f"duration must be a positive number, got {duration!r}")
    windows = []
    for w in record.get("relevant_windows") or []:
        ok = isinstance(w, list) and len(w) == 2 and all(isinstance(x, int | float) for x in w)
        if not ok or not math.isfinite(w[0]) or not math.isfinite(w[1]) or w[0] >= w[1]:
            raise AnnotationError(
                *where, f"qid {qid!r}: bad relevant window {w!r} (need [start, end], start < end)"
            )
        windows.append((float(w[0]), float(w[1])))
    ids, scores = record.get("relevant_clip_ids"), record.get("saliency_scores")
    if (ids is None) != (scores is None):
        raise AnnotationError(*where, f"qid {qid!r}: relevant_clip_ids and saliency_scores go together")
    if ids is not None:
        if not isinstance(ids, list) or not isinstance(scores, list) or len(ids) != len(scores):
            raise AnnotationError(
                *where, f"qid {qid!r}: relevant_clip_ids and saliency_scores lengths differ"
            )
        if not all(isinstance(r, list) and r for r in scores):
            raise AnnotationError(*where, f"qid {qid!r}: saliency_scores rows must be non-empty lists")
        ids, scores = tuple(int(i) for i in ids), tuple(tuple(int(s) for s in r) for r in scores)
    vid, query = record.get("vid"), record.get("query")
    return GroundTruth(
        qid,
        float(duration),
        tuple(windows),
        ids,
        scores,
        None if vid is None else str(vid),
        None if query is None else str(query),
    )


def read_ground_truth(path: str | os.PathLike[str]) -> list[GroundTruth]:
    """Read a QVHighlights-style annotation jsonl (QVHighlights, Charades-STA or TACoS jsonl) raw."""
    path = Path(path)
    out: list[GroundTruth] = []
    seen: dict[QueryId, int] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            where = (str(path), lineno)
            try:
                record = json.loads(raw)
            except json.JSONDecodeError as e:
                raise AnnotationError(*where, f"invalid JSON ({e.msg} at column {e.colno})") from None
            gt = _gt_from_record(record, where)
            if gt.qid in seen:
                raise AnnotationError(*where, f"duplicate qid {gt.qid!r} (first on line {seen[gt.qid]})")
            seen[gt.qid] = lineno
            out.append(gt)
    if not out:
        raise ValueError(f"{path}: no annotations found")
    return out


class QidMismatchError(ValueError):
    """The submission's qids differ from the ground truth's; lists both sides' extras."""

    def __init__(self, missing: list[QueryId], extra: list[QueryId], show: int = 10) -> None:
        def fmt(ids: list[QueryId]) -> str:
            head = ", ".join(repr(i) for i in ids[:show])
            return head + (f" (and {len(ids) - show} more)" if len(ids) > show else "")

        parts = []
        if missing:
            parts.append(f"{len(missing)} GT qids have no prediction: {fmt(missing)}")
        if extra:
            parts.append(f"{len(extra)} predicted qids are not in the GT: {fmt(extra)}")
        super().__init__(
            "qids of submission and ground truth must match; " + "; ".join(parts)
            + ". Score only the shared qids with intersection=True (CLI: --intersection)."
        )  # fmt: skip
        self.missing = missing
        self.extra = extra


def _as_predictions(preds: Sequence[Prediction | Mapping[str, Any]]) -> list[Prediction]:
    return [
        p if isinstance(p, Prediction) else Prediction.from_dict(p, ("<submission>", i + 1))
        for i, p in enumerate(preds)
    ]


def _as_gts(gts: Sequence[GroundTruth | Query | Mapping[str, Any]]) -> list[GroundTruth]:
    out = []
    for i, g in enumerate(gts):
        if isinstance(g, GroundTruth):
            out.append(g)
        elif isinstance(g, Query):
            out.append(GroundTruth.from_query(g))
        else:
            out.append(_gt_from_record(dict(g), ("<ground truth>", i + 1)))
    return out


def _sort_key(qid: QueryId) -> tuple[int, int, str]:
    return (1, 0, qid) if isinstance(qid, str) else (0, qid, "")


def evaluate_submission(
    preds: Sequence[Prediction | Mapping[str, Any]],
    gts: Sequence[GroundTruth | Query | Mapping[str, Any]],
    *,
    intersection: bool = False,
    charades_style: bool | None = None,
    clip_len: float = 2.0,
) -> dict[str, Any]:
    """Score ``preds`` against ``gts`` (module docstring for the output layout; numbers in percent).

    Args:
        preds: predictions (or submission-line dicts).
        gts: ground truth (or annotation-line dicts, or reader ``Query`` records).
        intersection: score only the qids present on both sides (and say so in ``scoring``) instead
            of raising :class:`QidMismatchError`.
        charades_style: add ``MR-full-R1@0.3`` and ``MR-full-mIoU`` to ``brief``; None = when the GT
            has no saliency labels.
        clip_len: saliency clip length in seconds (2 for QVHighlights).
    Raises:
        QidMismatchError: qid sets differ and ``intersection`` is False.
        ValueError: a GT query without windows, no shared qids, or saliency of mixed presence.
    """
    predictions, truths = _as_predictions(preds), _as_gts(gts)
    pred_by = {p.qid: p for p in predictions}
    gt_by = {g.qid: g for g in truths}
    missing = sorted(set(gt_by) - set(pred_by), key=_sort_key)
    extra = sorted(set(pred_by) - set(gt_by), key=_sort_key)
    if (missing or extra) and not intersection:
        raise QidMismatchError(missing, extra)
    qids = [g.qid for g in truths if g.qid in pred_by]
    if not qids:
        raise ValueError("no qid is shared by the submission and the ground truth")
    if missing or extra:
        log.warning(
            "scoring the %d shared qids only: %d GT qids without prediction and %d predicted qids "
            "without GT left out", len(qids), len(missing), len(extra)
        )  # fmt: skip
    unlabelled = [q for q in qids if not gt_by[q].windows]
    if unlabelled:
        raise ValueError(f"{len(unlabelled)} GT queries have no relevant_windows, e.g. qids {unlabelled[:5]}")
    empty = sum(1 for q in qids if not pred_by[q].windows)
    if empty:
        log.warning("%d predictions have no windows; each counts as a miss (AP 0, IoU 0)", empty)

    moments = MomentArrays.pack(
        [list(pred_by[q].windows) for q in qids], [list(gt_by[q].windows) for q in qids]
    )
    mr, counts = moment_retrieval_metrics(moments)
    for name, n in counts.items():
        if n == 0:
            log.info("length bucket %r has no queries; it reports 0", name)
    breakdown: dict[str, Any] = dict(mr)

    has_sal_gt = [gt_by[q].saliency_scores is not None for q in qids]
    has_sal_pred = [pred_by[q].saliency is not None for q in qids]
    hl_scored = False
    if any(has_sal_pred) and all(has_sal_gt):
        if not all(has_sal_pred):
            bad = [q for q, h in zip(qids, has_sal_pred, strict=True) if not h][:5]
            raise ValueError(f"some predictions lack pred_saliency_scores, e.g. qids {bad}")
        truths_hl = [gt_by[q] for q in qids]
        gt, num_clips = gt_saliency_arrays(
            [g.duration for g in truths_hl],
            [g.relevant_clip_ids or () for g in truths_hl],
            [g.saliency_scores or () for g in truths_hl],
            clip_len,
            names=qids,
        )
        breakdown.update(highlight_metrics_arrays([pred_by[q].saliency or () for q in qids], gt, num_clips))
        hl_scored = True
    elif any(has_sal_pred):
        n_gt = sum(has_sal_gt)
        log.info(
            "%s: highlight detection not scored",
            "the ground truth has no saliency labels"
            if n_gt == 0
            else f"only {n_gt} of {len(qids)} GT queries have saliency labels",
        )

    if charades_style is None:
        charades_style = not any(has_sal_gt)
    brief: dict[str, float] = {}
    spec = {**BRIEF_MR, **(BRIEF_CHARADES if charades_style else {})}
    for key in sorted(spec):
        bucket, metric, sub = spec[key]
        value = breakdown[bucket][metric]
        brief[key] = value if sub is None else value[sub]
    if hl_scored:
        for name in ("HL-min-Fair", "HL-min-Good", "HL-min-VeryGood"):
            brief[f"{name}-mAP"] = breakdown[name]["HL-mAP"]
            brief[f"{name}-Hit1"] = breakdown[name]["HL-Hit1"]

    result: dict[str, Any] = {"brief": brief}
    result.update(sorted(breakdown.items()))
    result["scoring"] = {
        "num_queries": len(qids),
        "bucket_queries": counts,
        "highlight_scored": hl_scored,
        "intersection": bool(missing or extra),
        "gt_without_prediction": len(missing),
        "prediction_without_gt": len(extra),
    }
    return result


def format_table(metrics: Mapping[str, Any]) -> str:
    """The ``brief`` block as a two-column Markdown table."""
    brief = metrics["brief"]
    width = max(len(k) for k in brief)
    lines = [f"| {'metric'.ljust(width)} | value  |", f"|{'-' * (width + 2)}|--------|"]
    lines += [f"| {k.ljust(width)} | {v:6.2f} |" for k, v in brief.items()]
    return "\n".join(lines)
