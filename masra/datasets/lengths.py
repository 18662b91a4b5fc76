"""Annotation duration against feature length: the checks behind the length warnings.

A video of ``duration`` seconds annotated on a ``clip_len`` grid should have ``E =
masra.datasets.grid.num_clips(duration, clip_len)`` clips of features (``ceil``). With ``L`` the
number of feature clips (the shortest feature type):

* **length mismatch**: ``L`` and ``E`` do not agree by :func:`masra.datasets.grid.counts_agree` (more
  than 2 clips apart, or more than one clip and a factor 1.5), so floor, round and ceil releases and
  an extra end clip are not flagged. Such features were likely extracted at another clip length or
  belong to another cut of the video.
* **features longer than the duration**: ``L * clip_len > duration + LONGER_SLACK_CLIPS * clip_len``
  (more than one whole clip past the annotated end). The clips past the duration are never inside a
  window, so the model sees them as background.

Both are warnings (a log line with counts and examples), counted by ``masra data stats`` under
``feature_lengths``; see docs/datasets.md.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from masra.datasets.card import DatasetCard
from masra.datasets.features import npz_shape, video_path
from masra.datasets.grid import MISMATCH_FACTOR, SLACK_CLIPS, counts_agree, num_clips

log = logging.getLogger(__name__)

__all__ = [
    "LONGER_SLACK_CLIPS",
    "LengthCheck",
    "check_lengths",
    "feature_lengths",
    "warn_lengths",
]

LONGER_SLACK_CLIPS = 1
EXAMPLES = 3


@dataclass
class LengthCheck:
    """Counts (and a few example vids) of the two length problems over ``videos_checked`` videos."""

    videos_checked: int = 0
    videos_without_features: int = 0
    length_mismatch: int = 0
    features_longer_than_duration: int = 0
    examples: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "videos_checked": self.videos_checked,
            "videos_without_features": self.videos_without_features,
            "length_mismatch": self.length_mismatch,
            "features_longer_than_duration": self.features_longer_than_duration,
            "examples": self.examples,
            "thresholds": {
                "mismatch_factor": MISMATCH_FACTOR,
                "slack_clips": SLACK_CLIPS,
                "longer_slack_clips": LONGER_SLACK_CLIPS,
            },
        }

    def _note(self, kind: str, example: str) -> None:
        ex = self.examples.setdefault(kind, [])
        if len(ex) < EXAMPLES:
            ex.append(example)


def check_lengths(durations: Mapping[str, float], lengths: Mapping[str, int], clip_len: float) -> LengthCheck:
    """Compare each video's annotated duration with its feature clip count (vids absent from
    ``lengths`` count as without features)."""
    out = LengthCheck()
    for vid, duration in durations.items():
        if vid not in lengths:
            out.videos_without_features += 1
            continue
        n, e = int(lengths[vid]), num_clips(duration, clip_len)
        out.videos_checked += 1
        text = f"{vid} ({n} clips of {clip_len:g} s for {duration:g} s)"
        if not counts_agree(n, e):
            out.length_mismatch += 1
            out._note("length_mismatch", text)
        if n * clip_len > duration + LONGER_SLACK_CLIPS * clip_len + 1e-9:
            out.features_longer_than_duration += 1
            out._note("features_longer_than_duration", text)
    return out


def feature_lengths(card: DatasetCard, vids: Iterable[str]) -> dict[str, int]:
    """``vid -> clips`` (the shortest feature type), read from npz headers; vids lacking a file are left out."""
    out: dict[str, int] = {}
    for vid in vids:
        paths = [(video_path(src, vid), src.key) for src in card.video_features]
        if all(p.is_file() for p, _ in paths):
            out[vid] = min(npz_shape(p, key)[0] for p, key in paths)
    return out


def warn_lengths(check: LengthCheck, where: str) -> None:
    """Log one warning per length problem found (with counts and examples); nothing when all agree."""
    total = check.videos_checked
    if check.length_mismatch:
        log.warning(
            "%s: %d of %d videos have a feature length far from the annotated duration (over %d clips, or "
            "over one clip and x%g, apart), e.g. %s; check the clip length of the features "
            "(docs/datasets.md)",
            where, check.length_mismatch, total, SLACK_CLIPS, MISMATCH_FACTOR,
            "; ".join(check.examples["length_mismatch"]),
        )  # fmt: skip
    if check.features_longer_than_duration:
        log.warning(
            "%s: %d of %d videos have features longer than the annotated duration (over %d clip past "
            "the end; those clips are never inside a window), e.g. %s",
            where, check.features_longer_than_duration, total, LONGER_SLACK_CLIPS,
            "; ".join(check.examples["features_longer_than_duration"]),
        )  # fmt: skip
