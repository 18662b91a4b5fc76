"""THE entry point of inference: a checkpoint and its inputs in, predictions and metrics out.

:func:`run_checkpoint` is what every consumer calls: ``masra eval --checkpoint`` (a split),
``masra predict`` and the web demo (one video, text queries) and ``masra viz report`` (a split,
from a run's best checkpoint). The card's path through it, each step a call that returns::

    run_checkpoint
      read_checkpoint          config.json read once: typed configs, the card with its overrides
      Grounder.from_checkpoint the weights, the GrounderConfig of the checkpoint's card
      a split:  find_feature_store -> load_queries (once) -> predict_queries (Grounder.predict_many)
                -> load_ground_truth (from those queries where the format allows) -> score_predictions
                (card_scoring: the card's scoring style and clip length)
      a video:  its features (a file through the card's extractors, an npz, or a video id of the
                card) -> Grounder.predict
    -> Outcome (predictions, groundings, metrics); Outcome.write puts them in files

Example::

    out = run_checkpoint("runs/fixture/best", SplitInput("val"))
    out.metrics["brief"]["MR-full-R1@0.5"]
    [g] = run_checkpoint("runs/fixture", VideoInput(("a red circle moves left",), video=Path("x.mp4"))).groundings
    g.windows[0]   # [start_s, end_s, score]
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from masra.datasets.card import DatasetCard
from masra.datasets.features import load_text_features, load_video_features
from masra.datasets.readers import load_queries
from masra.datasets.store import FeatureStore
from masra.datasets.store_build import find_feature_store
from masra.datasets.types import Query, QueryId
from masra.grounding.checkpoint import Checkpoint, read_checkpoint
from masra.grounding.infer.evaluate import load_ground_truth, score_predictions
from masra.grounding.infer.grounder import Grounder
from masra.grounding.infer.inputs import load_feature_npz
from masra.grounding.infer.result import Grounding
from masra.grounding.metrics import GroundTruth
from masra.grounding.submission import Prediction, read_submission, write_submission

log = logging.getLogger(__name__)

__all__ = [
    "EvalOutput",
    "Outcome",
    "SplitInput",
    "VideoInput",
    "evaluate_checkpoint",
    "predict_queries",
    "run_checkpoint",
    "usable_store",
]


@dataclass(frozen=True)
class SplitInput:
    """A split of the card: every query is predicted, then scored when the split has labels.

    Attributes:
        split: the card's split name.
        annotations: another annotation file for the split (features then come from the feature
            files, not the store).
        predictions: a submission file of this checkpoint's predictions for the split (e.g. the
            trainer's ``best/predictions_<split>.jsonl``): scored on the qids it shares with the
            ground truth; the model is not run.
    """

    split: str
    annotations: Path | None = None
    predictions: Path | None = None


@dataclass(frozen=True)
class VideoInput:
    """One video and its text queries; exactly one of ``video``, ``features`` and ``vid``.

    Attributes:
        queries: the query sentences (encoded with the checkpoint's text encoder).
        video: a video file of any length; its features come from the card's extractors.
        features: an npz file (:func:`~masra.grounding.infer.inputs.load_feature_npz`) or an
            (L, Dv) array laid out as the feature store lays out a video.
        vid: a video id of the card: its feature files are read.
        duration: seconds (default: the container's for a video file, else ``L * clip_len``).
        name: the video's name in the predictions (default: the file name or ``vid``).
    """

    queries: tuple[str, ...]
    video: Path | None = None
    features: Path | np.ndarray | None = None
    vid: str | None = None
    duration: float | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if sum(x is not None for x in (self.video, self.features, self.vid)) != 1:
            raise ValueError("give exactly one of a video file, features (npz or array) and a video id")
        if not self.queries or any(not q.strip() for q in self.queries):
            raise ValueError("give at least one query, none empty")


@dataclass
class Outcome:
    """What :func:`run_checkpoint` gives.

    Attributes:
        card: the dataset card the inputs were read and scored with.
        predictions: one submission row per query, in input order (for a video: qids 0, 1, ...).
        groundings: per query of a video, the :class:`Grounding` (all clip saliency, model passes,
            ``extra`` with ``duration`` and ``num_clips``); empty for a split.
        metrics: the metrics of a labelled split (:func:`~masra.grounding.metrics.evaluate_submission`
            layout), else None.
        ground_truth: the labelled ground truth they were scored against (empty without metrics).
        source: where the inputs came from, in words (e.g. ``the feature files``).
        split: the split's name (None for a video).
    """

    card: DatasetCard
    predictions: list[Prediction]
    groundings: list[Grounding] = field(default_factory=list)
    metrics: dict[str, Any] | None = None
    ground_truth: list[GroundTruth] = field(default_factory=list)
    source: str = ""
    split: str | None = None

    def write(self, out_dir: str | os.PathLike[str]) -> tuple[Path, Path | None]:
        """``predictions_<split>.jsonl`` (``predictions.jsonl`` for a video) and, with metrics,
        ``metrics_<split>.json`` in ``out_dir``; returns their paths."""
        out = Path(out_dir)
        suffix = f"_{self.split}" if self.split is not None else ""
        pred_path = write_submission(out / f"predictions{suffix}.jsonl", self.predictions)
        if self.metrics is None:
            return pred_path, None
        metrics_path = out / f"metrics{suffix}.json"
        metrics_path.write_text(json.dumps(self.metrics, indent=2) + "\n", encoding="utf-8")
        return pred_path, metrics_path


def run_checkpoint(
    checkpoint: str | os.PathLike[str] | Checkpoint | Grounder,
    inputs: SplitInput | VideoInput,
    *,
    dataset: str | os.PathLike[str] | None = None,
    card_overrides: Mapping[str, Any] | None = None,
    device: str | torch.device = "cpu",
    text_encoder: Any = None,
    top_k: int | None = None,
) -> Outcome:
    """Predict ``inputs`` with a checkpoint; score them when they are a labelled split.

    Args:
        checkpoint: a checkpoint folder, a run's ``best`` / ``last`` or a run folder (read with
            :func:`~masra.grounding.checkpoint.read_checkpoint`); a checkpoint already read; or a
            :class:`Grounder` already loaded from one (the web demo keeps one).
        inputs: a :class:`SplitInput` or a :class:`VideoInput`.
        dataset: read and score the inputs with this card instead of the checkpoint's (its
            training card overrides still apply); only when ``checkpoint`` is a path.
        card_overrides: dataset-card overrides on top of the training run's; only with a path.
        device: torch device of the model (and of a video's extractors).
        text_encoder: a ``TextEncoder`` or a model name for text queries (default: the card's).
        top_k: windows per query (default: the checkpoint's ``postprocess.top_k``).
    Raises:
        FileNotFoundError, KeyError, ValueError, AnnotationError: a missing or bad checkpoint, card,
        annotation or feature file, named in the message.
    """
    if not isinstance(checkpoint, str | os.PathLike) and (dataset is not None or card_overrides):
        raise ValueError("dataset and card_overrides apply when the checkpoint is read from a path")
    grounder: Grounder | None = None
    ckpt: Checkpoint | None = None
    if isinstance(checkpoint, Grounder):
        grounder = checkpoint
        if grounder.card is None:
            raise ValueError("this Grounder has no dataset card; load it from a checkpoint")
        card = grounder.card
    else:
        if isinstance(checkpoint, Checkpoint):
            ckpt = checkpoint
        else:
            ckpt = read_checkpoint(checkpoint, dataset=dataset, card_overrides=card_overrides)
        card = ckpt.card
    if isinstance(inputs, SplitInput) and inputs.predictions is not None:
        return _score_file(card, inputs)  # the model is not needed
    if grounder is None:
        assert ckpt is not None
        grounder = Grounder.from_checkpoint(ckpt, device=device, text_encoder=text_encoder)
    if isinstance(inputs, SplitInput):
        store = find_feature_store(card, [inputs.split]) if inputs.annotations is None else None
        return _run_split(grounder, card, inputs, store, top_k=top_k)
    return _run_video(grounder, card, inputs, top_k=top_k)


def _score_file(card: DatasetCard, inputs: SplitInput) -> Outcome:
    """A split's given predictions, scored on the qids they share with its ground truth."""
    assert inputs.predictions is not None
    preds = read_submission(inputs.predictions)
    gts = [g for g in load_ground_truth(card, inputs.split, inputs.annotations) if g.windows]
    if not gts or not preds:
        return Outcome(card, preds, source=f"the predictions file {inputs.predictions}", split=inputs.split)
    metrics = score_predictions(preds, gts, card, intersection=True)
    return Outcome(
        card,
        preds,
        metrics=metrics,
        ground_truth=gts,
        source=f"the predictions file {inputs.predictions}",
        split=inputs.split,
    )


def _run_split(
    grounder: Grounder,
    card: DatasetCard,
    inputs: SplitInput,
    store: FeatureStore | None,
    *,
    top_k: int | None = None,
) -> Outcome:
    """Predict every query of a split (its queries read once), then score the labelled ones."""
    split = inputs.split
    queries, _ = load_queries(card, split, inputs.annotations)
    store = usable_store(store, queries)
    preds = predict_queries(grounder, card, queries, store=store, top_k=top_k)
    source = (
        "the feature files" if store is None else f"the feature store {store.path} (as training read them)"
    )
    labelled = sum(q.labelled for q in queries)
    if labelled == 0:
        log.info("split %r of %s has no labels: predictions only", split, card.name)
        return Outcome(card, preds, source=source, split=split)
    if labelled < len(queries):
        log.warning(
            "split %r of %s: %d of %d queries have labels; scoring those only",
            split, card.name, labelled, len(queries),
        )  # fmt: skip
    gts = [g for g in load_ground_truth(card, split, inputs.annotations, queries=queries) if g.windows]
    metrics = score_predictions(preds, gts, card, intersection=labelled < len(queries))
    log.info("%s", json.dumps({"split": split, "dataset": card.name, **metrics["brief"]}))
    return Outcome(card, preds, metrics=metrics, ground_truth=gts, source=source, split=split)


def _run_video(
    grounder: Grounder, card: DatasetCard, inputs: VideoInput, *, top_k: int | None = None
) -> Outcome:
    """Ground the queries of one video."""
    texts = list(inputs.queries)
    if inputs.video is not None:
        results = grounder.predict_video(
            inputs.video, query_text=texts, duration=inputs.duration, top_k=top_k
        )
        name, source = inputs.name or Path(inputs.video).name, f"the video file {inputs.video}"
    else:
        if inputs.vid is not None:
            feats = load_video_features(card, inputs.vid)
            name, source = inputs.name or inputs.vid, f"the feature files of {inputs.vid}"
        elif isinstance(inputs.features, np.ndarray):
            feats, name, source = inputs.features, inputs.name or "video", "the features given"
        else:
            assert inputs.features is not None
            feats = load_feature_npz(inputs.features, card)
            name, source = inputs.name or Path(inputs.features).stem, f"the npz file {inputs.features}"
        results = grounder.predict(feats, query_text=texts, duration=inputs.duration, top_k=top_k)
        duration = inputs.duration if inputs.duration is not None else feats.shape[0] * card.clip_len
        for res in results:
            res.extra.update(duration=float(duration), num_clips=int(feats.shape[0]))
    preds = [
        res.to_prediction(i, name, float(res.extra["duration"]), card.clip_len)
        for i, res in enumerate(results)
    ]
    return Outcome(card, preds, groundings=results, source=source)


def usable_store(store: FeatureStore | None, queries: list[Query]) -> FeatureStore | None:
    """``store`` when it holds every video and query of ``queries``, else None (said in the log)."""
    if store is not None and not store.holds({q.vid for q in queries}, [q.qid for q in queries]):
        log.info("feature store %s lacks some of these queries; reading the feature files", store.path)
        return None
    return store


def predict_queries(
    grounder: Grounder,
    card: DatasetCard,
    queries: list[Query],
    videos_per_call: int = 64,
    *,
    store: FeatureStore | None = None,
    top_k: int | None = None,
) -> list[Prediction]:
    """Predictions for ``queries``, in their order.

    Features come from ``store`` when it holds every video and query (:func:`usable_store`: the
    bytes training read, so the trainer's own evaluation is reproduced exactly), else from the
    card's feature files. Videos are read ``videos_per_call`` at a time and their (window, query)
    pairs batched together.
    """
    store = usable_store(store, queries)

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
            results = grounder.predict_many(videos, feats, durations=durations, top_k=top_k)
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

    The split path of :func:`run_checkpoint` with the card and feature store chosen by the caller
    (``store``: read features from it, see :func:`predict_queries`; None: the feature files).
    """
    inputs = SplitInput(split, Path(annotations) if annotations is not None else None)
    outcome = _run_split(grounder, card, inputs, store)
    pred_path, metrics_path = outcome.write(out_dir)
    return EvalOutput(pred_path, metrics_path, outcome.metrics, len(outcome.predictions))
