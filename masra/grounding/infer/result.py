"""What grounding one query gives: :class:`Grounding` (ranked windows and clip saliency)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from masra.grounding.infer.decode import saliency_row_length
from masra.grounding.submission import Prediction

__all__ = ["Grounding"]


@dataclass
class Grounding:
    """The prediction for one query.

    Attributes:
        windows: ``[[start_s, end_s, score], ...]`` best first (at most ``top_k``).
        saliency: (L,) float per-clip saliency (model logits; higher = more relevant).
        query: the query text, when given as text.
        num_windows: model passes the video took (1 unless longer than ``max_clips``).
        extra: what the input added, e.g. ``duration`` and ``num_clips`` of a video file.
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
