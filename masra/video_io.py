"""Nearest-frame sampling from video files with PyAV, shared by stage 1 and stage 2.

:func:`sample_frames` returns, for each requested time, the decoded frame whose timestamp (pts) is
nearest: the decoder runs forward in presentation order and, when it first reaches a frame at or
after a requested time, keeps that frame or the previous one, whichever is nearer (ties go to the
later frame). Timestamps come from each frame's pts, so variable-frame-rate files sample correctly.

Speed. Decoding dominates; three things keep it down without changing which frame is picked:

- *Seeking over unneeded stretches* (``strategy="auto"``): a cheap first pass reads the packets
  (no decoding) to learn every frame's time and the keyframes. Before each requested time the
  sampler seeks to the last keyframe at or before the frame that precedes it, when that keyframe
  lies at least ``SEEK_MIN_SKIP`` frames ahead of the decoder; otherwise it keeps decoding. Both
  frames the nearest-frame rule compares are decoded either way, so the picks equal those of a full
  walk (``strategy="walk"``). Requests denser than the keyframe interval never seek, and cost one
  walk up to the last requested time; sparse requests cost about one keyframe interval each.
- *One scaler for all picks*: the picked frames are converted to RGB (and resized) through one
  reused FFmpeg scaler context; a fresh context per frame cost more than the conversion itself.
- Opt-in *skipping of non-reference frames* (``skip_nonref=True``, FFmpeg's ``skip_frame=NONREF``):
  frames no other frame depends on (most B-frames) are not decoded at all, which roughly halves the
  decoded frames on files with B-frames and changes nothing on files without. A requested time
  whose nearest frame was skipped gets the nearest decoded frame instead. With ``r`` the longest run
  of consecutive non-reference frames, the picked frame lies at most ``(r + 1) / 2`` frame intervals
  from the requested time (exact sampling: 1/2) and at most ``1 + r // 2`` frames from the exact
  pick. x264's default layout (3 B-frames, the middle one a reference) has ``r = 1``: at most one
  frame interval (33 ms at 30 fps) from the requested time, one frame from the exact pick.

Only numpy is imported at module level; PyAV is imported when a video is opened. Problems
(missing, zero-length, unreadable, corrupt or truncated file, no video stream, frames without
timestamps) raise :class:`VideoIOError` with a one-line reason naming the file.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

__all__ = [
    "SEEK_MIN_SKIP",
    "STRATEGIES",
    "Sampled",
    "StreamIndex",
    "VideoIOError",
    "frame_times",
    "probe_duration",
    "sample_frames",
    "scaled_size",
]

STRATEGIES = ("auto", "walk", "seek")
SEEK_MIN_SKIP = 50
"""``auto`` seeks only when that skips at least this many frames. A seek flushes the decoder and
restarts at a keyframe (the costliest frame to decode); measured on 640x360 H.264 it cost the CPU
time of 10-40 decoded frames."""


class VideoIOError(RuntimeError):
    """A video that cannot be sampled; ``str(err)`` is a one-line reason naming the file."""


class _SeekMissed(Exception):
    """A seek landed after the frame it was meant to reach (a demuxer with a coarse index)."""


@dataclass
class Sampled:
    """Frames picked for requested times.

    Attributes:
        pixels: (T, H, W, 3) uint8 RGB, in the order of the requested times.
        frame_times: (T,) float64 seconds, the timestamp of each picked frame.
        decoded: frames the decoder returned (all passes).
        seeks: seeks performed.
    """

    pixels: np.ndarray
    frame_times: np.ndarray
    decoded: int = 0
    seeks: int = 0


@dataclass
class StreamIndex:
    """Where a stream's frames and keyframes lie, read from its packets without decoding.

    Attributes:
        times: (N,) float64 sorted presentation times of all frames, seconds.
        key_times: (K,) float64 sorted presentation times of the keyframes, seconds.
        key_pts: (K,) int64 the keyframes' pts in the stream's time base (seek targets).
    """

    times: np.ndarray
    key_times: np.ndarray
    key_pts: np.ndarray

    def seek_point(self, target: float) -> int:
        """Index into ``key_*`` of the keyframe a walk must start from to pick a frame for ``target``.

        That is the last keyframe at or before the last frame earlier than ``target`` (the frame the
        nearest-frame rule compares against); -1 when no keyframe precedes it.
        """
        j = int(np.searchsorted(self.times, target, side="left")) - 1  # last frame < target
        anchor = self.times[max(j, 0)]
        return int(np.searchsorted(self.key_times, anchor, side="right")) - 1

    def frames_between(self, a: float, b: float) -> int:
        """Number of frames with ``a < time < b``."""
        return max(0, int(np.searchsorted(self.times, b, "left") - np.searchsorted(self.times, a, "right")))


def scaled_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(width, height) scaled so the longer side is at most ``max_side``, both even and >= 2."""
    scale = min(1.0, max_side / max(width, height))
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def _why(e: BaseException) -> str:
    """FFmpeg's own message without the file path PyAV appends."""
    return str(getattr(e, "strerror", None) or e)


