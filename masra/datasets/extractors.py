"""The names of the video feature extractors a dataset card may name, and the width each one makes.

The dataset layer checks a card's ``extractor`` keys against this table
(:class:`~masra.datasets.card.FeatureSource`) without importing :mod:`masra.features`, which sits
above it and builds the extractors: :data:`masra.features.registry.EXTRACTORS` takes its names and
default widths from here (``tests/test_card.py`` checks that the two list the same names). What each
extractor is: the table in :mod:`masra.features.registry`.
"""

from __future__ import annotations

__all__ = ["EXTRACTOR_DIMS"]

EXTRACTOR_DIMS: dict[str, int | None] = {
    "clip-vit-b32": 512,
    "slowfast-r50": 2304,
    "appearance": 16,
    "motion": 12,
}
"""Feature width of each extractor with its default model (None: it depends on the model)."""
