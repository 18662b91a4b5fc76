"""Video decoding for the prior prompts: frames nearest to requested times, resized for the model.

The sampling itself lives in :mod:`masra.video_io` (shared with stage 2's raw-video features): for
each requested time the frame with the nearest timestamp (pts) is picked, so variable-frame-rate
files sample correctly, and frames are resized by FFmpeg's scaler so that the longer side is at most
``max_side`` pixels. The decoder seeks over stretches no request needs and otherwise decodes
forward; the picks are those of decoding every frame. ``VideoConfig.skip_nonref`` trades exactness
for speed on files with B-frames (see :mod:`masra.video_io` for the error it allows).

Any problem (missing, unreadable, corrupt, truncated or zero-length file, no video stream, no
timestamps) raises :class:`VideoDecodeError` with a one-line reason; the generator records that
reason as the video's ``failed`` status and goes on with the next video.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from masra.video_io import VideoIOError, sample_frames

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v")


class VideoDecodeError(VideoIOError):
    """A video that cannot be used; ``str(err)`` is the reason stored in the prior row."""


@dataclass(frozen=True)
class VideoConfig:
    """Frame sampling for the prior prompts.

    Attributes:
        fps: frames per second sampled for the event prompt (whole video).
        max_frames: cap on frames for the event prompt; longer videos are sampled more sparsely.
        frames_per_clip: frames per clip for per-clip captions (rounded up to an even count, as
            Qwen-VL models group 2 frames per temporal patch).
        max_side: longer side of a resized frame in pixels.
        skip_nonref: do not decode non-reference frames (FFmpeg ``skip_frame=NONREF``): about half
            the frames of a file with B-frames are not decoded; no change on files without. A
            requested time whose nearest frame is skipped gets the nearest decoded one, at most one
            frame away with x264's default B-frame layout (the bound is in :mod:`masra.video_io`).
    """

    fps: float = 1.0
    max_frames: int = 64
    frames_per_clip: int = 2
    max_side: int = 448
    skip_nonref: bool = False

    def __post_init__(self) -> None:
        if not self.fps > 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")
        if self.max_frames < 2:
            raise ValueError(f"max_frames must be >= 2, got {self.max_frames}")
        if self.frames_per_clip < 1:
            raise ValueError(f"frames_per_clip must be >= 1, got {self.frames_per_clip}")
        if self.max_side < 28:
            raise ValueError(f"max_side must be >= 28 pixels, got {self.max_side}")


@dataclass
class Frames:
    """Decoded frames: ``pixels`` (T, H, W, 3) uint8 RGB at ``times`` (T,) seconds (the requested ones)."""

    pixels: np.ndarray
    times: np.ndarray

    def take(self, index: np.ndarray | list[int]) -> Frames:
        idx = np.asarray(index, dtype=np.int64)
        return Frames(self.pixels[idx], self.times[idx])


def even(n: int) -> int:
    """``n`` rounded up to an even number (at least 2)."""
    return max(2, n + (n % 2))


def event_times(duration: float, cfg: VideoConfig) -> np.ndarray:
    """(T,) uniform frame times over ``[0, duration)`` at ``cfg.fps``, at most ``cfg.max_frames``, T even."""
    n = min(cfg.max_frames - cfg.max_frames % 2, even(math.ceil(duration * cfg.fps)))
    return (np.arange(n) + 0.5) * (duration / n)


def clip_times(num_clips: int, clip_len: float, cfg: VideoConfig) -> np.ndarray:
    """(num_clips, K) frame times of each clip ``[i * clip_len, (i + 1) * clip_len)``, K even."""
    k = even(cfg.frames_per_clip)
    offsets = (np.arange(k) + 0.5) * (clip_len / k)
    return np.arange(num_clips)[:, None] * clip_len + offsets[None, :]


def find_video(video_dir: str | os.PathLike[str], vid: str) -> Path | None:
    """``{video_dir}/{vid}.<ext>`` for the first extension that exists, else None."""
    for ext in VIDEO_EXTENSIONS:
        p = Path(video_dir) / f"{vid}{ext}"
        if p.is_file():
            return p
    return None


def decode_at(
    path: str | os.PathLike[str],
    times: np.ndarray,
    max_side: int,
    tail_tolerance: float = 1.0,
    *,
    skip_nonref: bool = False,
    threads: int = 0,
    strategy: str = "auto",
) -> Frames:
    """Decode the frames of ``path`` nearest to each of ``times`` (seconds, any order).

    Returns ``Frames`` with ``pixels`` (T, H, W, 3) uint8 in the order of ``times``. Requested times
    past the last decodable frame get the last frame if it lies within ``tail_tolerance`` seconds
    (or two frame intervals) of them: annotation durations and container durations often differ by
    a fraction of a second. A larger gap means the file is truncated. ``skip_nonref``, ``threads``
    and ``strategy`` are those of :func:`masra.video_io.sample_frames`.
    """
    times = np.asarray(times, dtype=np.float64)
    try:
        sampled = sample_frames(
            path,
            times,
            max_side=max_side,
            tail_tolerance=tail_tolerance,
            strategy=strategy,
            skip_nonref=skip_nonref,
            threads=threads,
        )
    except VideoIOError as e:
        raise VideoDecodeError(str(e)) from None
    return Frames(sampled.pixels, times.copy())
