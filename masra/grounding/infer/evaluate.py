"""Evaluate a checkpoint on a dataset split: predictions in the submission format, then the metrics.

:func:`evaluate_checkpoint` reads the split's queries and features through the dataset card, runs
the :class:`~masra.grounding.infer.grounder.Grounder` video by video (all queries of a video in one
batch; long videos by windows), writes ``predictions_{split}.jsonl`` and, when the split has
labels, scores it with the standard protocol into ``metrics_{split}.json``. A split without labels
(the QVHighlights test release) gets predictions only.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from masra.datasets.card import DatasetCard
from masra.datasets.features import load_text_features, load_video_features
from masra.datasets.readers import load_queries
from masra.datasets.store import FeatureStore
from masra.datasets.types import Query, QueryId
from masra.grounding.metrics import GroundTruth, evaluate_submission, read_ground_truth
from masra.grounding.submission import Prediction, write_submission

if TYPE_CHECKING:  # torch: kept out of `masra eval --predictions`, which only needs load_ground_truth
    from masra.grounding.infer.grounder import Grounder

log = logging.getLogger(__name__)

__all__ = ["EvalOutput", "evaluate_checkpoint", "load_ground_truth", "predict_queries"]

# Card formats whose annotation files are QVHighlights-style jsonl, scored raw as the standard tool does.
JSONL_FORMATS = ("qvhighlights", "charades_jsonl", "tacos")


def load_ground_truth(
    card: DatasetCard, split: str, path: str | os.PathLike[str] | None = None
) -> list[GroundTruth]:
    """GT of a split for the metrics: jsonl files read raw; the Charades-STA txt through its reader."""
    if card.format in JSONL_FORMATS:
        ann = Path(path) if path is not None else card.annotation_path(split)
        if not ann.is_file():
            raise FileNotFoundError(
                f"annotation file of dataset {card.name!r} split {split!r} not found: {ann}"
            )
        return read_ground_truth(ann)
    queries, _ = load_queries(card, split, Path(path) if path is not None else None)
    return [GroundTruth.from_query(q) for q in queries]


def predict_queries(
    grounder: Grounder,
    card: DatasetCard,
    queries: list[Query],
    videos_per_call: int = 64,
    *,
    store: FeatureStore | None = None,
) -> list[Prediction]:
    """Predictions for ``queries``, in their order.

    Features come from ``store`` when it holds every video and query (the bytes training read, so
    the trainer's own evaluation is reproduced exactly), else from the card's feature files.
    Videos are read ``videos_per_call`` at a time and their (window, query) pairs batched together.
    """
    if store is not None and not store.holds({q.vid for q in queries}, [q.qid for q in queries]):
        log.info("feature store %s lacks some of these queries; reading the feature files", store.path)
        store = None

    def video(vid: str) -> np.ndarray:  # no cut: long videos by windows
        return (
            np.asarray(store.video(vid), np.float32) if store is not None else load_video_features(card, vid)
        )

    def text(qid: QueryId) -> np.ndarray:
        return (
            np.asarray(store.text(qid), np.float32) if store is not None else load_text_features(card, qid)[0]
        )

    by_vid: dict[str, list[int]] = {}
    for i, q in enumerate(queries):
        by_vid.setdefault(q.vid, []).append(i)
    groups = list(by_vid.items())
    out: list[Prediction | None] = [None] * len(queries)
    with tqdm(total=len(groups), desc="videos", unit="video") as progress:
        for g in range(0, len(groups), videos_per_call):
            chunk = groups[g : g + videos_per_call]
            videos = [video(vid) for vid, _ in chunk]
            feats = [[text(queries[i].qid) for i in rows] for _, rows in chunk]
            durations = [queries[rows[0]].duration for _, rows in chunk]
            results = grounder.predict_many(videos, feats, durations=durations)
            for (_, rows), per_video in zip(chunk, results, strict=True):
                for i, res in zip(rows, per_video, strict=True):
                    q = queries[i]
                    res.query = q.query
                    out[i] = res.to_prediction(q.qid, q.vid, q.duration, card.clip_len)
            progress.update(len(chunk))
    return [p for p in out if p is not None]


@dataclass
class EvalOutput:
    """What :func:`evaluate_checkpoint` wrote: the predictions file and, for labelled splits, the metrics."""

    predictions_path: Path
    metrics_path: Path | None
    metrics: dict[str, Any] | None
    num_queries: int


def evaluate_checkpoint(
    grounder: Grounder,
    card: DatasetCard,
    split: str,
    out_dir: str | os.PathLike[str],
    *,
    annotations: str | os.PathLike[str] | None = None,
    store: FeatureStore | None = None,
) -> EvalOutput:
    """Predict ``split`` of ``card`` with ``grounder``; write predictions (and metrics when labelled).

    ``store``: read features from this feature store (see :func:`predict_queries`).
    """
    out = Path(out_dir)
    queries, _ = load_queries(card, split, Path(annotations) if annotations is not None else None)
    preds = predict_queries(grounder, card, queries, store=store)
    pred_path = write_submission(out / f"predictions_{split}.jsonl", preds)
    labelled = sum(q.labelled for q in queries)
    if labelled == 0:
        log.info("split %r of %s has no labels: predictions only (%s)", split, card.name, pred_path)
        return EvalOutput(pred_path, None, None, len(queries))
    if labelled < len(queries):
        log.warning(
            "split %r of %s: %d of %d queries have labels; scoring those only",
            split, card.name, labelled, len(queries),
        )  # fmt: skip
    gts = [g for g in load_ground_truth(card, split, annotations) if g.windows]
    metrics = evaluate_submission(
        preds,
        gts,
        intersection=labelled < len(queries),
        charades_style=card.format != "qvhighlights",
        clip_len=card.clip_len,
    )
    metrics_path = out / f"metrics_{split}.json"
    metrics_path.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    log.info("%s", json.dumps({"split": split, "dataset": card.name, **metrics["brief"]}))
    return EvalOutput(pred_path, metrics_path, metrics, len(queries))
