"""The fixture's hand-crafted ``appearance`` (16-d) and ``motion`` (12-d) extractors on video files.

They wrap :mod:`masra.features.handcrafted_frames` (definitions in docs/fixture.md): frames are sampled on the
grid ``k * clip_len / m`` with ``m = round(fps * clip_len)`` frames per clip (``fps`` = 4, the
fixture's frame rate: 8 frames per 2-s clip), by nearest frame through :mod:`masra.video_io`. On the
fixture's own mp4s that grid is exactly their frames, so the features equal the stored ones bit for
bit (a test checks it). Frames must be square (the fixture renders 64x64); other videos are refused.

Both types come from one decode: each thread keeps its last video's features, so extracting
``appearance`` then ``motion`` of one file decodes it once.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from masra.datasets.grid import num_clips as grid_clips
from masra.features.base import video_duration
from masra.features.handcrafted_frames import FEATURE_DIMS, clip_features, frame_stats
from masra.video_io import VideoIOError, sample_frames

__all__ = ["FIXTURE_FPS", "HandcraftedExtractor", "appearance_extractor", "motion_extractor"]

FIXTURE_FPS = 4

_last = threading.local()  # per thread: (key, features) of the last video


def _both(path: Path, clip_len: float, fps: int) -> dict[str, np.ndarray]:
    """``{"appearance": (L, 16), "motion": (L, 12)}`` of one video; the last result is reused."""
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size, clip_len, fps)
    cached = getattr(_last, "value", None)
    if cached is not None and cached[0] == key:
        return dict(cached[1])
    per_clip = round(fps * clip_len)
    if per_clip < 2:
        raise ValueError(
            f"the hand-crafted extractors need >= 2 frames per clip; fps {fps} x clip_len {clip_len}"
        )
    duration = video_duration(path)
    num_frames = grid_clips(duration, clip_len / per_clip)  # frames on the grid k * clip_len / per_clip
    times = np.arange(num_frames) * (clip_len / per_clip)  # (N,) seconds
    frames = sample_frames(path, times, require_timestamps=False, label=str(path)).pixels  # (N, S, S, 3)
    if frames.shape[1] != frames.shape[2]:
        raise VideoIOError(
            f"{path}: the hand-crafted fixture extractors need square frames, got {frames.shape[2]}x{frames.shape[1]}"
        )
    feats = clip_features(frame_stats(frames), per_clip)
    num_clips = grid_clips(duration, clip_len)
    out = {k: v[:num_clips] for k, v in feats.items()}
    _last.value = (key, out)
    return dict(out)


@dataclass
class HandcraftedExtractor:
    """One of the two fixture feature types (``kind``: ``appearance`` or ``motion``)."""

    kind: str
    fps: int = FIXTURE_FPS

    def __post_init__(self) -> None:
        if self.kind not in FEATURE_DIMS:
            raise ValueError(f"kind must be one of {sorted(FEATURE_DIMS)}, got {self.kind!r}")

    @property
    def name(self) -> str:
        return self.kind

    @property
    def dim(self) -> int:
        return FEATURE_DIMS[self.kind]

    def extract(self, path: Path, clip_len: float) -> np.ndarray:
        """(L, dim) float32, ``L = ceil(duration / clip_len)``."""
        return _both(Path(path), float(clip_len), self.fps)[self.kind]


def _check_model(model: str | os.PathLike[str] | None, kind: str) -> None:
    if model is not None:
        raise ValueError(f"the {kind!r} extractor has no model; got model={model!r}")


def appearance_extractor(
    model: str | None = None, device: str | None = None, batch_size: int = 1
) -> HandcraftedExtractor:
    """The registry's builder for ``appearance`` (numpy; ``device`` and ``batch_size`` are ignored)."""
    _check_model(model, "appearance")
    return HandcraftedExtractor("appearance")


def motion_extractor(
    model: str | None = None, device: str | None = None, batch_size: int = 1
) -> HandcraftedExtractor:
    """The registry's builder for ``motion`` (numpy; ``device`` and ``batch_size`` are ignored)."""
    _check_model(model, "motion")
    return HandcraftedExtractor("motion")
