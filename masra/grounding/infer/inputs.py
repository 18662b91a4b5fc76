"""What goes into a :class:`~masra.grounding.infer.grounder.Grounder` besides its model.

Clip features from an npz file (:func:`load_feature_npz`, laid out as the feature store lays them
out) and the text encoder that made a card's query features (:func:`default_text_encoder`, for
queries given as text).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from masra.datasets.card import DatasetCard
from masra.datasets.features import check_finite, l2_normalize

__all__ = ["default_text_encoder", "load_feature_npz"]


def default_text_encoder(card: DatasetCard) -> str:
    """The encoder that made a card's query features: the card's ``text_encoder`` key, else by width."""
    named = card.extra.get("text_encoder")
    if named:
        return str(named)
    by_dim = {384: "minilm", 512: "openai/clip-vit-base-patch32"}
    if card.text_features.dim in by_dim:
        return by_dim[card.text_features.dim]
    raise ValueError(
        f"card {card.name!r}: cannot tell which text encoder made its {card.text_features.dim}-d query "
        "features; pass text_encoder= (a TextEncoder or a model name)"
    )


def load_feature_npz(path: str | os.PathLike[str], card: DatasetCard | None = None) -> np.ndarray:
    """(L, Dv) float32 clip features from one npz file, laid out as the feature store lays them out.

    The file holds either one array per feature type named as in the card (``slowfast``, ``clip``,
    ...: each L2-normalised per clip, cut to the shortest, concatenated in card order) or a single
    ``features`` array already in that layout (used as is). NaN or Inf is a ValueError naming the file.
    """
    path = Path(path)
    with np.load(path, allow_pickle=False) as z:
        keys = list(z.keys())
        if card is not None and all(src.name in keys for src in card.video_features):
            parts = [l2_normalize(np.asarray(z[src.name], np.float32)) for src in card.video_features]
            n = min(p.shape[0] for p in parts)
            for src, part in zip(card.video_features, parts, strict=True):
                check_finite(part, path, f"array {src.name!r}")
            return np.ascontiguousarray(np.concatenate([p[:n] for p in parts], axis=1), dtype=np.float32)
        if "features" in keys:
            feats = np.asarray(z["features"], dtype=np.float32)
            check_finite(feats, path, "array 'features'")
            return feats
    wanted = [s.name for s in card.video_features] if card is not None else []
    raise ValueError(f"{path}: expected arrays {wanted or ''} or 'features'; the file has {keys}")
