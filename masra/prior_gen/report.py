"""Prior quality report: how well a prior run covers a dataset's annotations.

Numbers (all from the run's complete shards):
    videos: annotated videos, how many have a prior row, status counts, failure reasons.
    recall@IoU 0.3 / 0.5: the fraction of ground-truth windows for which some event span of the
        same video reaches that temporal IoU. ``whole_video_recall`` is the same for one span
        covering the whole video: event spans that do not beat it carry little temporal information.
    events: mean events per video, mean / median span length in seconds and as a fraction of the
        duration.
    captions: the fraction of clips with a non-empty caption, and of videos with all of them.
    tokens: mean prompt and output tokens per video.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from masra.datasets.types import Query
from masra.prior_gen.parsing import span_iou
from masra.prior_gen.runs import reason_kind
from masra.priors.schema import PRIOR_SCHEMA
from masra.priors.shards import read_shards

IOU_THRESHOLDS = (0.3, 0.5)


def prior_report(run_dir: str | os.PathLike[str], queries: Sequence[Query]) -> dict[str, Any]:
    """Compute the report of ``run_dir`` against ``queries`` (any splits; unlabelled ones only count
    towards coverage). Returns a JSON-serialisable dict."""
    rows = {r["video_id"]: r for r in read_shards(run_dir, PRIOR_SCHEMA).to_pylist()}
    annotated = {q.vid for q in queries}
    statuses = Counter(r["status"] for r in rows.values())
    failures = Counter(reason_kind(r["error"] or "") for r in rows.values() if r["status"] == "failed")
    issues = Counter(reason_kind(r["error"] or "") for r in rows.values() if r["status"] == "partial")

    hits = {t: 0 for t in IOU_THRESHOLDS}
    whole = {t: 0 for t in IOU_THRESHOLDS}
    n_windows = 0
    for q in queries:
        row = rows.get(q.vid)
        if row is None or not q.windows:
            continue
        spans = np.asarray([(e["start"], e["end"]) for e in row["events"]], dtype=np.float64).reshape(-1, 2)
        full = np.asarray([[0.0, q.duration]])
        for w in q.windows:
            n_windows += 1
            best = span_iou(w, spans).max(initial=0.0)
            best_whole = span_iou(w, full).max()
            for t in IOU_THRESHOLDS:
                hits[t] += int(best >= t)
                whole[t] += int(best_whole >= t)

    n_events = [len(r["events"]) for r in rows.values()]
    lengths = [e["end"] - e["start"] for r in rows.values() for e in r["events"]]
    fractions = [
        (e["end"] - e["start"]) / r["duration"]
        for r in rows.values()
        for e in r["events"]
        if r["duration"] > 0
    ]
    clips = sum(int(r["num_clips"]) for r in rows.values())
    captioned = sum(sum(1 for c in (r["clip_captions"] or []) if c) for r in rows.values())
    full_caps = sum(
        1 for r in rows.values() if len([c for c in r["clip_captions"] or [] if c]) == int(r["num_clips"])
    )
    n = max(len(rows), 1)
    return {
        "run_dir": str(Path(run_dir)),
        "videos": {
            "with_priors": len(rows),
            "annotated": len(annotated),
            "annotated_with_priors": len(annotated & set(rows)),
            "status": {s: statuses.get(s, 0) for s in ("ok", "partial", "failed")},
            "failure_reasons": dict(failures.most_common()),
            "partial_reasons": dict(issues.most_common(10)),
        },
        "recall": {
            "windows": n_windows,
            **{f"iou@{t}": hits[t] / n_windows if n_windows else None for t in IOU_THRESHOLDS},
            "whole_video_recall": {
                f"iou@{t}": whole[t] / n_windows if n_windows else None for t in IOU_THRESHOLDS
            },
        },
        "events": {
            "mean_per_video": float(np.mean(n_events)) if n_events else 0.0,
            "videos_without_events": sum(1 for k in n_events if k == 0),
            "span_s_mean": float(np.mean(lengths)) if lengths else None,
            "span_s_median": float(np.median(lengths)) if lengths else None,
            "span_fraction_mean": float(np.mean(fractions)) if fractions else None,
        },
        "captions": {
            "clips": clips,
            "clip_coverage": captioned / clips if clips else 0.0,
            "videos_fully_captioned": full_caps / n if rows else 0.0,
        },
        "tokens": {
            "mean_in": sum(int(r["tokens_in"] or 0) for r in rows.values()) / n,
            "mean_out": sum(int(r["tokens_out"] or 0) for r in rows.values()) / n,
        },
        "models": sorted(
            {f"{r['model_id']} ({r['backend']}, prompt {r['prompt_version']})" for r in rows.values()}
        ),
    }


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.3f}"
    return str(x)


def format_report(rep: dict[str, Any]) -> str:
    """A plain-text table of :func:`prior_report`'s output."""
    v, r, e, c, t = rep["videos"], rep["recall"], rep["events"], rep["captions"], rep["tokens"]
    lines = [
        ("run", rep["run_dir"]),
        ("model", ", ".join(rep["models"]) or "-"),
        (
            "videos with priors",
            f"{v['with_priors']} ({v['annotated_with_priors']}/{v['annotated']} annotated)",
        ),
        (
            "status ok / partial / failed",
            " / ".join(str(v["status"][s]) for s in ("ok", "partial", "failed")),
        ),
        ("GT windows", r["windows"]),
        *[
            (
                f"recall@IoU{k}",
                f"{_fmt(r[f'iou@{k}'])} (whole video {_fmt(r['whole_video_recall'][f'iou@{k}'])})",
            )
            for k in IOU_THRESHOLDS
        ],
        ("events per video", _fmt(e["mean_per_video"])),
        ("videos without events", e["videos_without_events"]),
        ("span length s (mean / median)", f"{_fmt(e['span_s_mean'])} / {_fmt(e['span_s_median'])}"),
        ("span / duration (mean)", _fmt(e["span_fraction_mean"])),
        ("caption coverage (clips)", _fmt(c["clip_coverage"])),
        ("fully captioned videos", _fmt(c["videos_fully_captioned"])),
        ("tokens in / out per video", f"{t['mean_in']:.0f} / {t['mean_out']:.0f}"),
    ]
    lines += [(f"failed: {k}", n) for k, n in v["failure_reasons"].items()]
    lines += [(f"partial: {k}", n) for k, n in v["partial_reasons"].items()]
    width = max(len(k) for k, _ in lines)
    return "\n".join(f"{k:<{width}}  {val}" for k, val in lines)
