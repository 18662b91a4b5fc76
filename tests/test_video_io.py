"""The shared frame sampler: seeking picks exactly the frames a full walk picks; skip_nonref's bound.

Videos are encoded here with PyAV (64x48 H.264). Frame ``i`` carries ``i`` in binary in its top
two rows of 8x8 blocks (white = 1), so every decoded frame tells exactly which source frame it is.
The expected pick for a requested time is computed from the known frame times: the nearest frame,
ties to the later one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _video import write_timed_h264

from masra import video_io
from masra.fixture.render import write_mp4
from masra.video_io import StreamIndex, VideoIOError, frame_times, probe_duration, sample_frames

# x264 settings: a long GOP (2 s at 30 fps) with 3 B-frames, the middle one a reference (x264's
# default pyramid), no scene cuts or adaptive B-frame decisions, so the layout is fixed.
BFRAMES = "keyint=60:min-keyint=60:scenecut=0:bframes=3:b-adapt=0:b-pyramid=normal"
# Only I and P frames, a keyframe every 25 frames.
PFRAMES = "keyint=25:min-keyint=25:scenecut=0:bframes=0"
# 3 B-frames, none of them a reference: runs of 3 non-reference frames.
BFRAMES_FLAT = "keyint=60:min-keyint=60:scenecut=0:bframes=3:b-adapt=0:b-pyramid=none"


def pattern(i: int, h: int = 48, w: int = 64) -> np.ndarray:
    """(h, w, 3) uint8 frame ``i``: 16 bits of ``i`` as black/white 8x8 blocks, a moving ramp below."""
    img = np.empty((h, w, 3), np.uint8)
    img[16:] = ((np.arange(w) * 2 + 3 * i) % 256).astype(np.uint8)[None, :, None]
    for b in range(16):
        r, c = divmod(b, 8)
        img[r * 8 : (r + 1) * 8, c * 8 : (c + 1) * 8] = 255 if (i >> b) & 1 else 0
    return img


def index_of(pixels: np.ndarray) -> list[int]:
    """Source frame index of each decoded frame (T, H, W, 3), read from its bit blocks."""
    out = []
    for f in pixels:
        blocks = f[:16].reshape(2, 8, 8, 8, 3).mean(axis=(1, 3, 4))  # (2 rows, 8 blocks)
        bits = (blocks.reshape(-1) > 128).astype(int)
        out.append(int(sum(int(v) << b for b, v in enumerate(bits))))
    return out


def encode(path: Path, times: list[float], params: str, faststart: bool = False) -> Path:
    """An H.264 mp4 whose frame ``i`` is ``pattern(i)`` at pts ``times[i]`` s (millisecond time base)."""
    return write_timed_h264(
        path,
        [pattern(i) for i in range(len(times))],
        times,
        rate=30,
        options={"crf": "18", "preset": "veryfast", "x264-params": params},
        container_options={"movflags": "+faststart"} if faststart else None,
    )


def cfr(n: int, fps: float = 30.0) -> list[float]:
    return [round(i / fps, 3) for i in range(n)]


def vfr(n: int) -> list[float]:
    """Frame gaps cycling through 10, 33, 50 and 120 ms."""
    gaps = [0.01, 0.033, 0.05, 0.12]
    return [round(float(t), 3) for t in np.cumsum([0.0] + [gaps[i % 4] for i in range(n - 1)])]


def expected(frame_t: list[float], times: np.ndarray) -> list[int]:
    """Index of the nearest frame for each time (exact float distances; ties to the later frame)."""
    ft = np.asarray(frame_t)
    out = []
    for t in times:
        d = np.abs(ft - t)
        out.append(int(np.flatnonzero(d == d.min())[-1]))
    return out


VIDEOS = {  # name -> (x264 params, frame times)
    "bframes_long_gop": (BFRAMES, cfr(300)),
    "pframes": (PFRAMES, cfr(300)),
    "vfr": (BFRAMES, vfr(300)),
}


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, list[float]]]:
    root = tmp_path_factory.mktemp("video_io")
    return {name: (encode(root / f"{name}.mp4", t, p), t) for name, (p, t) in VIDEOS.items()}


def requests(kind: str, end: float) -> np.ndarray:
    """Requested times: ``sparse`` (a few, far apart, unsorted), ``dense`` (the stage-1 pattern:
    frames every 0.5 s plus a coarser uniform set, some between two frames), or ``mid`` (the
    midpoints of pairs of neighbouring frames, which the rule sends to the later frame)."""
    if kind == "sparse":
        return np.array([0.8, 0.02, 6.3, 3.33, 9.9]) * end / 10
    if kind == "dense":
        return np.concatenate([(np.arange(20) + 0.5) * end / 20, np.arange(0.25, end, 0.5)])
    ft = np.asarray(VIDEOS["pframes"][1])
    return (ft[[30, 95, 211]] + ft[[31, 96, 212]]) / 2


@pytest.mark.parametrize("name", list(VIDEOS))
@pytest.mark.parametrize("kind", ["sparse", "dense", "mid"])
def test_every_strategy_picks_the_nearest_frame(videos: dict, name: str, kind: str) -> None:
    path, ft = videos[name]
    times = requests(kind, ft[-1])
    want = expected(ft, times)
    runs = {s: sample_frames(path, times, strategy=s) for s in ("walk", "auto", "seek")}
    for strategy, got in runs.items():
        assert index_of(got.pixels) == want, strategy
        np.testing.assert_allclose(got.frame_times, np.asarray(ft)[want], atol=1e-6)
    assert runs["walk"].seeks == 0
    if kind == "sparse":  # far-apart requests: seeking skips much of the video
        assert runs["auto"].seeks > 0 and runs["auto"].decoded < 0.6 * runs["walk"].decoded
        assert runs["seek"].decoded <= runs["auto"].decoded
    if kind == "dense":  # gaps of at most 0.5 s: skipping fewer than SEEK_MIN_SKIP frames never pays
        assert runs["auto"].seeks == 0 and runs["seek"].seeks > 0


def test_seek_matches_walk_on_a_fixture_encoded_video(tmp_path: Path) -> None:
    """The fixture's encoder settings (masra.fixture.render.write_mp4: one keyframe per 250 frames)."""
    path = write_mp4(np.stack([pattern(i) for i in range(600)]), tmp_path / "fx.mp4", fps=30)
    times = np.array([0.5, 9.0, 9.4, 13.0, 19.95])
    walk = sample_frames(path, times, strategy="walk", max_side=32)
    auto = sample_frames(path, times, strategy="auto", max_side=32)
    np.testing.assert_array_equal(auto.pixels, walk.pixels)
    assert auto.pixels.shape == (5, 24, 32, 3)
    # keyframes at frames 0, 250 (8.33 s), 500 (16.67 s): frames 15 -> 250 and 390 -> 500 are skipped
    assert auto.seeks == 2 and auto.decoded < walk.decoded - 200


