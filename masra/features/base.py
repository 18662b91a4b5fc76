"""What every video feature extractor is, and the clip grid they share.

An extractor turns one video file into per-clip features for a clip length::

    extractor.extract(path, clip_len) -> (L, extractor.dim) float32,  L = num_clips(duration, clip_len)

Clip ``i`` covers ``[i * clip_len, (i + 1) * clip_len)`` seconds; a last partial clip counts
(:func:`masra.datasets.grid.num_clips`, the one clip-count rule). The
duration is what the container states (else the last frame's time plus one frame interval). Frames
are decoded with :mod:`masra.video_io` (nearest-frame sampling); an unreadable video raises
:class:`~masra.video_io.VideoIOError` with a one-line reason.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from masra.video_io import VideoIOError, frame_times, probe_duration

__all__ = ["VideoFeatureExtractor", "clip_times", "pick_device", "video_duration"]


@runtime_checkable
class VideoFeatureExtractor(Protocol):
    """A loaded extractor: ``name`` (its registry name), ``dim`` and :meth:`extract`."""

    name: str
    dim: int

    def extract(self, path: Path, clip_len: float) -> np.ndarray:
        """(L, dim) float32 features of the video at ``path`` for clips of ``clip_len`` seconds."""
        ...


def clip_times(num_clips: int, clip_len: float, per_clip: int, *, centred: bool = False) -> np.ndarray:
    """(num_clips, per_clip) sample times in seconds, evenly spaced inside each clip.

    ``centred=False``: ``i * clip_len + j * clip_len / per_clip`` (from each clip's start, the frame grid
    of a video at ``per_clip / clip_len`` fps); ``centred=True``: the middles of ``per_clip`` equal
    parts, e.g. one sample per clip at ``(i + 0.5) * clip_len``.
    """
    offsets = (np.arange(per_clip) + (0.5 if centred else 0.0)) * (clip_len / per_clip)  # (per_clip,)
    return np.arange(num_clips)[:, None] * clip_len + offsets[None, :]


def video_duration(path: str | os.PathLike[str]) -> float:
    """Seconds: the container's stated duration, else the last frame's time plus one frame interval."""
    path = Path(path)
    duration = probe_duration(path, str(path))
    if duration > 0:
        return duration
    times = frame_times(path, str(path))
    if len(times) == 0:
        raise VideoIOError(f"no decodable frames in {path}")
    step = float(np.median(np.diff(times))) if len(times) > 1 else 1.0
    return float(times[-1]) + step


def pick_device(device: str | None) -> str:
    """``device`` when given, else ``"cuda"`` when a GPU is visible, else ``"cpu"``."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
