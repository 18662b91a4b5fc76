"""Where a prior run lives: one naming rule for its folder, shards, manifest and embeddings.

A run is the folder ``{prior_dir}/{name}`` (``prior_dir`` is the dataset card's ``prior_dir``):

    {prior_dir}/{name}/*.parquet                      prior shards (``PRIOR_SCHEMA``): ``part-*.parquet``
                                                      from ``masra priors generate`` / ``import``
    {prior_dir}/{name}/manifest.json                  what an import or the fixture wrote
                                                      (``generate`` writes ``manifest-{i}of{N}.json``)
    {prior_dir}/{name}/embeddings/{encoder}/*.parquet their embeddings (``EMBED_SCHEMA``); an
                                                      encoder name's ``/`` becomes ``__``
    {prior_dir}/{name}/pseudo_queries/{encoder}/      the event texts encoded as query features by
                                                      stage 2 (its cache; prior events as queries)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from masra.priors.shards import shard_paths

__all__ = ["MANIFEST_NAME", "PriorRun", "encoder_folder"]

MANIFEST_NAME = "manifest.json"


def encoder_folder(encoder: str) -> str:
    """The folder name of an encoder's embeddings (``org/model`` -> ``org__model``)."""
    return encoder.replace("/", "__")


@dataclass(frozen=True)
class PriorRun:
    """The prior run ``name`` under ``prior_dir``; paths only, nothing is read or created."""

    prior_dir: Path
    name: str

    @classmethod
    def at(cls, run_dir: str | os.PathLike[str]) -> PriorRun:
        """The run whose folder is ``run_dir``."""
        path = Path(run_dir)
        return cls(path.parent, path.name)

    @property
    def dir(self) -> Path:
        """``{prior_dir}/{name}``."""
        return Path(self.prior_dir) / self.name

    @property
    def manifest(self) -> Path:
        """``{prior_dir}/{name}/manifest.json``."""
        return self.dir / MANIFEST_NAME

    def shards(self) -> list[Path]:
        """The run's complete prior shards, in name order (temporary files are skipped)."""
        return shard_paths(self.dir)

    @property
    def embeddings(self) -> Path:
        """``{prior_dir}/{name}/embeddings``: one folder per encoder."""
        return self.dir / "embeddings"

    def embeddings_dir(self, encoder: str) -> Path:
        """``{prior_dir}/{name}/embeddings/{encoder}`` (``/`` in the encoder name becomes ``__``)."""
        return self.embeddings / encoder_folder(encoder)

    @property
    def pseudo_queries(self) -> Path:
        """``{prior_dir}/{name}/pseudo_queries``: one folder per query text encoder."""
        return self.dir / "pseudo_queries"

    def pseudo_queries_dir(self, encoder: str) -> Path:
        """``{prior_dir}/{name}/pseudo_queries/{encoder}``: the run's event texts encoded as query
        features by ``encoder`` (``/`` in its name becomes ``__``), cached by stage 2."""
        return self.pseudo_queries / encoder_folder(encoder)
