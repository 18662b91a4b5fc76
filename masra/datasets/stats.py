"""Summary statistics of one annotation split, as printed by ``masra data stats``.

Counting convention: ``queries`` is the number of query records in the file (one per jsonl line or
txt row), ``queries_kept`` the number the reader returned after the standard drops listed under
``dropped``. ``videos``, ``windows`` and every distribution below are computed over the kept queries.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from masra.datasets.card import DatasetCard
from masra.datasets.grid import num_clips as grid_clips
from masra.datasets.types import Query, ReadReport


def describe(values: list[float] | np.ndarray) -> dict[str, float | None]:
    """min / mean / median / max of ``values`` (None for all four when empty), rounded to 4 places."""
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return {"min": None, "mean": None, "median": None, "max": None}
    return {
        k: round(float(f(a)), 4)
        for k, f in (("min", np.min), ("mean", np.mean), ("median", np.median), ("max", np.max))
    }


def _note(report: ReadReport, kept: int) -> str:
    parts = [f"read {report.lines} queries from {report.path}"]
    if report.dropped:
        drops = ", ".join(f"{reason}: {n}" for reason, n in report.dropped.items())
        parts.append(f"dropped {report.lines - kept} ({drops}); all statistics use the {kept} kept")
    else:
        parts.append("none dropped")
    if report.clipped:
        parts.append("clipped " + ", ".join(f"{reason}: {n}" for reason, n in report.clipped.items()))
    return "; ".join(parts)


def split_stats(queries: list[Query], report: ReadReport, card: DatasetCard | None = None) -> dict[str, Any]:
    """A JSON-ready dict of counts and distributions for one split (see module doc for the keys)."""
    durations: dict[str, float] = {}
    conflicts = 0
    for q in queries:
        prev = durations.setdefault(q.vid, q.duration)
        if not math.isclose(prev, q.duration, rel_tol=1e-6, abs_tol=1e-6):
            conflicts += 1
    labelled = [q for q in queries if q.labelled]
    lengths = [e - s for q in labelled for s, e in q.windows]
    coverage = [(e - s) / q.duration for q in labelled for s, e in q.windows]
    out: dict[str, Any] = {
        "annotations": report.path,
        "queries": report.lines,
        "queries_kept": len(queries),
        "labelled_queries": len(labelled),
        "videos": len(durations),
        "windows": sum(len(q.windows) for q in queries),
        "dropped": dict(report.dropped),
        "clipped": dict(report.clipped),
        "note": _note(report, len(queries)),
        "duration_s": describe(list(durations.values())),
        "window_length_s": describe(lengths),
        "window_fraction_of_video": describe(coverage),
        "windows_per_query": describe([len(q.windows) for q in labelled]),
        "queries_per_video": describe(np.unique([q.vid for q in queries], return_counts=True)[1]),
    }
    if conflicts:
        out["duration_conflicts"] = conflicts
    with_sal = [q for q in queries if q.relevant_clip_ids is not None]
    if with_sal:
        out["saliency"] = {
            "queries": len(with_sal),
            "relevant_clips_per_query": describe([len(q.relevant_clip_ids or ()) for q in with_sal]),
        }
    if card is not None:
        clips = np.array([grid_clips(d, card.clip_len) for d in durations.values()], dtype=np.int64)
        out["dataset"] = card.name
        out["format"] = card.format
        out["clip_len"] = card.clip_len
        out["clips_per_video"] = describe(clips)
        out["max_clips"] = card.max_clips
        out["videos_over_max_clips"] = int((clips > card.max_clips).sum())
    return out
