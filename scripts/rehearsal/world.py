"""The rehearsal's synthetic world: features, query features, small videos and the rehearsal card.

Video features have the real releases' clip length (the card's ``clip_len``) and a clip count per
video drawn (by a hash of the seed and the vid) from ``floor``, ``round`` (half up) and ``ceil`` of
``duration / clip_len``, and for one video in eight one clip more or fewer, as extractors of the
public releases add or drop a clip. Widths are small by default (the fixture's hand-crafted
``appearance`` 16 + ``motion`` 12, whose extractors run on the videos written here, and 384-d query
features of MiniLM's width, so raw-text queries go through MiniLM); ``--real-widths`` writes SlowFast
2304 + CLIP 512 video features and CLIP 512 query token features. The values are random: the
rehearsal checks that every step runs and counts what each cuts or refits, not what the model learns.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from masra.datasets.card import find_card, load_card
from masra.datasets.features import text_path, video_path
from masra.datasets.grid import kept_clips
from masra.fixture.render import write_mp4

from .sources import Source, Video, stable_hash

VIDEO_FPS = 4  # the hand-crafted extractors sample 4 frames per second
VIDEO_SIZE = 64  # square frames (the hand-crafted extractors need them); Qwen2.5-VL's processor takes 64x64


@dataclass(frozen=True)
class Widths:
    """Feature types written: ``video`` is ``(type, dim, extractor)`` in card order; ``text`` the query
    feature width and ``text_encoder`` the card's encoder for raw-text queries (None: the card names
    none, so masra picks its default for that width)."""

    video: tuple[tuple[str, int, str], ...]
    text: int
    text_encoder: str | None
    name: str


REDUCED = Widths((("appearance", 16, "appearance"), ("motion", 12, "motion")), 384, "minilm", "reduced")
REAL = Widths((("slowfast", 2304, "slowfast-r50"), ("clip", 512, "clip-vit-b32")), 512, None, "real")


def prior_clips(duration: float, clip_len: float, max_clips: int) -> int:
    """The clips stage 1 writes priors for: masra's own rule (:func:`masra.datasets.grid.kept_clips`)."""
    return kept_clips(duration, clip_len, max_clips)