def _open(path: Path, label: str) -> Any:
    import av

    if not path.is_file():
        raise VideoIOError(f"video file not found: {path}")
    if path.stat().st_size == 0:
        raise VideoIOError(f"zero-length file: {label}")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as e:
        raise VideoIOError(f"cannot open {label}: {_why(e)}") from None
    if not container.streams.video:
        container.close()
        raise VideoIOError(f"no video stream in {label}")
    return container


def _index(path: Path) -> StreamIndex | None:
    """The packet index of the first video stream, or None when packets lack pts or reading fails."""
    import av

    pts: list[int] = []
    keys: list[int] = []
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            tb = stream.time_base
            for packet in container.demux(stream):
                if packet.size == 0:  # the flushing packet at the end
                    continue
                if packet.pts is None:
                    return None
                pts.append(packet.pts)
                if packet.is_keyframe:
                    keys.append(packet.pts)
    except (av.error.FFmpegError, OSError, IndexError) as e:
        log.debug("no packet index for %s (%s): walking instead", path.name, _why(e))
        return None
    if tb is None or not keys or not pts:
        return None
    key_pts = np.unique(np.asarray(keys, dtype=np.int64))

    def seconds(p: np.ndarray) -> np.ndarray:  # as PyAV's ``frame.time``: float(pts) * num / den
        return p.astype(np.float64) * tb.numerator / tb.denominator

    return StreamIndex(seconds(np.sort(np.asarray(pts, dtype=np.int64))), seconds(key_pts), key_pts)


def probe_duration(path: str | os.PathLike[str], label: str | None = None) -> float:
    """The duration the container (or else the stream) states, seconds; 0.0 when it states none."""
    path = Path(path)
    with _open(path, label or path.name) as container:
        stream = container.streams.video[0]
        if container.duration:
            return float(container.duration) / 1e6
        if stream.duration and stream.time_base:
            return float(stream.duration * stream.time_base)
    return 0.0


def frame_times(path: str | os.PathLike[str], label: str | None = None) -> np.ndarray:
    """(N,) sorted presentation times of all frames, seconds: from the packets, else by decoding."""
    import av

    path = Path(path)
    label = label or path.name
    index = _index(path) if path.is_file() and path.stat().st_size else None
    if index is not None:
        return index.times
    out: list[float] = []
    with _open(path, label) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                out.append(float(frame.time or 0.0))
        except av.error.FFmpegError as e:
            raise VideoIOError(f"decoding failed in {label} after {len(out)} frames: {_why(e)}") from None
    return np.sort(np.asarray(out, dtype=np.float64))


