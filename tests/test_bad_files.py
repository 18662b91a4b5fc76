"""Damaged files are refused with one error naming the file (issue 15's bad inputs, fast versions)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _train_world import make_world, tiny_overrides

from masra.grounding.checkpoint import load_checkpoint
from masra.grounding.config import load_train_config
from masra.grounding.infer.inputs import load_feature_npz
from masra.grounding.train.recipe import run_training
from masra.prior_gen.runs import BadShardError, done_video_ids


def test_a_truncated_or_foreign_stage1_shard_is_named(tmp_path: Path) -> None:
    shard = tmp_path / "part-000of001-00000.parquet"
    pq.write_table(pa.table({"video_id": ["a"], "other": [1]}), shard)
    with pytest.raises(BadShardError, match=str(shard)):  # another schema: not counted as done
        done_video_ids(tmp_path)
    shard.write_bytes(shard.read_bytes()[:40])
    with pytest.raises(BadShardError, match="not a readable prior shard"):
        done_video_ids(tmp_path)


def test_nan_in_a_feature_file_is_named(tmp_path: Path) -> None:
    feats = np.ones((4, 3), np.float32)
    feats[2, 1] = np.nan
    np.savez(tmp_path / "v.npz", features=feats)
    with pytest.raises(ValueError, match=r"v\.npz: array 'features' holds 1 non-finite"):
        load_feature_npz(tmp_path / "v.npz")


def test_a_damaged_checkpoint_is_named(tmp_path: Path) -> None:
    card = make_world(tmp_path / "world", num_train=4, num_val=2)
    run_training(
        load_train_config(str(card), None, tiny_overrides(card, epochs=1), no_config=True), tmp_path / "run"
    )
    weights = (tmp_path / "run" / "best" / "model.safetensors").resolve()
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"model\.safetensors.*cannot read this checkpoint file"):
        load_checkpoint(tmp_path / "run" / "best")
