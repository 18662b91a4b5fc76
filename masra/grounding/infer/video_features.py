"""Raw video in: per-clip features for the Grounder, extracted with a transformers CLIP vision model.

One frame per clip (the frame nearest the clip's centre) is decoded with PyAV and embedded with
``CLIPVisionModelWithProjection`` (``image_embeds``, L2-normalised): the CLIP channel of the
standard QVHighlights / Charades-STA / TACoS features, which sample CLIP at one frame per clip.
The default model is the real one, ``openai/clip-vit-base-patch32`` (it must be in the local
Hugging Face cache, or pass a folder).

Feature types of the dataset card other than ``clip`` (SlowFast in the standard cards) have no
extractor here: their channel is filled with zeros and :func:`features_for_card` says so in its
notes. A model trained with SlowFast + CLIP then runs on the CLIP channel only, which costs accuracy;
a model trained on a card with only ``clip`` features runs exactly as trained.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from masra.datasets.card import DatasetCard
from masra.video_io import VideoIOError, frame_times, probe_duration, sample_frames

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_CLIP_MODEL",
    "ClipVisionExtractor",
    "VideoFeatures",
    "features_for_card",
    "sample_clip_frames",
]

DEFAULT_CLIP_MODEL = "openai/clip-vit-base-patch32"
CLIP_TYPE = "clip"


class VideoReadError(VideoIOError):
    """A video that cannot be opened or decoded; the message names the file."""


def sample_clip_frames(path: str | os.PathLike[str], clip_len: float) -> tuple[np.ndarray, float]:
    """The frame nearest each clip centre ``(i + 0.5) * clip_len`` -> ((L, H, W, 3) uint8, duration s).

    ``L = ceil(duration / clip_len)`` (a last partial clip counts); centres past the last frame get
    the last frame. Frames keep the video's size. Sampling is :func:`masra.video_io.sample_frames`
    (nearest timestamp, ties to the later frame; it seeks over stretches no centre needs), so memory
    holds one frame per clip. When the container states no duration, the last frame's time plus
    one frame interval (the median gap between frames) is used.
    """
    path = Path(path)
    label = str(path)
    try:
        duration = probe_duration(path, label)
        if duration <= 0:
            times = frame_times(path, label)
            if len(times) == 0:
                raise VideoIOError(f"no decodable frames in {label}")
            step = float(np.median(np.diff(times))) if len(times) > 1 else clip_len
            duration = float(times[-1]) + step
        centers = (np.arange(max(1, math.ceil(duration / clip_len - 1e-6))) + 0.5) * clip_len
        sampled = sample_frames(path, centers, require_timestamps=False, label=label)
    except VideoIOError as e:
        raise VideoReadError(str(e)) from None
    return sampled.pixels, duration


@dataclass
class ClipVisionExtractor:
    """A CLIP vision tower with its image processor. Build with :meth:`load`."""

    name: str
    model: Any
    processor: Any
    device: torch.device
    dim: int
    batch_size: int = 32

    @classmethod
    def load(
        cls, name_or_path: str = DEFAULT_CLIP_MODEL, device: str = "cpu", batch_size: int = 32
    ) -> ClipVisionExtractor:
        """Load a CLIP model folder or hub name (offline: it must be in the local cache)."""
        from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

        try:
            model: Any = CLIPVisionModelWithProjection.from_pretrained(name_or_path)
            processor = CLIPImageProcessor.from_pretrained(name_or_path)
        except OSError as e:
            raise FileNotFoundError(
                f"CLIP model {name_or_path!r} is not available locally ({e}); download it once with "
                "network access, or pass a model folder (tests use scripts/build_tiny_clip.py)"
            ) from None
        dev = torch.device(device)
        model.to(dev).eval()
        return cls(str(name_or_path), model, processor, dev, int(model.config.projection_dim), batch_size)

    @torch.inference_mode()
    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """(L, H, W, 3) uint8 frames -> (L, dim) float32 L2-normalised image embeddings."""
        out = []
        for s in range(0, len(frames), self.batch_size):
            batch = self.processor(images=list(frames[s : s + self.batch_size]), return_tensors="pt")
            emb = self.model(pixel_values=batch["pixel_values"].to(self.device)).image_embeds.float()
            out.append(torch.nn.functional.normalize(emb, dim=-1).cpu().numpy())
        return np.concatenate(out).astype(np.float32)


@dataclass
class VideoFeatures:
    """Features of one video in the card's layout (per type L2-normalised, concatenated in card order).

    Attributes:
        features: (L, Dv) float32, no temporal-endpoint dims.
        duration: seconds.
        notes: what was approximated (zero-filled feature types), for the user.
    """

    features: np.ndarray
    duration: float
    notes: list[str] = field(default_factory=list)


def features_for_card(
    path: str | os.PathLike[str], card: DatasetCard, extractor: ClipVisionExtractor | None = None
) -> VideoFeatures:
    """Extract a video's features for a model trained on ``card`` (see the module docstring).

    Raises:
        ValueError: the card has no ``clip`` feature type, or its width differs from the extractor's.
    """
    types = {src.name: src for src in card.video_features}
    if CLIP_TYPE not in types:
        raise ValueError(
            f"card {card.name!r} has feature types {sorted(types)}; raw video input needs a {CLIP_TYPE!r} type"
        )
    extractor = extractor or ClipVisionExtractor.load()
    if extractor.dim != types[CLIP_TYPE].dim:
        raise ValueError(
            f"CLIP model {extractor.name!r} gives {extractor.dim}-d embeddings; card {card.name!r} "
            f"expects {types[CLIP_TYPE].dim}-d {CLIP_TYPE!r} features"
        )
    frames, duration = sample_clip_frames(path, card.clip_len)
    clip = extractor(frames)  # (L, dim)
    parts, notes = [], []
    for src in card.video_features:
        if src.name == CLIP_TYPE:
            parts.append(clip)
        else:
            parts.append(np.zeros((len(clip), src.dim), np.float32))
            notes.append(
                f"no extractor for feature type {src.name!r} (e.g. SlowFast weights absent): its channel is "
                "zero-filled; the model runs on the CLIP channel only"
            )
    for note in notes:
        log.warning("%s", note)
    return VideoFeatures(np.concatenate(parts, axis=1), duration, notes)
