"""Video decoding with PyAV: frames nearest to requested times, resized for the model.

The decoder walks the stream once in presentation order and, for each requested time, keeps the
frame whose timestamp is nearest (the previous or the current frame). Timestamps come from each
frame's pts, so variable-frame-rate files sample correctly. Frames are resized by FFmpeg's scaler
so that the longer side is at most ``max_side`` pixels.

Any problem (missing, unreadable, corrupt, truncated or zero-length file, no video stream, no
timestamps) raises :class:`VideoDecodeError` with a one-line reason; the generator records that
reason as the video's ``failed`` status and goes on with the next video.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v")


class VideoDecodeError(RuntimeError):
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
    """

    fps: float = 1.0
    max_frames: int = 64
    frames_per_clip: int = 2
    max_side: int = 448

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


def _scaled_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    scale = min(1.0, max_side / max(width, height))
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def _why(e: Exception) -> str:
    """FFmpeg's own message without the file path PyAV appends."""
    return str(getattr(e, "strerror", None) or e)


def decode_at(
    path: str | os.PathLike[str], times: np.ndarray, max_side: int, tail_tolerance: float = 1.0
) -> Frames:
    """Decode the frames of ``path`` nearest to each of ``times`` (seconds, any order).

    Returns ``Frames`` with ``pixels`` (T, H, W, 3) uint8 in the order of ``times``. Requested times
    past the last decodable frame get the last frame if it lies within ``tail_tolerance`` seconds
    (or two frame intervals) of them: annotation durations and container durations often differ by
    a fraction of a second. A larger gap means the file is truncated.
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise VideoDecodeError(f"video file not found: {path}")
    if path.stat().st_size == 0:
        raise VideoDecodeError(f"zero-length file: {path.name}")
    times = np.asarray(times, dtype=np.float64)
    order = np.argsort(times, kind="stable")
    picked: list[np.ndarray | None] = [None] * len(times)
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as e:
        raise VideoDecodeError(f"cannot open {path.name}: {_why(e)}") from None
    with container:
        if not container.streams.video:
            raise VideoDecodeError(f"no video stream in {path.name}")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        size = _scaled_size(stream.codec_context.width or 2, stream.codec_context.height or 2, max_side)
        rate = float(stream.average_rate) if stream.average_rate else 0.0
        step = 1.0 / rate if rate > 0 else 0.5
        prev: tuple[float, av.VideoFrame] | None = None
        k = 0
        n_frames = 0

        def rgb(frame: av.VideoFrame) -> np.ndarray:
            return frame.to_ndarray(format="rgb24", width=size[0], height=size[1])

        try:
            for frame in container.decode(stream):
                if frame.time is None:
                    raise VideoDecodeError(f"frame without timestamp in {path.name}")
                t, n_frames = float(frame.time), n_frames + 1
                while k < len(order) and t >= times[order[k]]:
                    target = times[order[k]]
                    best = frame if prev is None or abs(t - target) <= abs(prev[0] - target) else prev[1]
                    picked[order[k]] = rgb(best)
                    k += 1
                if k == len(order):
                    break
                prev = (t, frame)
        except av.error.FFmpegError as e:
            raise VideoDecodeError(
                f"decoding failed in {path.name} after {n_frames} frames: {_why(e)}"
            ) from None
        if n_frames == 0:
            raise VideoDecodeError(f"no decodable frames in {path.name}")
        if k < len(order):
            last_t, last = prev if prev is not None else (0.0, None)
            missing = times[order[k:]]
            if last is None or missing.max() > last_t + max(2 * step, tail_tolerance):
                raise VideoDecodeError(
                    f"truncated: {path.name} ends at {last_t:.2f} s but frames up to {missing.max():.2f} s "
                    "were requested"
                )
            arr = rgb(last)
            for j in order[k:]:
                picked[j] = arr
    return Frames(np.stack([p for p in picked if p is not None]), times.copy())
