"""Position-only baselines: predict the same window for every query, ignoring video and text.

They tell how much of a score the temporal prior of a dataset gives for free. Three candidates are
built from the training queries and each is scored on the evaluation split:

* ``common_seconds``: the most common train window in seconds (ends rounded to the clip grid);
* ``common_relative``: the most common train window relative to the video duration (5 % grid);
* ``best_relative``: the fixed relative window (5 % grid) with the highest R1@0.5 on train.

The best of them on the evaluation split is the bar a trained model is compared against.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from masra.datasets.grid import num_clips as grid_clips
from masra.datasets.types import Query

log = logging.getLogger(__name__)

__all__ = ["fixed_window_rows", "position_baselines"]

GRID = 20  # relative windows on a 5 % grid


def fixed_window_rows(
    queries: Sequence[Query], window: tuple[float, float], *, relative: bool, clip_len: float
) -> list[dict[str, Any]]:
    """Prediction rows that give every query one window (relative to the duration, or in seconds)."""
    rows = []
    for q in queries:
        s, e = (window[0] * q.duration, window[1] * q.duration) if relative else window
        s, e = min(max(0.0, s), q.duration), min(max(0.0, e), q.duration)
        n_clips = grid_clips(q.duration, clip_len)
        rows.append(
            {
                "qid": q.qid,
                "query": q.query,
                "vid": q.vid,
                "pred_relevant_windows": [[round(s, 4), round(max(e, s), 4), 1.0]],
                "pred_saliency_scores": [0.0] * n_clips,
            }
        )
    return rows


def _relative_windows(queries: Sequence[Query]) -> np.ndarray:
    """(M, 2) every train window divided by its video's duration."""
    out = [(s / q.duration, e / q.duration) for q in queries for s, e in q.windows if q.duration > 0]
    return np.asarray(out, dtype=np.float64).reshape(-1, 2)


def _best_relative_on_train(queries: Sequence[Query]) -> tuple[float, float]:
    """The grid window with the most train queries hit at IoU >= 0.5 (any GT window counts)."""
    cand = np.array([(a / GRID, b / GRID) for a in range(GRID) for b in range(a + 1, GRID + 1)])  # (C, 2)
    hits = np.zeros(len(cand))
    for q in queries:
        if not q.windows or q.duration <= 0:
            continue
        gt = np.asarray(q.windows, dtype=np.float64) / q.duration  # (N, 2)
        inter = np.clip(
            np.minimum(cand[:, None, 1], gt[None, :, 1]) - np.maximum(cand[:, None, 0], gt[None, :, 0]),
            0,
            None,
        )
        union = (cand[:, 1] - cand[:, 0])[:, None] + (gt[:, 1] - gt[:, 0])[None, :] - inter
        hits += ((inter / np.maximum(union, 1e-9)).max(axis=1) >= 0.5).astype(np.float64)
    best = int(np.argmax(hits))
    return float(cand[best, 0]), float(cand[best, 1])


def position_baselines(
    train: Sequence[Query],
    evaluate: Sequence[Query],
    scorer: Callable[[list[dict[str, Any]]], dict[str, Any]],
    *,
    clip_len: float,
) -> dict[str, Any]:
    """Score the three position-only candidates on ``evaluate``.

    Returns ``{"candidates": {name: {"window", "relative", <brief metrics>}}, "best": name,
    "best_brief": {...}}`` with the best candidate by ``MR-full-R1@0.5``.
    """
    labelled = [q for q in train if q.windows]
    if not labelled:
        raise ValueError("position baselines need labelled training queries")
    secs = Counter(
        (round(s / clip_len) * clip_len, round(e / clip_len) * clip_len)
        for q in labelled
        for s, e in q.windows
    )
    rel = _relative_windows(labelled)
    rel_counts = Counter((round(s * GRID) / GRID, round(e * GRID) / GRID) for s, e in rel)
    candidates: dict[str, tuple[tuple[float, float], bool]] = {
        "common_seconds": (secs.most_common(1)[0][0], False),
        "common_relative": (rel_counts.most_common(1)[0][0], True),
        "best_relative": (_best_relative_on_train(labelled), True),
    }
    results: dict[str, dict[str, Any]] = {}
    for name, (window, relative) in candidates.items():
        rows = fixed_window_rows(evaluate, window, relative=relative, clip_len=clip_len)
        brief = scorer(rows)["brief"]
        results[name] = {"window": list(window), "relative": relative, **brief}
    best = max(results, key=lambda k: float(results[k].get("MR-full-R1@0.5", 0.0)))
    log.info(
        "position-only baselines (val R1@0.5): %s; best %s",
        ", ".join(f"{k} {v.get('MR-full-R1@0.5', float('nan')):.2f}" for k, v in results.items()),
        best,
    )
    return {"candidates": results, "best": best, "best_brief": results[best]}
