"""The registry of video feature extractors that dataset cards name (pure Python: no torch import).

A card's video feature type says which extractor made it::

    video_features:
      slowfast: {dir: features/slowfast_features, dim: 2304, extractor: slowfast-r50,
                 model: models/SLOWFAST_8x8_R50.pyth}
      clip: {dir: features/clip_features, dim: 512, extractor: clip-vit-b32}

``model`` is optional (the extractor's default: a Hugging Face id or a weights file); a relative path
is looked up in the current directory, then under the card's ``root``. :func:`load_extractor` imports
the extractor's module only when it is built, so ``masra --help`` stays light. The names and default
widths come from :data:`masra.datasets.extractors.EXTRACTOR_DIMS`, where the card reader checks them
without importing this package.

| name | dim | what |
|---|---|---|
| ``clip-vit-b32`` | 512 | CLIP ViT-B/32 image embedding of the frame at each clip's centre |
| ``slowfast-r50`` | 2304 | SlowFast R50 (Kinetics-400) pooled features of 32 frames spread over each clip |
| ``appearance`` | 16 | the fixture's hand-crafted colour / shape features (docs/fixture.md) |
| ``motion`` | 12 | the fixture's hand-crafted motion features |
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from masra.datasets.extractors import EXTRACTOR_DIMS

if TYPE_CHECKING:
    from masra.features.base import VideoFeatureExtractor

__all__ = ["EXTRACTORS", "ExtractorSpec", "extractor_spec", "load_extractor"]


@dataclass(frozen=True)
class ExtractorSpec:
    """One registered extractor.

    Attributes:
        name: the name cards use (a key of :data:`~masra.datasets.extractors.EXTRACTOR_DIMS`).
        dim: its feature width with the default model (None: it depends on the model), the table's.
        default_model: the model used when the card names none (None: the extractor needs no model).
        builder: ``"module:function"``; the function takes ``model``, ``device`` and ``batch_size``
            keywords and returns a :class:`~masra.features.base.VideoFeatureExtractor`.
        description: one line for help texts.
        weights: ``"hub"`` (a folder or Hugging Face id), ``"file"`` (a local file or folder) or
            ``"none"``; checked before the builder's module (and torch) is imported, so a missing
            model fails at once with a one-line message.
        where: how to get the weights, for that message.
    """

    name: str
    dim: int | None
    default_model: str | None
    builder: str
    description: str
    weights: str = "none"
    where: str = ""


EXTRACTORS: dict[str, ExtractorSpec] = {
    spec.name: spec
    for spec in (
        ExtractorSpec(
            "clip-vit-b32", EXTRACTOR_DIMS["clip-vit-b32"], "openai/clip-vit-base-patch32",
            "masra.features.clip:load_clip_extractor",
            "CLIP ViT-B/32 image embeddings, the frame nearest each clip's centre (transformers)", "hub",
        ),
        ExtractorSpec(
            "slowfast-r50", EXTRACTOR_DIMS["slowfast-r50"], "SLOWFAST_8x8_R50.pyth",
            "masra.features.slowfast:load_slowfast_extractor",
            "SlowFast R50 Kinetics-400, pooled slow + fast pathway features of 32 frames per clip", "file",
            "download https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/SLOWFAST_8x8_R50.pyth "
            "once and give its path as the feature type's `model`",
        ),
        ExtractorSpec(
            "appearance", EXTRACTOR_DIMS["appearance"], None, "masra.features.handcrafted:appearance_extractor",
            "the fixture's hand-crafted appearance features (colour, size, shape)",
        ),
        ExtractorSpec(
            "motion", EXTRACTOR_DIMS["motion"], None, "masra.features.handcrafted:motion_extractor",
            "the fixture's hand-crafted motion features (velocity, growth, frame differences)",
        ),
    )
}  # fmt: skip


def extractor_spec(name: str) -> ExtractorSpec:
    """The spec registered under ``name``; KeyError listing the known names otherwise."""
    if name not in EXTRACTORS:
        raise KeyError(f"unknown feature extractor {name!r}; known: {', '.join(sorted(EXTRACTORS))}")
    return EXTRACTORS[name]


def load_extractor(
    name: str, *, model: str | None = None, device: str | None = None, batch_size: int | None = None
) -> VideoFeatureExtractor:
    """Build the extractor ``name`` (its module is imported now).

    Args:
        model: weights (folder, file or hub id); default ``spec.default_model``.
        device: torch device; default CUDA when available, else CPU.
        batch_size: clips per forward pass; default the extractor's own.
    """
    from masra.hub import ModelUnavailableError, resolve_model

    spec = extractor_spec(name)
    ref = model or spec.default_model
    if ref is not None and spec.weights == "hub":
        ref = resolve_model(ref, what=f"model of extractor {name}")
    elif ref is not None and spec.weights == "file" and not Path(ref).expanduser().exists():
        raise ModelUnavailableError(f"weights of extractor {name} {ref!r} not found: {spec.where}")
    module, _, func = spec.builder.partition(":")
    build = getattr(importlib.import_module(module), func)
    kwargs: dict[str, Any] = {"model": ref, "device": device}
    if batch_size is not None:
        kwargs["batch_size"] = batch_size
    extractor: VideoFeatureExtractor = build(**kwargs)
    return extractor
