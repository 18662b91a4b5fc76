"""One PNG timeline per query: GT windows, top-k predicted windows with scores, saliency, event priors.

Layout (time in seconds on the shared x axis)::

    [ saliency curve (predicted, min-max scaled) + GT saliency (mean annotator score / 4) ]
    [ GT      ████                                                                       ]
    [ pred 1     ███ 0.93                                                                ]
    [ pred 2            ██████ 0.41                                                      ]
    [ events  ▒▒▒▒ "a man opens the door"   ▒▒▒▒▒▒ "..."                                 ]

Rendered with matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import logging
import os
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from masra.datasets.grid import num_clips as grid_clips
from masra.grounding.metrics import GroundTruth, iou_paired
from masra.grounding.submission import Prediction

if TYPE_CHECKING:
    from matplotlib.axes import Axes

log = logging.getLogger(__name__)

__all__ = ["Event", "TimelineData", "render_timeline", "timelines_from_predictions", "top1_iou_of"]

Event = tuple[float, float, str]  # (start_s, end_s, text)

GT_COLOR, PRED_COLOR, EVENT_COLOR, SAL_COLOR = "#2e7d32", "#1565c0", "#ef6c00", "#6a1b9a"


@dataclass
class TimelineData:
    """Everything one timeline shows.

    Attributes:
        qid: query id.
        query: the sentence (may be empty).
        duration: video duration in seconds.
        clip_len: seconds per saliency clip.
        gt_windows: GT ``(start, end)`` in seconds.
        pred_windows: predicted ``(start, end, score)``, best first.
        saliency: predicted per-clip saliency, or None.
        gt_saliency: per-clip GT saliency in [0, 1] (mean annotator score / 4), or None.
        events: event priors ``(start, end, text)`` of the video, or None.
        vid: video id.
        labelled: whether the query has ground truth (a raw video's prediction has none: no GT row
            and no top-1 IoU are drawn).
    """

    qid: int | str
    query: str
    duration: float
    clip_len: float
    gt_windows: Sequence[tuple[float, float]] = ()
    pred_windows: Sequence[tuple[float, float, float]] = ()
    saliency: Sequence[float] | None = None
    gt_saliency: Sequence[float] | None = None
    events: Sequence[Event] | None = None
    vid: str | None = None
    labelled: bool = True

    def __post_init__(self) -> None:
        if self.duration <= 0 or self.clip_len <= 0:
            raise ValueError(f"qid {self.qid!r}: duration and clip_len must be > 0")


def _gt_saliency(g: GroundTruth, clip_len: float) -> list[float] | None:
    if g.relevant_clip_ids is None or g.saliency_scores is None:
        return None
    n = grid_clips(g.duration, clip_len)
    out = np.zeros(n)
    for cid, scores in zip(g.relevant_clip_ids, g.saliency_scores, strict=True):
        if 0 <= cid < n:
            out[cid] = float(np.mean(scores)) / 4.0
    return out.tolist()


def timelines_from_predictions(
    preds: Sequence[Prediction],
    gts: Sequence[GroundTruth],
    *,
    clip_len: float = 2.0,
    events: Mapping[str, Sequence[Event]] | None = None,
) -> list[TimelineData]:
    """Pair predictions with their GT by qid (predictions without GT are skipped, and counted)."""
    gt_by = {g.qid: g for g in gts}
    out, missing = [], 0
    for p in preds:
        g = gt_by.get(p.qid)
        if g is None:
            missing += 1
            continue
        vid = p.vid or g.vid
        out.append(
            TimelineData(
                qid=p.qid,
                query=p.query or g.query or "",
                duration=g.duration,
                clip_len=clip_len,
                gt_windows=g.windows,
                pred_windows=p.windows,
                saliency=p.saliency,
                gt_saliency=_gt_saliency(g, clip_len),
                events=events.get(vid) if events is not None and vid is not None else None,
                vid=vid,
            )
        )
    if missing:
        log.warning("%d predictions have no ground truth and get no timeline", missing)
    return out


def top1_iou_of(data: TimelineData) -> float:
    """IoU of the top-1 predicted window with its best GT window (0 without either)."""
    if not data.pred_windows or not data.gt_windows:
        return 0.0
    gts = np.asarray(data.gt_windows, np.float64).reshape(-1, 2)
    top = np.repeat(np.asarray([data.pred_windows[0][:2]], np.float64), len(gts), axis=0)
    return float(iou_paired(top, gts).max())


def render_timeline(
    data: TimelineData, path: str | os.PathLike[str], *, top_k: int = 5, dpi: int = 100
) -> Path:
    """Draw ``data`` into a PNG at ``path`` (parent folders created); returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    preds = list(data.pred_windows)[:top_k]
    events = list(data.events or [])
    gt = ["GT"] if data.labelled else []
    rows = gt + [f"pred {i + 1}" for i in range(len(preds))] + (["events"] if events else [])
    fig, (ax_sal, ax_win) = plt.subplots(
        2, 1, figsize=(10, 1.6 + 0.32 * len(rows) + 1.4), sharex=True,
        gridspec_kw={"height_ratios": [1.4, 0.32 * len(rows) + 0.2]},
    )  # fmt: skip
    try:
        _draw_saliency(ax_sal, data)
        _draw_windows(ax_win, data, preds, events, rows)
        ax_win.set_xlim(0, data.duration)
        ax_win.set_xlabel("time (s)")
        title = (
            f"qid {data.qid}"
            + (f" | {data.vid}" if data.vid else "")
            + (f" | top-1 IoU {top1_iou_of(data):.2f}" if data.labelled else "")
        )
        fig.suptitle(title + "\n" + textwrap.shorten(data.query, 110), fontsize=10)
        fig.tight_layout()
        fig.savefig(path, dpi=dpi)
    finally:
        plt.close(fig)
    return path


