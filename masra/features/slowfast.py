"""``slowfast-r50``: SlowFast R50 (Kinetics-400) clip features, 2,304-d (the public VTG "SlowFast" channel).

Per clip of ``clip_len`` seconds, ``frames`` (32) frames are sampled at the centres of equal parts of the
clip (nearest frame, :mod:`masra.video_io`, decoded at most ``batch_size`` clips at a time so memory
stays bounded for long videos), resized so the short side is ``crop_size`` (224), centre-cropped,
scaled to [0, 1] and normalised (mean 0.45, std 0.225); the slow pathway takes every 4th frame. The
feature is the concatenated global-average-pooled output of both pathways
(:class:`masra.features.slowfast_net.SlowFast`).

Weights (never downloaded here):

- a ``.pyth`` / ``.pt`` / ``.pth`` file holding PyTorchVideo's model-zoo state dict (``model_state``):
  ``SLOWFAST_8x8_R50.pyth`` from ``https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/``;
  the architecture is the default :class:`SlowFastConfig`;
- a folder with ``config.json`` (:class:`SlowFastConfig` fields) and ``model.safetensors`` (the
  tests store their tiny stand-ins so), or a folder holding one ``.pyth`` file.

The public QVHighlights / Charades-STA / TACoS SlowFast features were made with the SlowFast
repository's Caffe2 checkpoint and its own frame pipeline; these features follow the same recipe
but are not bit-identical to them, so train and predict with features from one extractor.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from masra.datasets.grid import num_clips as grid_clips
from masra.features.base import clip_times, pick_device, video_duration
from masra.features.slowfast_net import SlowFast, SlowFastConfig
from masra.hub import ModelUnavailableError
from masra.video_io import sample_frames, scaled_size

__all__ = ["SlowFastExtractor", "load_slowfast", "load_slowfast_extractor"]

NAME = "slowfast-r50"
WEIGHTS_URL = "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/SLOWFAST_8x8_R50.pyth"
STATE_FILE_SUFFIXES = (".pyth", ".pt", ".pth")


def _state_file(path: Path) -> dict[str, torch.Tensor]:
    """A checkpoint file's state dict: ``model_state`` (PyTorchVideo) or the whole dict; no ``module.``."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    state = ckpt.get("model_state", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a SlowFast state dict (expected a dict with 'model_state')")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_slowfast(ref: str | os.PathLike[str]) -> SlowFast:
    """A :class:`SlowFast` in eval mode from a weights file or folder (see the module doc)."""
    path = Path(ref).expanduser()
    if not path.exists():
        raise ModelUnavailableError(
            f"SlowFast weights of extractor {NAME} {str(ref)!r} not found: download {WEIGHTS_URL} once and "
            "give its path as the feature type's `model` (e.g. --set video_features.slowfast.model=PATH)"
        )
    if path.is_dir() and (path / "config.json").is_file():
        from safetensors.torch import load_file

        raw = json.loads((path / "config.json").read_text(encoding="utf-8"))
        known = {f.name for f in fields(SlowFastConfig)}
        kwargs: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in raw.items() if k in known
        }
        config = SlowFastConfig(**kwargs)
        net, state = SlowFast(config), load_file(str(path / "model.safetensors"))
    else:
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix in STATE_FILE_SUFFIXES)
            if len(files) != 1:
                raise ModelUnavailableError(
                    f"{path}: expected config.json + model.safetensors or one {'/'.join(STATE_FILE_SUFFIXES)} "
                    f"file, found {[p.name for p in files] or 'neither'}"
                )
            path = files[0]
        net, state = SlowFast(), _state_file(path)
    net.load_state_dict(state, strict=True)
    return net.eval()


@dataclass
class SlowFastExtractor:
    """A loaded SlowFast network that turns videos into (L, dim) clip features."""

    model_ref: str
    net: SlowFast
    device: torch.device
    batch_size: int = 8
    name: str = NAME

    @property
    def dim(self) -> int:
        return self.net.config.dim

    def preprocess(self, frames: np.ndarray) -> torch.Tensor:
        """(N * T, H, W, 3) uint8 -> (N, 3, T, S, S) float normalised clips on the device (T = config.frames)."""
        cfg = self.net.config
        x = torch.from_numpy(frames).to(self.device).permute(0, 3, 1, 2).float() / 255.0  # (N*T, 3, H, W)
        h, w = x.shape[-2:]
        scale = cfg.crop_size / min(h, w)
        size = (max(cfg.crop_size, round(h * scale)), max(cfg.crop_size, round(w * scale)))
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        top, left = (size[0] - cfg.crop_size) // 2, (size[1] - cfg.crop_size) // 2
        x = x[..., top : top + cfg.crop_size, left : left + cfg.crop_size]  # (N*T, 3, S, S)
        mean = torch.tensor(cfg.mean, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(cfg.std, device=self.device).view(1, 3, 1, 1)
        x = (x - mean) / std
        return x.view(-1, cfg.frames, 3, cfg.crop_size, cfg.crop_size).permute(0, 2, 1, 3, 4)

    @torch.inference_mode()
    def extract(self, path: Path, clip_len: float) -> np.ndarray:
        """(L, dim) float32, ``L = ceil(duration / clip_len)``; ``batch_size`` clips per decode and forward."""
        cfg = self.net.config
        num_clips = grid_clips(video_duration(path), clip_len)
        times = clip_times(num_clips, clip_len, cfg.frames, centred=True)  # (L, T) seconds
        max_side = _decode_side(path, cfg.crop_size)
        out = []
        for s in range(0, num_clips, self.batch_size):
            chunk = times[s : s + self.batch_size].reshape(-1)
            frames = sample_frames(path, chunk, max_side=max_side, require_timestamps=False, label=str(path))
            out.append(self.net.features(self.preprocess(frames.pixels)).float().cpu().numpy())
        return np.concatenate(out).astype(np.float32, copy=False)


def _decode_side(path: Path, short_side: int) -> int | None:
    """Longer side at which to decode so the short side stays >= ``short_side`` (None: keep the size)."""
    import av

    try:
        with av.open(str(path)) as container:
            ctx = container.streams.video[0].codec_context
            width, height = int(ctx.width or 0), int(ctx.height or 0)
    except (av.error.FFmpegError, OSError, IndexError):
        return None  # sample_frames reports the problem with the file
    if min(width, height) <= short_side:
        return None
    long_side = round(max(width, height) * short_side / min(width, height)) + 2
    return max(scaled_size(width, height, long_side))


def load_slowfast_extractor(
    model: str | None = None, device: str | None = None, batch_size: int = 8
) -> SlowFastExtractor:
    """The registry's builder for ``slowfast-r50``: weights from ``model`` (file or folder), on ``device``."""
    ref = model or "SLOWFAST_8x8_R50.pyth"
    dev = torch.device(pick_device(device))
    net = load_slowfast(ref).to(dev)
    return SlowFastExtractor(str(ref), net, dev, batch_size)
