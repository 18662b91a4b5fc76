"""The metrics of a dataset card's predictions: its ground truth, and how it is scored, decided once.

- :func:`card_scoring`: THE rule for scoring a card's predictions: the Charades-STA / TACoS brief
  (``MR-full-R1@0.3`` and ``MR-full-mIoU`` added) for every annotation format but QVHighlights', and
  the card's clip length for saliency. The trainer's evaluation, every inference entry
  (:func:`masra.grounding.infer.run.run_checkpoint`), ``masra eval --predictions --dataset`` and
  the run report score through it (:func:`score_predictions`).
- :func:`load_ground_truth`: a split's ground truth; jsonl files are read raw, as the standard tool
  reads them, the Charades-STA txt through its reader (from queries already read, when given).

Nothing here imports torch, so ``masra eval --predictions`` stays light.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from masra.datasets.card import DatasetCard
from masra.datasets.readers import load_queries
from masra.datasets.types import Query
from masra.grounding.metrics import GroundTruth, evaluate_submission, read_ground_truth
from masra.grounding.submission import Prediction

__all__ = ["JSONL_FORMATS", "Scoring", "card_scoring", "load_ground_truth", "score_predictions"]

# Card formats whose annotation files are QVHighlights-style jsonl, scored raw as the standard tool does.
JSONL_FORMATS = ("qvhighlights", "charades_jsonl", "tacos")


@dataclass(frozen=True)
class Scoring:
    """How a card's predictions are scored (:func:`~masra.grounding.metrics.evaluate_submission`).

    Attributes:
        charades_style: add ``MR-full-R1@0.3`` and ``MR-full-mIoU`` to the brief (Charades-STA, TACoS).
        clip_len: seconds per saliency score.
    """

    charades_style: bool
    clip_len: float


def card_scoring(card: DatasetCard) -> Scoring:
    """The scoring of ``card``: Charades-style unless its annotations are in the QVHighlights format.

    Example:
        >>> from masra.datasets.card import load_card
        >>> card_scoring(load_card("charades"))
        Scoring(charades_style=True, clip_len=1.0)
    """
    return Scoring(charades_style=card.format != "qvhighlights", clip_len=card.clip_len)


def load_ground_truth(
    card: DatasetCard,
    split: str,
    path: str | os.PathLike[str] | None = None,
    *,
    queries: Sequence[Query] | None = None,
) -> list[GroundTruth]:
    """GT of a split for the metrics: jsonl files read raw; the Charades-STA txt through its reader.

    ``path`` replaces the card's annotation file; ``queries``: the split's queries already read (the
    txt format then reads nothing again).
    """
    if card.format in JSONL_FORMATS:
        ann = Path(path) if path is not None else card.annotation_path(split)
        if not ann.is_file():
            raise FileNotFoundError(
                f"annotation file of dataset {card.name!r} split {split!r} not found: {ann}"
            )
        return read_ground_truth(ann)
    if queries is None:
        queries, _ = load_queries(card, split, Path(path) if path is not None else None)
    return [GroundTruth.from_query(q) for q in queries]


def score_predictions(
    preds: Sequence[Prediction | Mapping[str, Any]],
    gts: Sequence[GroundTruth | Query | Mapping[str, Any]],
    card: DatasetCard,
    *,
    intersection: bool = False,
) -> dict[str, Any]:
    """:func:`~masra.grounding.metrics.evaluate_submission` with the card's :func:`card_scoring`."""
    scoring = card_scoring(card)
    return evaluate_submission(
        preds,
        gts,
        intersection=intersection,
        charades_style=scoring.charades_style,
        clip_len=scoring.clip_len,
    )
