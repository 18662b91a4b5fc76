"""The fixture world's specification: validity, hard distractors, and that position alone fails."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from masra.fixture.language import COLOUR_WORDS, MOTION_WORDS, SHAPE_WORDS, describe, query_sentence
from masra.fixture.world import COLOURS, MOTIONS, SHAPES, VideoSpec, WorldConfig, make_video, make_world

CFG = WorldConfig(seed=3, train_videos=60, val_videos=20)


@pytest.fixture(scope="module")
def world() -> list[VideoSpec]:
    return make_world(CFG, query_sentence)


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="multiple of clip_len"):
        WorldConfig(min_duration=31.0)
    with pytest.raises(ValueError, match="whole number of frames"):
        WorldConfig(fps=3, clip_len=0.5, min_duration=30.0)
    with pytest.raises(ValueError, match="cannot hold"):
        WorldConfig(min_duration=10.0, max_duration=20.0)
    with pytest.raises(ValueError, match="pairs_per_video"):
        WorldConfig(pairs_per_video=0)
    with pytest.raises(ValueError, match="two_window_prob"):
        WorldConfig(two_window_prob=1.5)
    with pytest.raises(ValueError, match="videos"):
        WorldConfig(train_videos=0, val_videos=0)


def test_events_are_valid_and_separated(world: list[VideoSpec]) -> None:
    step = 1.0 / CFG.fps
    for v in world:
        assert CFG.min_duration <= v.duration <= CFG.max_duration
        assert v.num_clips(CFG.clip_len) * CFG.clip_len == v.duration
        for e in v.events:
            assert 0 <= e.start < e.end <= v.duration
            assert e.start / step == round(e.start / step) and e.end / step == round(e.end / step)
            assert e.end - e.start >= CFG.min_event_len - 1e-9
        for a, b in itertools.pairwise(v.events):
            assert b.start - a.end >= CFG.min_gap - 1e-9, v.vid


def test_queries_need_every_attribute(world: list[VideoSpec]) -> None:
    for v in world:
        types = {e.type for e in v.events}
        assert sorted(q.target for q in v.queries) == sorted(types), "one query per distinct event type"
        assert len({q.qid for q in v.queries}) == len(v.queries)
        for q in v.queries:
            assert q.windows == tuple((e.start, e.end) for e in v.events if e.type == q.target)
            # A hard distractor: another event type sharing exactly two of the three attributes.
            hard = [t for t in types if sum(a == b for a, b in zip(t, q.target, strict=True)) == 2]
            assert hard, f"{v.vid} qid {q.qid}: no hard distractor"


def test_window_variety(world: list[VideoSpec]) -> None:
    queries = [q for v in world for q in v.queries]
    n_windows = [len(q.windows) for q in queries]
    assert 0.05 < np.mean([n == 2 for n in n_windows]) < 0.4
    bounds = np.array([t for q in queries for w in q.windows for t in w])
    assert np.mean(bounds % CFG.clip_len != 0) > 0.5, "most window bounds should be off the clip grid"
    lengths = np.array([e - s for q in queries for s, e in q.windows])
    assert lengths.min() < 5.0 and lengths.max() > 10.0


def test_position_alone_fails(world: list[VideoSpec]) -> None:
    """The best fixed window (normalised by duration) reaches a poor mean IoU over all queries."""
    gts = [[(s / v.duration, e / v.duration) for s, e in q.windows] for v in world for q in v.queries]
    best = 0.0
    grid = np.linspace(0, 1, 21)
    for s, e in itertools.combinations(grid, 2):
        ious = [
            max(max(0.0, min(e, ge) - max(s, gs)) / (max(e, ge) - min(s, gs)) for gs, ge in gt) for gt in gts
        ]
        best = max(best, float(np.mean(ious)))
    assert best < 0.2, best


def test_target_position_is_spread(world: list[VideoSpec]) -> None:
    centres = [(s + e) / 2 / v.duration for v in world for q in v.queries for s, e in q.windows[:1]]
    hist, _ = np.histogram(centres, bins=4, range=(0, 1))
    assert hist.min() >= 0.1 * len(centres), hist


def test_sentences_name_the_target(world: list[VideoSpec]) -> None:
    texts = set()
    for v in world:
        for q in v.queries:
            colour, shape, motion = q.target
            t = q.text.lower()
            texts.add(t)
            assert any(w in t for w in COLOUR_WORDS[colour]), t
            assert any(w in t for w in SHAPE_WORDS[shape]), t
            assert any(p in t for pair in MOTION_WORDS[motion] for p in pair), t
    assert len(texts) > 0.8 * sum(len(v.queries) for v in world), "sentences should rarely repeat"
    assert describe(("red", "circle", "left")) == "a red circle moves to the left"
    assert set(COLOUR_WORDS) == set(COLOURS) and set(SHAPE_WORDS) == set(SHAPES)
    assert set(MOTION_WORDS) == set(MOTIONS)


def test_video_does_not_depend_on_world_size() -> None:
    small = make_video(WorldConfig(seed=5, train_videos=3, val_videos=1), "val", 0, query_sentence)
    large = make_video(WorldConfig(seed=5, train_videos=50, val_videos=9), "val", 0, query_sentence)
    other = make_video(WorldConfig(seed=6, train_videos=3, val_videos=1), "val", 0, query_sentence)
    assert small == large
    assert small != other
    assert small.queries[0].qid == 50_000
    pairs_only = make_video(
        WorldConfig(seed=5, train_videos=3, val_videos=1, query_all_types=False), "val", 0, query_sentence
    )
    assert pairs_only.events == small.events
    assert [q.target for q in pairs_only.queries] == [q.target for q in small.queries][0:4:2]
