"""Test videos with exact timestamps: H.264 mp4s whose frame ``i`` is shown at ``times[i]`` seconds."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np


def write_timed_h264(
    path: Path,
    frames: Sequence[np.ndarray],
    times: Sequence[float],
    *,
    rate: int,
    options: dict[str, str],
    container_options: dict[str, str] | None = None,
) -> Path:
    """Encode ``frames`` ((H, W, 3) uint8 RGB each) with pts ``times[i]`` in a millisecond time base.

    ``rate`` is the stream's nominal frame rate, ``options`` the libx264 options and
    ``container_options`` the muxer's (e.g. ``{"movflags": "+faststart"}``).
    """
    import av

    if len(frames) != len(times) or not len(frames):
        raise ValueError(f"need as many frames as times, got {len(frames)} and {len(times)}")
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w", options=container_options or {}) as c:
        s = c.add_stream("libx264", rate=rate)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        s.time_base = s.codec_context.time_base = Fraction(1, 1000)
        s.options = options
        for img, t in zip(frames, times, strict=True):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = round(t * 1000), Fraction(1, 1000)
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path