def feature_clips(vid: str, duration: float, clip_len: float, seed: int) -> tuple[int, str]:
    """(clips, how): the synthetic release's clip count for a video and which rule gave it."""
    x = duration / clip_len
    h = stable_hash(f"{seed}:{vid}")
    rules = {"floor": math.floor(x + 1e-6), "round": math.floor(x + 0.5), "ceil": math.ceil(x - 1e-6)}
    how = ("floor", "round", "ceil")[h % 3]
    n = rules[how]
    drift = (h // 3) % 16
    if drift == 0:
        n, how = n + 1, f"{how}+1"
    elif drift == 1:
        n, how = n - 1, f"{how}-1"
    return max(1, n), how


@dataclass
class World:
    """What :func:`build_world` wrote: the card, the clip counts and the sampled videos."""

    out: Path
    card_path: Path
    widths: Widths
    clips: dict[str, int]
    rules: Counter[str]
    videos: dict[str, Path]
    text_files: int

    def summary(self, source: Source, max_clips: int) -> dict[str, Any]:
        vids = source.videos()
        grid = {v: prior_clips(vids[v].duration, source.card.clip_len, max_clips) for v in self.clips}
        return {
            "videos": len(self.clips),
            "queries": sum(len(q) for q in source.queries.values()),
            "text_feature_files": self.text_files,
            "clip_count_rules": dict(sorted(self.rules.items())),
            "videos_whose_features_differ_from_the_prior_grid": sum(
                self.clips[v] != grid[v] for v in self.clips
            ),
            "videos_over_max_clips": sum(n > max_clips for n in self.clips.values()),
            "video_files": len(self.videos),
            "widths": self.widths.name,
        }


def _rng(seed: int, key: str) -> np.random.Generator:
    return np.random.default_rng(stable_hash(f"{seed}:{key}"))


def write_features(
    source: Source, out: Path, widths: Widths, seed: int
) -> tuple[dict[str, int], Counter[str]]:
    """``features/<type>/<vid>.npz`` for every video; returns the clip counts and the rule counts."""
    clip_len = source.card.clip_len
    clips: dict[str, int] = {}
    rules: Counter[str] = Counter()
    for t, _, _ in widths.video:
        (out / "features" / t).mkdir(parents=True, exist_ok=True)
    for v in sorted(source.videos().values(), key=lambda v: v.vid):
        n, how = feature_clips(v.vid, v.duration, clip_len, seed)
        clips[v.vid], rules[how] = n, rules[how] + 1
        rng = _rng(seed, v.vid)
        for t, dim, _ in widths.video:
            x = rng.standard_normal((n, dim), dtype=np.float32)  # (L, dim)
            _save(out / "features" / t / f"{v.vid}.npz", features=x)
    return clips, rules


def write_text_features(source: Source, out: Path, widths: Widths, seed: int) -> int:
    """``features/text/qid<qid>.npz`` (``last_hidden_state`` (T, D), ``pooler_output`` (D,)) per query."""
    folder = out / "features" / "text"
    folder.mkdir(parents=True, exist_ok=True)
    n = 0
    for qs in source.queries.values():
        for q in qs:
            rng = _rng(seed, f"qid{q.qid}")
            tokens = min(32, len(q.query.split()) + 2)
            hidden = rng.standard_normal((tokens, widths.text), dtype=np.float32)  # (T, D)
            pooled = hidden.mean(0)
            _save(
                folder / f"qid{q.qid}.npz",
                last_hidden_state=hidden,
                pooler_output=pooled / np.linalg.norm(pooled),
            )
            n += 1
    return n


def _save(path: Path, **arrays: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez(tmp, **arrays)  # type: ignore[arg-type]  # numpy stubs: **kwargs vs allow_pickle
    os.replace(tmp, path)


def render_video(v: Video, path: Path, seed: int) -> Path:
    """A ``duration``-second 64x64 mp4 at 4 fps: a gradient and a square that moves and changes colour
    every few seconds (the hand-crafted extractors and the MLLM's frame sampler both read it)."""
    rng = _rng(seed, f"video:{v.vid}")
    n = max(1, round(v.duration * VIDEO_FPS))
    y = np.linspace(0, 1, VIDEO_SIZE, dtype=np.float32)[:, None, None]  # (S, 1, 1)
    top, bottom = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    bg = np.broadcast_to(top * (1 - y) + bottom * y, (VIDEO_SIZE, VIDEO_SIZE, 3)).astype(np.uint8)
    frames = np.repeat(bg[None], n, axis=0)  # (N, S, S, 3)
    seg = 6 * VIDEO_FPS  # a new colour and path every 6 s
    for s0 in range(0, n, seg):
        colour = rng.integers(0, 256, 3, dtype=np.uint8)
        x0, y0, x1, y1 = rng.uniform(8, VIDEO_SIZE - 16, 4)
        for f in range(s0, min(n, s0 + seg)):
            p = (f - s0) / seg
            cx, cy = int(x0 + p * (x1 - x0)), int(y0 + p * (y1 - y0))
            frames[f, cy : cy + 12, cx : cx + 12] = colour
    return write_mp4(frames, path, VIDEO_FPS)


def card_yaml(
    source: Source,
    out: Path,
    widths: Widths,
    tiny_model: Path,
    models: dict[str, str] | None = None,
    text_encoder: str | None = None,
) -> dict[str, Any]:
    """The rehearsal card: the shipped card's format, clip length, max_clips and annotation files, with
    ``root`` the rehearsal folder and the features, videos and priors written there. ``models`` gives
    feature types' extractor weights (``model``), ``text_encoder`` the encoder of raw-text queries."""
    with open(find_card(source.dataset), encoding="utf-8") as f:
        raw: dict[str, Any] = yaml.safe_load(f)
    card = source.card
    raw["root"] = str(out.resolve())
    raw["annotations"] = {s: str(card.annotation_path(s).resolve()) for s in source.queries}
    if card.durations is not None:
        raw["durations"] = str(card.durations.resolve())
    raw["video_features"] = {
        t: {"dir": f"features/{t}", "dim": dim, "extractor": ext} for t, dim, ext in widths.video
    }
    for t, model in (models or {}).items():
        if t not in raw["video_features"]:
            raise ValueError(f"--extractor-model {t}=...: the card has no feature type {t!r}")
        raw["video_features"][t]["model"] = model
    raw["text_features"] = {"dir": "features/text", "key": "last_hidden_state", "dim": widths.text}
    raw.pop("text_encoder", None)
    if text_encoder or widths.text_encoder:
        raw["text_encoder"] = text_encoder or widths.text_encoder
    raw["video_dir"], raw["prior_dir"] = "videos", "priors"
    # Stage 1 with the tiny random Qwen2.5-VL and the fixture card's small budgets (it never stops early).
    raw["priors"] = {
        "model": str(tiny_model.resolve()),
        "backend": "transformers",
        "splits": ["train"],
        "event_max_tokens": 32,
        "caption_max_tokens": 8,
        "batch_size": 32,
        "max_frames": 8,
        "batch_videos": 4,
        "encoder": "minilm",
    }
    return raw


def build_world(
    source: Source,
    out: Path,
    *,
    widths: Widths,
    sampled: list[str],
    tiny_model: Path,
    seed: int,
    models: dict[str, str] | None = None,
    text_encoder: str | None = None,
) -> World:
    """Write everything under ``out``; ``sampled`` are the vids that get a video file."""
    out.mkdir(parents=True, exist_ok=True)
    clips, rules = write_features(source, out, widths, seed)
    n_text = write_text_features(source, out, widths, seed)
    vids = source.videos()
    videos = {v: render_video(vids[v], out / "videos" / f"{v}.mp4", seed) for v in sampled}
    raw = card_yaml(source, out, widths, tiny_model, models, text_encoder)
    # Named like the shipped card, so `masra train` finds the shipped training config (configs/<name>.yaml).
    card_path = out / f"{source.dataset}.yaml"
    header = (
        f"# Rehearsal card of {source.dataset} (python -m scripts.rehearsal): the shipped card's format,\n"
        f"# clip_len, max_clips and annotation files; synthetic {widths.name}-width features, videos and\n"
        "# priors under root.\n"
    )
    card_path.write_text(header + yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    card = load_card(card_path)  # validated: extractors registered, widths match
    assert all(video_path(s, v).is_file() for s in card.video_features for v in clips)
    assert text_path(card, next(iter(source.queries.values()))[0].qid).is_file()
    return World(out, card_path, widths, clips, rules, videos, n_text)
