"""``clip-vit-b32``: CLIP image embeddings, one frame per clip (the standard CLIP channel of VTG features).

For each clip ``i`` the frame nearest its centre ``(i + 0.5) * clip_len`` is decoded (PyAV through
:mod:`masra.video_io`), preprocessed by the model's ``CLIPImageProcessor`` and embedded by
``CLIPVisionModelWithProjection`` (``image_embeds``, L2-normalised), ``batch_size`` frames per forward
pass. The model loads from a folder or from the local Hugging Face cache (:func:`masra.hub.resolve_model`:
a clear one-line error, never a wait on an unreachable hub). Default ``openai/clip-vit-base-patch32``
(512-d); tests use a tiny random model of the same architecture (``scripts/build_tiny_clip.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from masra.datasets.grid import num_clips as grid_clips
from masra.features.base import clip_times, pick_device, video_duration
from masra.hub import resolve_model
from masra.video_io import sample_frames

__all__ = ["ClipImageExtractor", "load_clip_extractor"]

NAME = "clip-vit-b32"


@dataclass
class ClipImageExtractor:
    """A loaded CLIP vision tower with its image processor. Build with :func:`load_clip_extractor`.

    Attributes:
        model_ref: what it was loaded from.
        model: ``CLIPVisionModelWithProjection`` in eval mode on ``device``.
        processor: its ``CLIPImageProcessor``.
        dim: embedding width (``projection_dim``).
        batch_size: frames per forward pass.
    """

    model_ref: str
    model: Any
    processor: Any
    device: torch.device
    dim: int
    batch_size: int = 64
    name: str = NAME

    @torch.inference_mode()
    def embed(self, frames: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 RGB frames -> (N, dim) float32 L2-normalised image embeddings."""
        out = []
        for s in range(0, len(frames), self.batch_size):
            batch = self.processor(images=list(frames[s : s + self.batch_size]), return_tensors="pt")
            pixels = batch["pixel_values"].to(self.device, dtype=self.model.dtype)  # (B, 3, S, S)
            emb = self.model(pixel_values=pixels).image_embeds.float()  # (B, dim)
            out.append(torch.nn.functional.normalize(emb, dim=-1).cpu().numpy())
        return np.concatenate(out).astype(np.float32, copy=False)

    def extract(self, path: Path, clip_len: float) -> np.ndarray:
        """(L, dim) float32: the embedding of the frame nearest each clip's centre."""
        num_clips = grid_clips(video_duration(path), clip_len)
        times = clip_times(num_clips, clip_len, 1, centred=True).reshape(-1)  # (L,)
        frames = sample_frames(path, times, require_timestamps=False, label=str(path)).pixels
        return self.embed(frames)


def load_clip_extractor(
    model: str | None = None, device: str | None = None, batch_size: int = 64
) -> ClipImageExtractor:
    """Load a CLIP model (folder or cached hub id): a full ``CLIPModel`` checkpoint (as the OpenAI
    releases) or a vision-only ``CLIPVisionModelWithProjection`` one."""
    ref = resolve_model(model or "openai/clip-vit-base-patch32", what=f"CLIP model of extractor {NAME}")
    from transformers import AutoConfig, CLIPImageProcessor, CLIPVisionModelWithProjection
    from transformers.utils import logging as hf_logging

    config = AutoConfig.from_pretrained(ref)
    if config.model_type == "clip":  # a full CLIP checkpoint: its vision tower + the top-level projection
        vision = config.vision_config
        vision.projection_dim = config.projection_dim
        config = vision
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the text tower's weights are unused on purpose: no load report
    try:
        net: Any = CLIPVisionModelWithProjection.from_pretrained(ref, config=config)
    finally:
        hf_logging.set_verbosity(verbosity)
    processor = CLIPImageProcessor.from_pretrained(ref)
    dev = torch.device(pick_device(device))
    net.to(dev).eval()
    return ClipImageExtractor(
        str(model or ref), net, processor, dev, int(net.config.projection_dim), batch_size
    )
