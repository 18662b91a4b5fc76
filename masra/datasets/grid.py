"""The clip grid: the one rule for how many clips a video has, used by both stages.

A card's grid cuts a video of ``duration`` seconds into clips of ``clip_len`` seconds; clip ``i``
covers ``[i * clip_len, (i + 1) * clip_len)`` and the last clip may be partial, so a video has
``ceil(duration / clip_len)`` clips, at least one (:func:`num_clips`). A duration within
:data:`GRID_TOLERANCE` of a clip of a grid line counts as on it (``num_clips(52.000001, 2) == 26``).
Stage 1 writes priors for ``min(num_clips, max_clips)`` clips (:func:`kept_clips`), features are
expected to have ``num_clips`` clips, and stage 2 cuts both at ``max_clips``.

Feature releases do not all follow this rule: floor, round and ceil of the duration all occur, and
some extractors add or drop a clip at the end. Two clip counts of one video *agree* when they differ
by at most :data:`SLACK_CLIPS` clips and, past one clip, by at most a factor :data:`MISMATCH_FACTOR`
(:func:`counts_agree`); stage 2 then fits one to the other in time. Counts that disagree come from
another clip length or another cut of the video, and are refused or warned about.

The highlight-detection metric of the standard evaluation keeps its own definition of a video's
scored clips, ``int(duration / clip_len)`` (:func:`protocol_clips`), so that its numbers equal the
official evaluation's.

Examples::

    >>> num_clips(150.0, 2.0), num_clips(30.4, 1.0), num_clips(0.2, 1.0)
    (75, 31, 1)
    >>> kept_clips(124.3, 1.0, 75)
    75
    >>> counts_agree(30, 31), counts_agree(75, 124), counts_agree(2, 4)
    (True, False, False)
"""

from __future__ import annotations

import math

__all__ = [
    "GRID_TOLERANCE",
    "MISMATCH_FACTOR",
    "SLACK_CLIPS",
    "counts_agree",
    "kept_clips",
    "num_clips",
    "protocol_clips",
]

GRID_TOLERANCE = 1e-6  # in clips: float noise of a duration on a grid line is not a clip
SLACK_CLIPS = 2  # clip counts of one video this close agree (floor vs ceil, an extra end clip)
MISMATCH_FACTOR = 1.5  # ... unless they differ by more than one clip and by more than this factor


def _check(duration: float, clip_len: float) -> None:
    if not clip_len > 0 or not math.isfinite(clip_len):
        raise ValueError(f"clip_len must be a finite number > 0, got {clip_len}")
    if not duration >= 0 or not math.isfinite(duration):
        raise ValueError(f"duration must be a finite number >= 0, got {duration}")


def num_clips(duration: float, clip_len: float) -> int:
    """Clips of ``clip_len`` seconds on the grid of a video of ``duration`` seconds (ceil, >= 1)."""
    _check(duration, clip_len)
    return max(1, math.ceil(duration / clip_len - GRID_TOLERANCE))


def kept_clips(duration: float, clip_len: float, max_clips: int) -> int:
    """:func:`num_clips` cut at ``max_clips``: the clips stage 1 describes and stage 2 trains on."""
    if max_clips < 1:
        raise ValueError(f"max_clips must be >= 1, got {max_clips}")
    return min(num_clips(duration, clip_len), max_clips)


def counts_agree(a: int, b: int) -> bool:
    """Whether two clip counts of one video can be fitted to each other in time (module doc)."""
    lo, hi = min(a, b), max(a, b)
    if hi - lo <= 1:
        return True
    return hi - lo <= SLACK_CLIPS and hi <= MISMATCH_FACTOR * lo


def protocol_clips(duration: float, clip_len: float) -> int:
    """Scored clips of a video in the standard highlight-detection evaluation: ``int(duration / clip_len)``."""
    return int(duration / clip_len)
