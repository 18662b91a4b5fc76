"""Dataset layer: cards, annotation readers, feature readers, the training feature store, statistics.

Import from the submodules (``masra.datasets.readers``, ``.features``, ``.store``, ``.stats``); the
records and errors shared by every stage are re-exported here.
"""

from masra.datasets.card import DatasetCard, FeatureSource, TextFeatureSource, load_card, parse_overrides
from masra.datasets.types import AnnotationError, MissingFilesError, Query, QueryId, ReadReport

__all__ = [
    "AnnotationError",
    "DatasetCard",
    "FeatureSource",
    "MissingFilesError",
    "Query",
    "QueryId",
    "ReadReport",
    "TextFeatureSource",
    "load_card",
    "parse_overrides",
]
