"""Video feature extractors that dataset cards name, and the extraction of a card's feature files.

Importing this package is cheap (no torch): :mod:`masra.features.registry` lists the extractors and
imports an extractor's module only when it is built. See :mod:`masra.features.extract` for the
functions that turn videos into the card's feature files (``masra features extract``) and one video
into the per-clip arrays a trained model reads (:func:`masra.features.extract.features_for_video`).
"""

from masra.features.registry import EXTRACTORS, ExtractorSpec, extractor_spec, load_extractor

__all__ = ["EXTRACTORS", "ExtractorSpec", "extractor_spec", "load_extractor"]
