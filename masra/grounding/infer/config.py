"""What a :class:`~masra.grounding.infer.grounder.Grounder` needs besides its model.

Its config (:class:`GrounderConfig`), its result (:class:`Grounding`), the window plan of a long
video (:func:`window_starts`), the card and text encoder a checkpoint was trained with, and clip
features from an npz file (:func:`load_feature_npz`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from masra.datasets.card import DatasetCard, load_card
from masra.datasets.features import check_finite, l2_normalize
from masra.grounding.infer.decode import saliency_row_length
from masra.grounding.submission import Prediction

__all__ = [
    "GrounderConfig",
    "Grounding",
    "checkpoint_card",
    "default_text_encoder",
    "load_feature_npz",
    "window_starts",
]


@dataclass(frozen=True)
class GrounderConfig:
    """How a :class:`Grounder` feeds the model and post-processes its output.

    Attributes:
        clip_len: seconds per clip.
        max_clips: clips per model pass (the trained maximum); longer videos are windowed.
        video_dim: width of the input clip features, temporal-endpoint dims excluded.
        text_dim: width of the query token features.
        temporal_endpoint: append the 2 temporal-endpoint dims per window.
        max_text_len: query tokens kept.
        top_k: windows returned per query.
        snap: round window ends outward to clip boundaries.
        nms_iou: temporal NMS of a single-pass prediction (None = off, as at training time).
        window_stride: clips between window starts for long videos (default ``max_clips // 2``).
        merge_nms_iou: NMS threshold that merges the windows' candidates of a long video.
        off_core_weight: score factor of a long video's candidates centred outside their window's core.
        saliency_rescore: weight a long video's candidates by the video-level saliency they cover.
        saliency_weight: single-pass videos: blend each window's score with the saliency over it
            (:func:`~masra.grounding.infer.decode.saliency_rescore`; the checkpoint's
            ``postprocess.saliency_weight``, so predictions match the trainer's; 0 = off).
        proposals: the saliency curve's high runs join the decoder's windows and all are ranked by
            saliency contrast (:func:`~masra.grounding.infer.decode.saliency_proposals`; the
            checkpoint's ``postprocess.proposals``); replaces both re-scorings above.
        batch_size: (query, window) pairs per forward pass.
    """

    clip_len: float
    max_clips: int
    video_dim: int
    text_dim: int
    temporal_endpoint: bool = True
    max_text_len: int = 32
    top_k: int = 10
    snap: bool = False
    nms_iou: float | None = None
    window_stride: int | None = None
    merge_nms_iou: float = 0.7
    off_core_weight: float = 0.5
    saliency_rescore: bool = True
    saliency_weight: float = 0.0
    proposals: bool = False
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.clip_len <= 0:
            raise ValueError(f"clip_len must be > 0, got {self.clip_len}")
        for name in ("max_clips", "video_dim", "text_dim", "max_text_len", "top_k", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.window_stride is not None and not 1 <= self.window_stride <= self.max_clips:
            raise ValueError(
                f"window_stride must be in [1, max_clips={self.max_clips}], got {self.window_stride}"
            )
        if not 0.0 <= self.saliency_weight <= 1.0:
            raise ValueError(f"saliency_weight must be in [0, 1], got {self.saliency_weight}")
        if not 0.0 <= self.off_core_weight <= 1.0:
            raise ValueError(f"off_core_weight must be in [0, 1], got {self.off_core_weight}")
        for name in ("nms_iou", "merge_nms_iou"):
            value = getattr(self, name)
            if value is not None and not 0.0 < value <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {value}")

    @property
    def stride(self) -> int:
        return self.window_stride or max(1, self.max_clips // 2)


@dataclass
class Grounding:
    """The prediction for one query.

    Attributes:
        windows: ``[[start_s, end_s, score], ...]`` best first (at most ``top_k``).
        saliency: (L,) float per-clip saliency (model logits; higher = more relevant).
        query: the query text, when given as text.
        num_windows: model passes the video took (1 unless longer than ``max_clips``).
    """

    windows: list[list[float]]
    saliency: np.ndarray
    query: str | None = None
    num_windows: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def to_prediction(self, qid: int | str, vid: str | None, duration: float, clip_len: float) -> Prediction:
        """A submission row; saliency cut to the clips that start inside the video."""
        n_sal = saliency_row_length(len(self.saliency), duration, clip_len)
        return Prediction(
            qid=qid,
            windows=tuple((float(s), float(e), float(c)) for s, e, c in self.windows),
            saliency=tuple(round(float(x), 5) for x in self.saliency[:n_sal]),
            vid=vid,
            query=self.query,
        )


def window_starts(num_clips: int, max_clips: int, stride: int) -> list[int]:
    """Start clips of the windows covering ``num_clips`` clips; the last window ends at the video end.

    Example:
        >>> window_starts(10, 4, 2)
        [0, 2, 4, 6]
        >>> window_starts(3, 4, 2)
        [0]
    """
    if num_clips <= max_clips:
        return [0]
    starts = list(range(0, num_clips - max_clips + 1, stride))
    if starts[-1] != num_clips - max_clips:
        starts.append(num_clips - max_clips)
    return starts


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


def checkpoint_card(config: dict[str, Any], overrides: dict[str, Any] | None = None) -> DatasetCard:
    """The dataset card a checkpoint was trained with (its training card overrides applied).

    Tries the training config's ``dataset`` (a name or the card path given to ``masra train``), then
    the card name recorded beside it.
    """
    train = config.get("train") or {}
    over = {**(train.get("card") or {}), **(overrides or {})}
    names = [n for n in (train.get("dataset"), config.get("dataset")) if n]
    if not names:
        raise ValueError("the checkpoint config names no dataset; pass the card explicitly")
    for name in names[:-1]:
        try:
            return load_card(name, over)
        except FileNotFoundError:
            continue
    return load_card(names[-1], over)


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
