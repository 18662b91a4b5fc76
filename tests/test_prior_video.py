"""Video decoding: nearest-frame sampling on constant and variable frame rates, resizing, failures.

Videos are made here with PyAV; frame ``i`` is a flat gray of level ``10 * i`` so a decoded frame
tells which source frame it came from.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _video import write_timed_h264

from masra.prior_gen.video import (
    VideoConfig,
    VideoDecodeError,
    clip_times,
    decode_at,
    event_times,
    find_video,
)


def make_mp4(path: Path, times: list[float], size: tuple[int, int] = (64, 48)) -> Path:
    """Write an H.264 mp4 whose frame ``i`` (gray level 10*i mod 256) has pts ``times[i]`` seconds."""
    w, h = size
    frames = [np.full((h, w, 3), (i * 10) % 256, dtype=np.uint8) for i in range(len(times))]
    return write_timed_h264(path, frames, times, rate=10, options={"crf": "10", "preset": "ultrafast"})


def cfr_times(duration: float, fps: float) -> list[float]:
    return [i / fps for i in range(round(duration * fps))]


def frame_index(pixels: np.ndarray) -> list[int]:
    """Source frame index of each decoded frame (T, H, W, 3) from its gray level."""
    return [round(float(f.mean()) / 10) for f in pixels]


def test_cfr_nearest_frames_and_resize(tmp_path: Path) -> None:
    path = make_mp4(tmp_path / "a.mp4", cfr_times(3.0, 10), size=(64, 48))
    times = np.array([2.04, 0.0, 0.26, 1.5])  # any order
    fr = decode_at(path, times, max_side=32)
    assert fr.pixels.shape == (4, 24, 32, 3) and fr.pixels.dtype == np.uint8
    assert frame_index(fr.pixels) == [20, 0, 3, 15]
    np.testing.assert_array_equal(fr.times, times)
    assert frame_index(fr.take([3, 0]).pixels) == [15, 20]


def test_vfr_uses_timestamps(tmp_path: Path) -> None:
    path = make_mp4(tmp_path / "vfr.mp4", [0.0, 0.1, 0.2, 0.5, 0.55, 1.2, 1.3, 2.0])
    fr = decode_at(path, np.array([0.04, 0.4, 0.9, 1.24, 1.9]), max_side=64)
    # nearest by pts: 0.04 -> 0.0, 0.4 -> 0.5, 0.9 -> 1.2, 1.24 -> 1.2, 1.9 -> 2.0
    assert frame_index(fr.pixels) == [0, 3, 5, 5, 7]


def test_request_slightly_past_the_end_is_tolerated_but_truncation_fails(tmp_path: Path) -> None:
    path = make_mp4(tmp_path / "a.mp4", cfr_times(2.0, 10))
    fr = decode_at(path, np.array([1.0, 2.5]), max_side=64)
    assert frame_index(fr.pixels) == [10, 19]
    with pytest.raises(VideoDecodeError, match=r"truncated: a\.mp4 ends at 1\.90 s"):
        decode_at(path, np.array([1.0, 5.0]), max_side=64)


def test_cut_file_is_a_decode_error(tmp_path: Path) -> None:
    full = make_mp4(tmp_path / "full.mp4", cfr_times(4.0, 10)).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full[: len(full) // 2])
    with pytest.raises(VideoDecodeError):
        decode_at(cut, event_times(4.0, VideoConfig(fps=2)), max_side=64)


@pytest.mark.parametrize(
    ("content", "match"),
    [(b"", "zero-length file"), (b"\x00garbage" * 100, "cannot open|no video stream|no decodable frames")],
)
def test_bad_files(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    with pytest.raises(VideoDecodeError, match=match):
        decode_at(path, np.array([0.5]), max_side=64)


def test_missing_file_and_find_video(tmp_path: Path) -> None:
    with pytest.raises(VideoDecodeError, match="not found"):
        decode_at(tmp_path / "nope.mp4", np.array([0.5]), max_side=64)
    (tmp_path / "v1.mkv").write_bytes(b"x")
    assert find_video(tmp_path, "v1") == tmp_path / "v1.mkv"
    assert find_video(tmp_path, "v2") is None


def test_sampling_times() -> None:
    cfg = VideoConfig(fps=1.0, max_frames=8, frames_per_clip=3)
    np.testing.assert_allclose(event_times(4.0, cfg), [0.5, 1.5, 2.5, 3.5])
    assert len(event_times(100.0, cfg)) == 8  # capped
    assert len(event_times(2.5, cfg)) == 4  # ceil(2.5) = 3 frames, rounded up to even
    ct = clip_times(3, 2.0, cfg)
    assert ct.shape == (3, 4)  # 3 frames per clip rounded up to 4
    np.testing.assert_allclose(ct[1], [2.25, 2.75, 3.25, 3.75])
    with pytest.raises(ValueError, match="fps"):
        VideoConfig(fps=0)


def test_decoder_options_keep_the_picks_on_a_file_without_b_frames(tmp_path: Path) -> None:
    """``make_mp4`` files have only I and P frames: skipping non-reference frames skips nothing."""
    path = make_mp4(tmp_path / "a.mp4", cfr_times(3.0, 10))
    times = np.array([2.04, 0.0, 0.26, 1.5])
    for kw in ({"skip_nonref": True}, {"threads": 1}, {"strategy": "seek"}, {"strategy": "walk"}):
        assert frame_index(decode_at(path, times, max_side=32, **kw).pixels) == [20, 0, 3, 15], kw
    with pytest.raises(ValueError, match="strategy"):
        decode_at(path, times, max_side=32, strategy="jump")
    assert VideoConfig(skip_nonref=True).skip_nonref
