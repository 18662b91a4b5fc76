"""Raw video in: the dataset card's registered extractors make the Grounder's input from a video file.

The card the checkpoint was trained on names, per video feature type, the extractor that made its
feature files (``extractor:`` in the card; :mod:`masra.features.registry`). The same extractors turn
a video file into :class:`~masra.features.extract.VideoFeatures`, whose ``features`` equal what the
feature store holds for that video (per type L2-normalised, cut to the shortest type, concatenated
in card order, no temporal-endpoint dims, no ``max_clips`` cut). A raw video therefore gives the same
windows as its stored features; videos longer than the trained length are windowed by the Grounder.

Example::

    g = Grounder.from_pretrained("runs/fixture/best")
    [res] = g.predict_video("x.mp4", query_text="the red circle moves right")
    res.windows[0], res.extra["duration"]
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from masra.features.extract import VideoFeatures, features_for_video, load_card_extractors
from masra.video_io import VideoIOError

if TYPE_CHECKING:
    import torch

    from masra.datasets.card import DatasetCard
    from masra.features.base import VideoFeatureExtractor
    from masra.grounding.infer.result import Grounding


class Grounder(Protocol):
    """What these functions use of a :class:`~masra.grounding.infer.grounder.Grounder` (which holds
    them as methods; a Protocol keeps this module from importing it back)."""

    card: DatasetCard | None
    device: torch.device
    _extractors: dict[str, VideoFeatureExtractor] | None

    def predict(
        self,
        video_features: Any,
        query_features: Any = None,
        query_text: str | Sequence[str] | None = None,
        *,
        duration: float | None = None,
        top_k: int | None = None,
    ) -> list[Grounding]: ...


__all__ = ["grounder_extractors", "predict_video", "video_features_for"]


def grounder_extractors(grounder: Grounder) -> dict[str, VideoFeatureExtractor]:
    """The extractors of the Grounder's card, loaded on the Grounder's device once and then kept.

    Raises:
        ValueError: the Grounder has no card, or a feature type names no extractor.
        masra.hub.ModelUnavailableError: an extractor's weights are neither local nor reachable.
    """
    if grounder.card is None:
        raise ValueError(
            "this Grounder has no dataset card; load it with Grounder.from_pretrained(..., card=...)"
        )
    if grounder._extractors is None:
        grounder._extractors = dict(load_card_extractors(grounder.card, device=str(grounder.device)))
    return grounder._extractors


def video_features_for(grounder: Grounder, path: str | os.PathLike[str]) -> VideoFeatures:
    """One video file's features in the layout the Grounder takes (see the module doc).

    Raises:
        masra.video_io.VideoIOError: the file is missing or cannot be read; one line naming the file.
    """
    path = Path(path)
    extractors = grounder_extractors(grounder)
    assert grounder.card is not None
    try:
        return features_for_video(path, grounder.card, extractors)
    except (VideoIOError, OSError) as e:  # OSError: e.g. the file vanished before the extractor read it
        reason = " ".join(str(e).split())
        raise VideoIOError(reason if str(path) in reason else f"{path}: {reason}") from None


def predict_video(
    grounder: Grounder,
    path: str | os.PathLike[str],
    query_features: Any = None,
    query_text: str | Sequence[str] | None = None,
    *,
    duration: float | None = None,
    top_k: int | None = None,
) -> list[Grounding]:
    """:meth:`Grounder.predict` on the features of a video file (see the module doc).

    ``duration``: seconds (default: the container's). Each result's ``extra`` gets ``duration`` (the
    one used), ``num_clips`` and ``video`` (the path).
    """
    vf = video_features_for(grounder, path)
    seconds = float(duration) if duration is not None else vf.duration
    results = grounder.predict(vf.features, query_features, query_text, duration=seconds, top_k=top_k)
    for res in results:
        res.extra.update(duration=seconds, num_clips=int(vf.features.shape[0]), video=str(path))
    return results
