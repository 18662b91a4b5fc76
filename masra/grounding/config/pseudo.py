"""Prior events as training queries: the typed, validated rules of ``TrainConfig.pseudo_queries``.

Each event of a training video's priors (``{start, end, text}`` in the prior shards) can become a
*pseudo-query*: its text, encoded with the card's query text encoder, is the query; its span the
target window; saliency is 1 inside it. :class:`PseudoQueryConfig` says how many of them a step sees
(``weight``) and which events are dropped, by rules that are plain values
(:mod:`masra.grounding.data.pseudo` applies them; docs/training.md, "Training without labels").

Example (a config file or ``--set pseudo_queries.weight=1``)::

    label_fraction: 0          # no labelled query: pseudo-queries alone
    pseudo_queries: {weight: 1.0, min_len: 2.0, max_per_video: 8}
"""

from __future__ import annotations

from dataclasses import dataclass, field

from masra.grounding.config.checks import JsonConfig, check_field_types

__all__ = ["PseudoQueryConfig"]


@dataclass
class PseudoQueryConfig(JsonConfig):
    """Which prior events become training queries, and how many a step sees.

    Attributes:
        weight: pseudo-queries per step as a share of ``batch_size`` (0: off). A step holds
            ``max(1, round(weight * batch_size))`` pseudo-queries (per process: of its share of the
            batch) on top of its ``batch_size`` labelled queries, so with labels they are
            ``weight / (1 + weight)`` of the step's queries, and of its query losses, which average
            over queries; the labelled stream (order, steps per epoch) is that of the same run
            without them. With no labelled query (``label_fraction: 0``, or a card without a
            train annotation file) an epoch is one pass over the pseudo-queries in batches of that
            size.
        min_len: events shorter than this many seconds are dropped (``too_short``).
        max_len_share: events longer than this share of their video are dropped (``too_long``): a
            span covering (nearly) the whole video teaches no position.
        dedup_iou: an event overlapping a kept event of the same video with temporal IoU above this
            is dropped (``duplicate_span``). Events of one video with the same text (compared
            normalised: lower case, single spaces, no final punctuation) become one pseudo-query
            with each span as a window (``same_text``: counted as dropped, its span kept).
        generic_share: a text found in more than this share of the training videos with priors,
            and in at least ``generic_min_videos`` of them, is generic ("a person is talking", a
            background line): its events are dropped (``generic``). null: no share rule.
        generic_min_videos: the fewest videos a text must be in to count as generic by share (a
            small collection does not make a shared description generic).
        generic_texts: texts that are always generic (background lines), compared normalised.
        max_per_video: at most this many pseudo-queries per video, the first in time order; the
            rest are dropped (``over_max_per_video``). null: no cap.
    """

    weight: float = 0.0
    min_len: float = 1.0
    max_len_share: float = 0.9
    dedup_iou: float = 0.8
    generic_share: float | None = 0.5
    generic_min_videos: int = 5
    generic_texts: list[str] = field(default_factory=list)
    max_per_video: int | None = None

    def __post_init__(self) -> None:
        check_field_types(self)
        owner = "pseudo_queries"
        if not self.weight >= 0:
            raise ValueError(f"{owner}.weight must be >= 0 (0: off), got {self.weight!r}")
        if not self.min_len >= 0:
            raise ValueError(f"{owner}.min_len must be >= 0 seconds, got {self.min_len!r}")
        if not 0.0 < self.max_len_share <= 1.0:
            raise ValueError(f"{owner}.max_len_share must be in (0, 1], got {self.max_len_share!r}")
        if not 0.0 < self.dedup_iou <= 1.0:
            raise ValueError(f"{owner}.dedup_iou must be in (0, 1], got {self.dedup_iou!r}")
        if self.generic_share is not None and not 0.0 < self.generic_share <= 1.0:
            raise ValueError(f"{owner}.generic_share must be in (0, 1] or null, got {self.generic_share!r}")
        if self.generic_min_videos < 1:
            raise ValueError(f"{owner}.generic_min_videos must be >= 1, got {self.generic_min_videos!r}")
        bad = [t for t in self.generic_texts if not isinstance(t, str) or not t.strip()]
        if bad:
            raise ValueError(f"{owner}.generic_texts must be non-empty strings, got {bad[:3]!r}")
        if self.max_per_video is not None and self.max_per_video < 1:
            raise ValueError(f"{owner}.max_per_video must be >= 1 or null, got {self.max_per_video!r}")

    @property
    def enabled(self) -> bool:
        """Whether pseudo-queries train (``weight > 0``)."""
        return self.weight > 0
