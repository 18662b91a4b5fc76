"""How a :class:`~masra.grounding.infer.grounder.Grounder` feeds its model and merges long videos.

:class:`GrounderConfig` holds the input geometry (clip length, trained clip count, feature widths),
the long-video settings and the :class:`~masra.grounding.config.PostprocessConfig` that turns one
pass's outputs into ranked windows: the post-processing fields are that class's, declared once.
:meth:`GrounderConfig.for_checkpoint` builds it from a read checkpoint and its card.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from masra.grounding.config import PostprocessConfig

if TYPE_CHECKING:
    from masra.datasets.card import DatasetCard
    from masra.grounding.checkpoint import Checkpoint

__all__ = ["GrounderConfig"]


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
        postprocess: one pass's outputs to ranked windows (``top_k``, ``snap``, ``nms_iou``,
            ``saliency_weight``, ``proposals``; the checkpoint's, so predictions match the trainer's).
        window_stride: clips between window starts for long videos (default ``max_clips // 2``).
        merge_nms_iou: NMS threshold that merges the windows' candidates of a long video.
        off_core_weight: score factor of a long video's candidates centred outside their window's core.
        saliency_rescore: weight a long video's candidates by the video-level saliency they cover
            (unused with ``postprocess.proposals``, which ranks them by saliency contrast).
        batch_size: (query, window) pairs per forward pass.
    """

    clip_len: float
    max_clips: int
    video_dim: int
    text_dim: int
    temporal_endpoint: bool = True
    max_text_len: int = 32
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    window_stride: int | None = None
    merge_nms_iou: float = 0.7
    off_core_weight: float = 0.5
    saliency_rescore: bool = True
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.clip_len <= 0:
            raise ValueError(f"clip_len must be > 0, got {self.clip_len}")
        for name in ("max_clips", "video_dim", "text_dim", "max_text_len", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not isinstance(self.postprocess, PostprocessConfig):
            raise TypeError(f"postprocess must be a PostprocessConfig, got {type(self.postprocess).__name__}")
        if self.window_stride is not None and not 1 <= self.window_stride <= self.max_clips:
            raise ValueError(
                f"window_stride must be in [1, max_clips={self.max_clips}], got {self.window_stride}"
            )
        if not 0.0 <= self.off_core_weight <= 1.0:
            raise ValueError(f"off_core_weight must be in [0, 1], got {self.off_core_weight}")
        if not 0.0 < self.merge_nms_iou <= 1.0:
            raise ValueError(f"merge_nms_iou must be in (0, 1], got {self.merge_nms_iou}")

    @property
    def stride(self) -> int:
        """Clips between window starts of a long video."""
        return self.window_stride or max(1, self.max_clips // 2)

    @classmethod
    def for_checkpoint(cls, checkpoint: Checkpoint, card: DatasetCard) -> GrounderConfig:
        """The settings a checkpoint was trained and evaluated with, on ``card``'s clip grid."""
        tef = 2 if card.temporal_endpoint else 0
        return cls(
            clip_len=card.clip_len,
            max_clips=checkpoint.train.max_clips or card.max_clips,
            video_dim=checkpoint.model.video_dim - tef,
            text_dim=checkpoint.model.text_dim,
            temporal_endpoint=card.temporal_endpoint,
            max_text_len=checkpoint.train.max_text_len,
            postprocess=checkpoint.postprocess,
        )