def _draw_saliency(axes: Axes, data: TimelineData) -> None:
    has_any = False
    if data.saliency is not None and len(data.saliency):
        sal = np.asarray(data.saliency, dtype=float)
        lo, hi = float(sal.min()), float(sal.max())
        scaled = (sal - lo) / (hi - lo) if hi > lo else np.zeros_like(sal)
        centers = (np.arange(len(sal)) + 0.5) * data.clip_len
        axes.plot(centers, scaled, color=SAL_COLOR, lw=1.5, label="predicted saliency (scaled)")
        has_any = True
    if data.gt_saliency is not None:
        gts = np.asarray(data.gt_saliency, dtype=float)
        centers = (np.arange(len(gts)) + 0.5) * data.clip_len
        axes.step(centers, gts, where="mid", color=GT_COLOR, lw=1, ls="--", label="GT saliency (mean / 4)")
        has_any = True
    axes.set_ylim(-0.05, 1.1)
    axes.set_ylabel("saliency", fontsize=8)
    if has_any:
        axes.legend(loc="upper right", fontsize=7, frameon=False)
    else:
        axes.text(0.5, 0.5, "no saliency", ha="center", va="center", transform=axes.transAxes, fontsize=8)


def _draw_windows(
    axes: Axes,
    data: TimelineData,
    preds: list[tuple[float, float, float]],
    events: list[Event],
    rows: list[str],
) -> None:
    n = len(rows)

    def y(i: int) -> float:
        return n - 1 - i  # first row on top

    first = 1 if data.labelled else 0  # the row of the first prediction
    for s, e in data.gt_windows if data.labelled else ():
        axes.broken_barh([(s, e - s)], (y(0) - 0.35, 0.7), color=GT_COLOR)
    top = max((c for _, _, c in preds), default=1.0) or 1.0
    for i, (s, e, c) in enumerate(preds, start=first):
        alpha = 0.35 + 0.65 * max(0.0, min(1.0, c / top))
        axes.broken_barh([(s, max(e - s, 1e-3))], (y(i) - 0.35, 0.7), color=PRED_COLOR, alpha=alpha)
        axes.text(min(e, data.duration), y(i), f" {c:.2f}", va="center", fontsize=7)
    if events:
        row = y(n - 1)
        for k, (s, e, text) in enumerate(events):
            shade = EVENT_COLOR if k % 2 == 0 else "#ffb74d"
            axes.broken_barh(
                [(s, max(e - s, 1e-3))], (row - 0.35, 0.7), color=shade, alpha=0.7, edgecolor="white"
            )
            chars = int(150 * (e - s) / data.duration)  # about what fits over the bar at this font size
            if chars >= 6:
                label = text if len(text) <= chars else text[: chars - 1] + "…"
                axes.text(s, row + (0.42 if k % 2 == 0 else -0.62), label, fontsize=6)
    axes.set_yticks([y(i) for i in range(n)])
    axes.set_yticklabels(rows, fontsize=8)
    axes.set_ylim(-0.8, n - 0.2)
    axes.grid(axis="x", alpha=0.3)
