"""Reliability of masra.priors.table (issue 15): prior embeddings with NaN or Inf are refused when
stage 2 reads them, naming the video."""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from _train_world import make_world

from masra.priors.schema import EMBED_SCHEMA
from masra.priors.shards import rows_to_table, write_table_atomic
from masra.priors.table import read_prior_table


@pytest.mark.parametrize(
    ("column", "bad"),
    [("caption_emb", math.nan), ("event_emb", math.inf), ("event_start", math.nan)],
)
def test_non_finite_prior_values_are_refused_naming_the_video(
    tmp_path: Path, column: str, bad: float
) -> None:
    make_world(tmp_path / "w", num_train=4, num_val=2)
    prior_dir = tmp_path / "w" / "priors"
    shard = prior_dir / "reference" / "embeddings" / "toy" / "shard-00000.parquet"
    assert len(read_prior_table(prior_dir, "reference", "toy")) == 6  # the clean run reads
    rows = pq.read_table(shard).to_pylist()
    value = rows[2][column]
    if isinstance(value[0], list):
        value[0][1] = bad
    else:
        value[0] = bad
    write_table_atomic(rows_to_table(rows, EMBED_SCHEMA), shard)
    with pytest.raises(
        ValueError, match=rf"{column.split('_')[0]}.*video '{rows[2]['video_id']}' is not finite"
    ):
        read_prior_table(prior_dir, "reference", "toy")