def test_a_seek_that_lands_late_falls_back_to_walking(videos: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """An index naming a keyframe where there is none: the first frame after the seek is later."""
    path, ft = videos["pframes"]
    real = video_io._index(path)
    assert real is not None
    fake = StreamIndex(real.times, real.key_times + 0.5 / 30, real.key_pts + 17)
    monkeypatch.setattr(video_io, "_index", lambda p: fake)
    times = np.array([0.1, 5.0, 8.0])
    got = sample_frames(path, times, strategy="seek")
    assert index_of(got.pixels) == expected(ft, times)
    assert got.seeks == 0  # the walk that replaced it


@pytest.mark.parametrize(("params", "run"), [(BFRAMES, 1), (BFRAMES_FLAT, 3)])
def test_skip_nonref_error_bound(tmp_path: Path, params: str, run: int) -> None:
    """Picks move to the nearest decoded frame: within (run + 1) / 2 frame intervals of the request."""
    ft = cfr(240)
    path = encode(tmp_path / "b.mp4", ft, params)
    times = np.arange(0.0, 8.0, 0.0123)
    exact = sample_frames(path, times)
    fast = sample_frames(path, times, skip_nonref=True)
    assert fast.decoded < 0.75 * exact.decoded
    decoded = sorted(
        set(index_of(sample_frames(path, np.asarray(ft), skip_nonref=True, strategy="walk").pixels))
    )
    assert max(np.diff(decoded)) - 1 == run  # longest run of skipped (non-reference) frames
    step = max(np.diff(ft))  # millisecond timestamps: gaps of 33 and 34 ms
    assert np.abs(fast.frame_times - times).max() <= (run + 1) / 2 * step + 1e-6
    exact_idx, fast_idx = np.array(index_of(exact.pixels)), np.array(index_of(fast.pixels))
    assert set(fast_idx) <= set(decoded)
    moved = np.abs(fast_idx - exact_idx)
    assert moved.max() == 1 + run // 2  # frames from the exact pick
    assert not moved[np.isin(exact_idx, decoded)].any()  # a decoded exact pick is kept


def test_skip_nonref_changes_nothing_without_b_frames(videos: dict) -> None:
    path, _ = videos["pframes"]
    times = requests("dense", 9.9)
    fast, exact = sample_frames(path, times, skip_nonref=True), sample_frames(path, times)
    np.testing.assert_array_equal(fast.pixels, exact.pixels)


@pytest.mark.parametrize("strategy", ["walk", "auto", "seek"])
def test_tail_tolerance_and_truncation(videos: dict, strategy: str) -> None:
    path, _ = videos["bframes_long_gop"]
    got = sample_frames(path, np.array([5.0, 10.5]), tail_tolerance=1.0, strategy=strategy)
    assert index_of(got.pixels) == [150, 299]
    with pytest.raises(VideoIOError, match=r"truncated: bframes_long_gop\.mp4 ends at 9\.97 s"):
        sample_frames(path, np.array([5.0, 12.0]), tail_tolerance=1.0, strategy=strategy)
    assert index_of(sample_frames(path, np.array([50.0]), strategy=strategy).pixels) == [299]  # no limit


@pytest.mark.parametrize("strategy", ["walk", "auto"])
def test_cut_files(tmp_path: Path, strategy: str) -> None:
    ft = cfr(300)
    # moov at the end: half a file cannot be opened at all
    data = encode(tmp_path / "end.mp4", ft, BFRAMES).read_bytes()
    (tmp_path / "cut_end.mp4").write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoIOError, match=r"cut_end\.mp4"):
        sample_frames(tmp_path / "cut_end.mp4", np.array([1.0, 8.0]), tail_tolerance=1.0, strategy=strategy)
    # moov first: the index promises frames that are not there; the early part still decodes
    data = encode(tmp_path / "start.mp4", ft, BFRAMES, faststart=True).read_bytes()
    cut = tmp_path / "cut_start.mp4"
    cut.write_bytes(data[: len(data) // 2])
    early = sample_frames(cut, np.array([0.5, 1.0]), strategy=strategy)
    assert index_of(early.pixels) == [15, 30]
    with pytest.raises(VideoIOError, match=r"truncated: cut_start\.mp4 ends at|decoding failed in cut_start"):
        sample_frames(cut, np.array([0.5, 9.5]), tail_tolerance=1.0, strategy=strategy)


def test_bad_input(tmp_path: Path, videos: dict) -> None:
    with pytest.raises(VideoIOError, match="video file not found"):
        sample_frames(tmp_path / "none.mp4", np.array([1.0]))
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(VideoIOError, match=r"zero-length file: empty\.mp4"):
        sample_frames(tmp_path / "empty.mp4", np.array([1.0]))
    (tmp_path / "junk.mp4").write_bytes(b"\x00junk" * 200)
    with pytest.raises(VideoIOError, match=r"cannot open junk\.mp4|no video stream in junk\.mp4"):
        sample_frames(tmp_path / "junk.mp4", np.array([1.0]))
    path, _ = videos["pframes"]
    for bad in (np.array([]), np.array([1.0, np.nan])):
        with pytest.raises(ValueError, match="times"):
            sample_frames(path, bad)
    with pytest.raises(ValueError, match="strategy"):
        sample_frames(path, np.array([1.0]), strategy="jump")


def test_index_helpers_and_probes(videos: dict) -> None:
    idx = StreamIndex(np.arange(10) * 0.5, np.array([0.0, 2.0, 4.0]), np.array([0, 4, 8]))
    # 2.1 s: the frame before it is 2.0 s, itself a keyframe; 2.0 s: the frame before is 1.5 s
    assert [idx.seek_point(t) for t in (0.0, 1.9, 2.0, 2.1, 4.2, 99.0)] == [0, 0, 0, 1, 2, 2]
    assert idx.frames_between(0.0, 2.0) == 3 and idx.frames_between(2.0, 2.0) == 0
    path, ft = videos["vfr"]
    decoded = sample_frames(path, np.asarray(ft), strategy="walk").frame_times  # frame.time of each
    np.testing.assert_array_equal(frame_times(path), decoded)  # the index's times, bit for bit
    assert probe_duration(path) == pytest.approx(ft[-1], abs=0.15)
    assert video_io.scaled_size(640, 360, 448) == (448, 252)


FIXTURE_VIDEOS = Path(__file__).resolve().parents[1] / "data" / "generated" / "fixture" / "videos"


@pytest.mark.skipif(not FIXTURE_VIDEOS.is_dir(), reason="no generated fixture (make fixture)")
def test_seek_matches_walk_on_generated_fixture_videos() -> None:
    """The fixture world's own mp4s (4 fps, scene-cut keyframes), when they have been generated."""
    for path in sorted(FIXTURE_VIDEOS.glob("*.mp4"))[:3]:
        end = float(frame_times(path)[-1])
        for times in (np.array([0.3, 0.55, 0.9]) * end, np.arange(0.1, end, 0.7)):
            walk = sample_frames(path, times, strategy="walk")
            for strategy in ("auto", "seek"):
                got = sample_frames(path, times, strategy=strategy)
                np.testing.assert_array_equal(got.pixels, walk.pixels, err_msg=f"{path.name} {strategy}")
                np.testing.assert_array_equal(got.frame_times, walk.frame_times)