def sample_frames(
    path: str | os.PathLike[str],
    times: np.ndarray,
    *,
    max_side: int | None = None,
    tail_tolerance: float = math.inf,
    strategy: str = "auto",
    skip_nonref: bool = False,
    threads: int = 0,
    require_timestamps: bool = True,
    label: str | None = None,
) -> Sampled:
    """The frame of ``path`` nearest to each of ``times`` (seconds, any order); see the module doc.

    Args:
        path: the video file; its first video stream is used.
        times: (T,) requested times in seconds.
        max_side: longer side of the returned frames (resized by FFmpeg's scaler); None: full size.
        tail_tolerance: requested times past the last decodable frame get that frame when they lie
            within ``max(tail_tolerance, 2 frame intervals)`` of it; a larger gap raises "truncated".
        strategy: ``auto`` (seek over unneeded stretches when the stream's packets allow it),
            ``walk`` (decode every frame up to the last requested time) or ``seek`` (seek whenever a
            keyframe lies ahead, even for a few frames; for tests).
        skip_nonref: do not decode non-reference frames (faster; picks may move, see the module doc).
        threads: decoder threads; 0 lets FFmpeg choose (frame + slice threads for all cores).
        require_timestamps: a frame without pts is an error (else it counts as time 0.0).
        label: how messages name the file (default: its file name).

    Returns:
        :class:`Sampled` with ``pixels`` (T, H, W, 3) uint8 and ``frame_times`` (T,).

    Raises:
        VideoIOError: the reasons listed in the module doc.
        ValueError: no or non-finite ``times``, an unknown ``strategy`` or a negative ``threads``.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if threads < 0:
        raise ValueError(f"threads must be >= 0, got {threads}")
    path = Path(path)
    label = label or path.name
    times = np.asarray(times, dtype=np.float64).reshape(-1)
    if len(times) == 0 or not np.isfinite(times).all():
        raise ValueError(f"times must be a non-empty array of finite seconds, got {times!r}")
    usable = strategy != "walk" and path.is_file() and path.stat().st_size > 0
    index = _index(path) if usable else None  # problems with the file are reported by _sample
    args = (path, times, max_side, tail_tolerance, skip_nonref, threads, require_timestamps, label)
    try:
        return _sample(*args, index=index, min_skip=1 if strategy == "seek" else SEEK_MIN_SKIP)
    except _SeekMissed:
        log.debug("seeking in %s landed late; walking instead", label)
        return _sample(*args, index=None, min_skip=0)


class _Picker:
    """Serves requested times from decoded frames by the nearest-frame rule; converts each pick once.

    Frames are fed in presentation order. When a frame reaches the next requested time it is compared
    with the frame before it in the same pass (None right after a seek or at the start), and the
    nearer one is taken (ties: the later one).
    """

    def __init__(self, times: np.ndarray, size: tuple[int, int]) -> None:
        from av.video.reformatter import VideoReformatter

        self.times = times  # (T,) requested seconds
        self.order = np.argsort(times, kind="stable")  # (T,) requests by time
        self.k = 0  # requests served so far, in time order
        self.pixels: list[np.ndarray | None] = [None] * len(times)
        self.frame_times = np.zeros(len(times), dtype=np.float64)  # (T,)
        self.size = size
        self._scaler = VideoReformatter()  # one cached FFmpeg scaler context for every pick
        self._converted: tuple[Any, np.ndarray] | None = None

    @property
    def done(self) -> bool:
        return self.k == len(self.order)

    @property
    def next_time(self) -> float:
        return float(self.times[self.order[self.k]])

    def feed(self, t: float, frame: Any, prev: tuple[float, Any] | None) -> bool:
        """Serve every pending request at or before ``t``; True when at least one was served."""
        k0 = self.k
        while not self.done and t >= self.next_time:
            target = self.next_time
            if prev is not None and abs(t - target) > abs(prev[0] - target):
                self._take(*prev)
            else:
                self._take(t, frame)
        return self.k > k0

    def fill(self, t: float, frame: Any) -> None:
        """Serve every pending request with the frame at ``t`` (the tail of the video)."""
        while not self.done:
            self._take(t, frame)

    def stacked(self) -> np.ndarray:
        """(T, H, W, 3) uint8 picks in the order of the requested times (all must be served)."""
        pixels = [p for p in self.pixels if p is not None]
        if len(pixels) != len(self.pixels):
            raise RuntimeError("not every requested time was served")
        return np.stack(pixels)

    def _take(self, t: float, frame: Any) -> None:
        if self._converted is None or self._converted[0] is not frame:
            # one scaler thread: the decoder threads and parallel videos already use the cores
            out = self._scaler.reformat(
                frame, width=self.size[0], height=self.size[1], format="rgb24", threads=1
            )
            self._converted = (frame, out.to_ndarray())
        j = int(self.order[self.k])
        self.pixels[j], self.frame_times[j] = self._converted[1], t
        self.k += 1


def _sample(
    path: Path,
    times: np.ndarray,
    max_side: int | None,
    tail_tolerance: float,
    skip_nonref: bool,
    threads: int,
    require_timestamps: bool,
    label: str,
    *,
    index: StreamIndex | None,
    min_skip: int,
) -> Sampled:
    """One sampling run; seeks only when ``index`` is given (see :func:`sample_frames`)."""
    import av

    def seek_for(target: float, here: float) -> int | None:
        """The keyframe to seek to before walking on to ``target`` from ``here`` (None: walk on)."""
        if index is None:
            return None
        want = index.seek_point(target)
        if want < 0 or index.key_times[want] <= here:
            return None
        return want if index.frames_between(here, index.key_times[want]) >= min_skip else None

    with _open(path, label) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = threads
        if skip_nonref:
            stream.codec_context.skip_frame = "NONREF"
        width, height = stream.codec_context.width or 2, stream.codec_context.height or 2
        picker = _Picker(times, scaled_size(width, height, max_side) if max_side else (width, height))
        rate = float(stream.average_rate) if stream.average_rate else 0.0
        step = 1.0 / rate if rate > 0 else 0.5
        n_frames = seeks = 0
        last: tuple[float, Any] | None = None  # the last frame decoded, over all passes
        seek_to = seek_for(picker.next_time, -math.inf)
        while not picker.done:
            floor, prev = -math.inf, None  # prev: the frame before the current one in this pass
            if seek_to is not None and index is not None:
                container.seek(int(index.key_pts[seek_to]), stream=stream)
                seeks, floor = seeks + 1, float(index.key_times[seek_to])
            seek_to = None
            try:
                for frame in container.decode(stream):
                    t = frame.time
                    if t is None:
                        if require_timestamps:
                            raise VideoIOError(f"frame without timestamp in {label}")
                        t = 0.0
                    n_frames += 1
                    if floor > -math.inf:  # the first frames after a seek
                        if t < floor - 1e-6:  # leading frames of an open GOP, before the keyframe
                            continue
                        if t > floor + 1e-6:
                            raise _SeekMissed
                        floor = -math.inf
                    last = (t, frame)
                    served = picker.feed(t, frame, prev)
                    if picker.done:
                        break
                    prev = last
                    if served and (seek_to := seek_for(picker.next_time, t)) is not None:
                        break
            except av.error.FFmpegError as e:
                raise VideoIOError(f"decoding failed in {label} after {n_frames} frames: {_why(e)}") from None
            if seek_to is None:
                break  # the stream ended, or every request has its frame
        if n_frames == 0:
            raise VideoIOError(f"no decodable frames in {label}")
        if not picker.done:
            last_t = last[0] if last is not None else 0.0
            missing = picker.times[picker.order[picker.k :]]
            if last is None or missing.max() > last_t + max(2 * step, tail_tolerance):
                raise VideoIOError(
                    f"truncated: {label} ends at {last_t:.2f} s but frames up to {missing.max():.2f} s "
                    "were requested"
                )
            picker.fill(*last)
    return Sampled(picker.stacked(), picker.frame_times, n_frames, seeks)
