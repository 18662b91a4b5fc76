"""Embed the texts of a prior run: event descriptions and clip captions -> float16 vectors.

``embed_prior_run`` reads every complete prior shard of a run folder and writes one sibling
embedding shard per prior shard (same file name) under ``{run_dir}/embeddings/{encoder.name}/``,
with the :data:`~masra.priors.schema.EMBED_SCHEMA` schema: one row per video, keyed by
``video_id``.

Per video:
    event_start / event_end: (E,) float32 seconds, in the order of the prior's ``events``.
    event_emb: (E, dim) float16, one row per event text.
    caption_emb: (num_clips, dim) float16, one row per clip; zero where the clip has no caption.
    caption_valid: (num_clips,) bool, True where the clip has a non-empty caption.

Prior rows with fewer captions than clips (``partial``/``failed`` status) are padded with invalid
entries; extra captions are dropped. An embedding shard that already exists and is newer than its
prior shard is kept, so a rerun only embeds what changed.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow.parquet as pq

from masra.priors.run import PriorRun
from masra.priors.schema import EMBED_SCHEMA, PRIOR_SCHEMA, SCHEMA_VERSION, check_schema
from masra.priors.shards import rows_to_table, shard_paths, write_table_atomic

log = logging.getLogger(__name__)


class TextEncoderLike(Protocol):
    """What embedding needs of an encoder (``masra.text_encoder.TextEncoder`` satisfies it)."""

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def encode(self, texts: list[str], batch_size: int = ..., progress: bool = ...) -> np.ndarray:
        """Return (N, dim) float32 embeddings of ``texts``."""
        ...


def _row_texts(row: dict[str, Any]) -> tuple[list[str], list[str], list[bool]]:
    """(event texts, caption texts padded to num_clips, caption validity) of one prior row."""
    events = row["events"] or []
    num_clips = int(row["num_clips"])
    caps = list(row["clip_captions"] or [])[:num_clips]
    caps += [""] * (num_clips - len(caps))
    valid = [bool(c and c.strip()) for c in caps]
    return [str(e["text"]) for e in events], caps, valid


def _embed_rows(
    rows: list[dict[str, Any]], encoder: TextEncoderLike, batch_size: int
) -> list[dict[str, Any]]:
    """Embed all texts of ``rows`` in one batched call and split the result back per video."""
    dim = int(encoder.dim)
    per_row = [_row_texts(r) for r in rows]
    texts: list[str] = []
    for ev, caps, valid in per_row:
        texts.extend(ev)
        texts.extend(c for c, v in zip(caps, valid, strict=True) if v)
    emb = encoder.encode(texts, batch_size=batch_size, progress=True) if texts else np.zeros((0, dim))
    emb = np.asarray(emb, dtype=np.float32)
    if emb.shape != (len(texts), dim):
        raise ValueError(
            f"encoder {encoder.name!r} returned shape {emb.shape}, expected ({len(texts)}, {dim})"
        )
    emb16 = emb.astype(np.float16)  # (N, dim)
    out: list[dict[str, Any]] = []
    pos = 0
    for row, (ev, caps, valid) in zip(rows, per_row, strict=True):
        ev_emb = emb16[pos : pos + len(ev)]  # (E, dim)
        pos += len(ev)
        cap_emb = np.zeros((len(caps), dim), dtype=np.float16)  # (num_clips, dim)
        n_valid = sum(valid)
        cap_emb[np.asarray(valid, dtype=bool)] = emb16[pos : pos + n_valid]
        pos += n_valid
        events = row["events"] or []
        out.append(
            {
                "video_id": row["video_id"],
                "encoder": encoder.name,
                "dim": dim,
                "num_clips": int(row["num_clips"]),
                "event_start": [float(e["start"]) for e in events],
                "event_end": [float(e["end"]) for e in events],
                "event_emb": ev_emb.tolist(),
                "caption_emb": cap_emb.tolist(),
                "caption_valid": valid,
                "schema_version": SCHEMA_VERSION,
            }
        )
    return out


def embed_prior_run(
    run_dir: str | os.PathLike[str],
    encoder: TextEncoderLike,
    out_dir: str | os.PathLike[str] | None = None,
    batch_size: int = 64,
) -> Path:
    """Write EMBED_SCHEMA shards for every prior shard of ``run_dir``; return their folder.

    Args:
        run_dir: a prior run folder holding ``*.parquet`` shards of PRIOR_SCHEMA.
        encoder: the text encoder (``name``, ``dim``, ``encode``).
        out_dir: where to write; default ``{run_dir}/embeddings/{encoder.name}``.
        batch_size: texts per encoder call.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be > 0, got {batch_size}")
    paths = shard_paths(run_dir)
    if not paths:
        raise FileNotFoundError(f"no prior shards (*.parquet) under {run_dir}; run `masra priors generate`")
    dest = Path(out_dir) if out_dir is not None else PriorRun.at(run_dir).embeddings_dir(encoder.name)
    dest.mkdir(parents=True, exist_ok=True)
    written = kept = 0
    for path in paths:
        target = dest / path.name
        if target.exists() and target.stat().st_mtime >= path.stat().st_mtime:
            kept += 1
            continue
        table = pq.read_table(path)
        check_schema(table.schema, PRIOR_SCHEMA, str(path))
        rows = table.select(["video_id", "num_clips", "events", "clip_captions"]).to_pylist()
        log.info("embedding %d videos of %s with %s", len(rows), path.name, encoder.name)
        write_table_atomic(rows_to_table(_embed_rows(rows, encoder, batch_size), EMBED_SCHEMA), target)
        written += 1
    log.info("embeddings in %s: %d shards written, %d already up to date", dest, written, kept)
    return dest
