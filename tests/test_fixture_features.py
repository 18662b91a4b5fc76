"""Rendering, mp4 round trip and the hand-crafted extractor of the fixture world."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from masra.features.handcrafted_frames import APPEARANCE_DIM, HUE_BINS, MOTION_DIM, extract
from masra.fixture.language import query_sentence
from masra.fixture.render import read_mp4, render_frames, shape_mask, write_mp4
from masra.fixture.world import Event, VideoSpec, WorldConfig, make_world

FPS, SIZE, CLIP = 4, 64, 2.0


def _video(*events: Event, duration: float = 24.0) -> VideoSpec:
    return VideoSpec("t", "train", duration, (50, 55, 60), (70, 70, 75), tuple(events), ())


def _event(
    shape: str, motion: str, start: float, end: float, rgb: tuple[int, int, int] = (225, 40, 40)
) -> Event:
    x0, x1, y0, y1, r0, r1 = 32.0, 32.0, 32.0, 32.0, 6.0, 6.0
    if motion == "left":
        x0, x1 = 50.0, 14.0
    elif motion == "right":
        x0, x1 = 14.0, 50.0
    elif motion == "up":
        y0, y1 = 50.0, 14.0
    elif motion == "grow":
        r0, r1 = 3.0, 12.0
    return Event("red", shape, motion, start, end, x0, y0, x1, y1, r0, r1, rgb)


def _through_mp4(spec: VideoSpec, tmp_path: Path) -> dict[str, np.ndarray]:
    frames = render_frames(spec, FPS, SIZE)
    decoded = read_mp4(write_mp4(frames, tmp_path / "v.mp4", FPS))
    assert decoded.shape == frames.shape
    assert np.abs(decoded.astype(int) - frames).mean() < 3.0
    return extract(decoded, FPS, CLIP)


def test_shape_masks_have_the_documented_geometry() -> None:
    r = 10.0
    circle, square, triangle = (shape_mask(s, 32, 32, r, SIZE) for s in ("circle", "square", "triangle"))
    assert abs(circle.sum() - np.pi * r * r) < 0.05 * np.pi * r * r
    assert abs(square.sum() - (2 * 0.886 * r) ** 2) < 0.1 * square.sum()
    assert abs(triangle.sum() - 0.5 * 2.4 * r * 2.2 * r) < 0.1 * triangle.sum()
    rows = np.flatnonzero(triangle.any(axis=1))
    assert triangle[rows[0]].sum() < triangle[rows[-1]].sum(), "the triangle points up"
    with pytest.raises(ValueError, match="unknown shape"):
        shape_mask("hexagon", 32, 32, r, SIZE)


def test_extractor_reads_colour_shape_and_motion(tmp_path: Path) -> None:
    spec = _video(
        _event("square", "left", 2.0, 8.0),
        _event("triangle", "right", 10.0, 16.0, rgb=(60, 90, 235)),
        _event("circle", "grow", 18.0, 24.0, rgb=(238, 238, 238)),
    )
    f = _through_mp4(spec, tmp_path)
    app, mot = f["appearance"], f["motion"]
    assert app.shape == (12, APPEARANCE_DIM) and mot.shape == (12, MOTION_DIM) and app.dtype == np.float32
    # An empty clip: no object, so only the frame-difference terms (codec noise) may be non-zero.
    assert not app[0].any() and not mot[0, [0, 1, 2, 3, 6, 7, 8, 9, 10, 11]].any()
    assert mot[0, 4:6].max() < 0.02
    left, right, grow = slice(1, 4), slice(5, 8), slice(9, 12)
    assert (mot[left, 0] < -0.1).all() and (mot[right, 0] > 0.1).all()
    assert np.abs(mot[grow, 0:2]).max() < 0.05 and (mot[grow, 3] > 0.1).all()
    assert np.abs(mot[left, 3]).max() < 0.1
    # Hue bins are centred on k * 45 degrees: red is bin 0, blue bin 5; white is achromatic.
    assert app[left, 0].min() > 0.8 and app[right, 5].min() > 0.8 and app[grow, HUE_BINS].min() > 0.8
    # Fill ratio: square ~1, triangle ~0.5; the triangle's mass lies low in its box.
    assert app[left, 13].min() > 0.85 and app[right, 13].max() < 0.65
    assert app[right, 14].min() > 0.05 and np.abs(app[left, 14]).max() < 0.05
    np.testing.assert_allclose(app[1:4, 15], 1.0)


# Hue bin -> colour for the world's palette (bins centred on k * 45 degrees; 8 = achromatic).
HUE_COLOUR = {0: "red", 1: "yellow", 3: "green", 5: "blue", 6: "purple", HUE_BINS: "white"}


def _rule_type(app: np.ndarray, mot: np.ndarray) -> tuple[str, str, str] | None:
    """Read (colour, shape, motion) of one clip from its features with fixed rules."""
    if app[15] < 0.5:
        return None
    colour = HUE_COLOUR.get(int(np.argmax(app[: HUE_BINS + 1])), "?")
    shape = "square" if app[13] > 0.9 else ("circle" if app[13] > 0.68 else "triangle")
    vx, vy, rate = mot[0], mot[1], mot[3]
    if abs(rate) > 2 * max(abs(vx), abs(vy)):
        motion = "grow" if rate > 0 else "shrink"
    elif abs(vx) > abs(vy):
        motion = "left" if vx < 0 else "right"
    else:
        motion = "up" if vy < 0 else "down"
    return (colour, shape, motion)


def test_features_carry_colour_shape_and_motion(tmp_path: Path) -> None:
    """Fixed rules on the features read every attribute of clips inside events, and grounding each
    query on the longest run of clips of its target type finds the moment."""
    world = make_world(WorldConfig(seed=2, train_videos=8, val_videos=0), query_sentence)
    correct, clips, ious = np.zeros(3), 0, []
    for spec in world:
        f = _through_mp4(spec, tmp_path)
        types = [_rule_type(a, m) for a, m in zip(f["appearance"], f["motion"], strict=True)]
        for e in spec.events:
            for i in range(int(np.ceil(e.start / CLIP)), int(e.end // CLIP)):  # clips inside the event
                t = types[i]
                assert t is not None
                correct += [x == y for x, y in zip(t, e.type, strict=True)]
                clips += 1
        for q in spec.queries:
            runs: list[list[int]] = []
            for i, t in enumerate(types):
                if t == q.target:
                    if runs and runs[-1][-1] == i - 1:
                        runs[-1].append(i)
                    else:
                        runs.append([i])
            if not runs:
                ious.append(0.0)
                continue
            run = max(runs, key=len)
            ps, pe = run[0] * CLIP, (run[-1] + 1) * CLIP
            ious.append(
                max(max(0.0, min(pe, ge) - max(ps, gs)) / (max(pe, ge) - min(ps, gs)) for gs, ge in q.windows)
            )
    assert clips > 50
    assert (correct / clips > 0.95).all(), correct / clips
    assert np.mean(np.array(ious) >= 0.5) > 0.8, ious


def test_mp4_bytes_are_deterministic(tmp_path: Path) -> None:
    spec = _video(_event("circle", "up", 1.0, 5.0), duration=8.0)
    frames = render_frames(spec, FPS, SIZE)
    a = write_mp4(frames, tmp_path / "a.mp4", FPS).read_bytes()
    b = write_mp4(frames, tmp_path / "b.mp4", FPS).read_bytes()
    assert a == b
    frames[10, 0, 0] = 255
    assert write_mp4(frames, tmp_path / "c.mp4", FPS).read_bytes() != a


def test_extract_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="whole number"):
        extract(np.zeros((8, 64, 64, 3), np.uint8), fps=3, clip_len=0.5)
    with pytest.raises(ValueError, match=r"\(N, S, S, 3\)"):
        extract(np.zeros((8, 64, 32, 3), np.uint8), fps=4, clip_len=2.0)
