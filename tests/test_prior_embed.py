"""Embedding of prior runs: shapes, padding of missing captions, keys, rerun skipping."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from masra.prior_gen.embed import embed_prior_run
from masra.priors.schema import EMBED_SCHEMA, PRIOR_SCHEMA, SCHEMA_VERSION
from masra.priors.shards import read_shards, rows_to_table, write_table_atomic


class HashEncoder:
    """A deterministic fake encoder: each text maps to a fixed pseudo-random unit vector."""

    name = "hash8"
    dim = 8

    def __init__(self) -> None:
        self.calls: list[int] = []

    def encode(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        self.calls.append(len(texts))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            seed = int.from_bytes(hashlib.sha256(t.encode()).digest()[:4], "little")
            v = np.random.default_rng(seed).standard_normal(self.dim)
            out[i] = v / np.linalg.norm(v)
        return out


def prior_row(vid: str, num_clips: int, events: list[tuple[float, float, str]], captions: list[str]) -> dict:
    return {
        "video_id": vid,
        "duration": num_clips * 2.0,
        "clip_len": 2.0,
        "num_clips": num_clips,
        "events": [{"start": s, "end": e, "text": t} for s, e, t in events],
        "clip_captions": captions,
        "status": "ok" if len(captions) == num_clips else "partial",
        "source": "reference",
        "schema_version": SCHEMA_VERSION,
    }


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    rows_a = [
        prior_row("v1", 3, [(0.0, 2.0, "a man walks"), (2.0, 6.0, "he sits")], ["walk", "sit", "sit down"]),
        prior_row("v2", 4, [], ["x", "", "y"]),  # one empty caption, one missing
    ]
    rows_b = [prior_row("v3", 2, [(1.0, 3.0, "dog runs")], [])]
    write_table_atomic(rows_to_table(rows_a, PRIOR_SCHEMA), tmp_path / "part-00000.parquet")
    write_table_atomic(rows_to_table(rows_b, PRIOR_SCHEMA), tmp_path / "part-00001.parquet")
    return tmp_path


def test_embed_shapes_and_validity(run_dir: Path) -> None:
    enc = HashEncoder()
    out = embed_prior_run(run_dir, enc, batch_size=4)
    assert out == run_dir / "embeddings" / "hash8"
    assert sorted(p.name for p in out.glob("*.parquet")) == ["part-00000.parquet", "part-00001.parquet"]
    table = read_shards(out, EMBED_SCHEMA)
    assert table.schema.field("event_emb").type == EMBED_SCHEMA.field("event_emb").type
    rows = {r["video_id"]: r for r in table.to_pylist()}
    assert set(rows) == {"v1", "v2", "v3"}
    v1, v2, v3 = rows["v1"], rows["v2"], rows["v3"]
    assert np.asarray(v1["event_emb"]).shape == (2, 8)
    assert np.asarray(v1["caption_emb"]).shape == (3, 8)
    assert v1["event_start"] == [0.0, 2.0] and v1["event_end"] == [2.0, 6.0]
    assert v1["caption_valid"] == [True, True, True]
    # the stored float16 vector is the encoder's vector of that exact text
    np.testing.assert_allclose(np.asarray(v1["event_emb"][1]), enc.encode(["he sits"])[0], atol=1e-3)
    np.testing.assert_allclose(np.asarray(v1["caption_emb"][2]), enc.encode(["sit down"])[0], atol=1e-3)
    assert v2["event_emb"] == [] and v2["caption_valid"] == [True, False, True, False]
    cap2 = np.asarray(v2["caption_emb"])
    assert cap2.shape == (4, 8) and not cap2[1].any() and not cap2[3].any() and cap2[2].any()
    assert v3["caption_valid"] == [False, False] and all(
        r["dim"] == 8 and r["encoder"] == "hash8" for r in rows.values()
    )


def test_embed_rerun_skips_up_to_date_shards(run_dir: Path) -> None:
    enc = HashEncoder()
    out = embed_prior_run(run_dir, enc)
    n_calls = len(enc.calls)
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.parquet")}
    embed_prior_run(run_dir, enc)
    assert len(enc.calls) == n_calls
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.parquet")} == before
    assert pq.read_table(out / "part-00000.parquet").num_rows == 2


def test_embed_rejects_empty_run_and_bad_encoder(tmp_path: Path, run_dir: Path) -> None:
    with pytest.raises(FileNotFoundError, match="priors generate"):
        embed_prior_run(tmp_path / "nothing", HashEncoder())

    class Wrong(HashEncoder):
        def encode(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
            return np.zeros((len(texts), 3), dtype=np.float32)

    with pytest.raises(ValueError, match="expected"):
        embed_prior_run(run_dir, Wrong(), out_dir=tmp_path / "emb")


def test_shards_dictionary_encode_strings_only(tmp_path: Path) -> None:
    import pyarrow as pa

    emb = pa.array([[[0.5, 0.25]] * 3, [[1.0, 0.0]]], type=pa.list_(pa.list_(pa.float16())))
    table = pa.table({"video_id": ["a", "b"], "emb": emb, "n": pa.array([3, 1], pa.int32())})
    path = write_table_atomic(table, tmp_path / "s.parquet")
    assert pq.read_table(path).equals(table)
    meta = pq.ParquetFile(path).metadata.row_group(0)
    encodings = {meta.column(i).path_in_schema: meta.column(i).encodings for i in range(meta.num_columns)}
    assert any("DICTIONARY" in e for e in encodings["video_id"]), encodings
    for column in ("emb.list.element.list.element", "n"):
        assert not any("DICTIONARY" in e for e in encodings[column]), encodings
