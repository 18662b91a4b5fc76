"""The contract between the two stages: Parquet schemas of prior shards and prior-embedding shards.

This module imports only pyarrow, so stage 2 can read priors without importing any of stage 1's
heavy parts. Bump ``SCHEMA_VERSION`` on any incompatible change; readers refuse other versions.

Prior shard: one row per video.
    video_id, duration (s), clip_len (s), num_clips,
    events: list<struct<start: float32 s, end: float32 s, text: string>>,
    clip_captions: list<string> (exactly num_clips entries when status is ok),
    status: "ok" | "partial" | "failed", error: string | null,
    provenance: source ("mllm" | "reference" | "imported"), model_id, model_revision, backend, prompt_version,
    sampling (JSON string), frames_sampled, tokens_in, tokens_out, created_at (ISO-8601 UTC),
    schema_version.

Embedding shard (sibling folder ``embeddings/<encoder>``): one row per video.
    video_id, encoder, dim, num_clips,
    event_start / event_end: list<float32> (s), event_emb: list<list<float16>> (E, dim),
    caption_emb: list<list<float16>> (num_clips, dim), caption_valid: list<bool> (num_clips,),
    schema_version.
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = 1
STATUSES = ("ok", "partial", "failed")
SOURCES = ("mllm", "reference", "imported")

EVENT_TYPE = pa.struct([("start", pa.float32()), ("end", pa.float32()), ("text", pa.string())])

PRIOR_SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("duration", pa.float32()),
        ("clip_len", pa.float32()),
        ("num_clips", pa.int32()),
        ("events", pa.list_(EVENT_TYPE)),
        ("clip_captions", pa.list_(pa.string())),
        ("status", pa.string()),
        ("error", pa.string()),
        ("source", pa.string()),
        ("model_id", pa.string()),
        ("model_revision", pa.string()),
        ("backend", pa.string()),
        ("prompt_version", pa.string()),
        ("sampling", pa.string()),
        ("frames_sampled", pa.int32()),
        ("tokens_in", pa.int64()),
        ("tokens_out", pa.int64()),
        ("created_at", pa.string()),
        ("schema_version", pa.int32()),
    ],
    metadata={b"masra.schema": b"prior", b"masra.schema_version": str(SCHEMA_VERSION).encode()},
)

EMBED_SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("encoder", pa.string()),
        ("dim", pa.int32()),
        ("num_clips", pa.int32()),
        ("event_start", pa.list_(pa.float32())),
        ("event_end", pa.list_(pa.float32())),
        ("event_emb", pa.list_(pa.list_(pa.float16()))),
        ("caption_emb", pa.list_(pa.list_(pa.float16()))),
        ("caption_valid", pa.list_(pa.bool_())),
        ("schema_version", pa.int32()),
    ],
    metadata={b"masra.schema": b"prior_embedding", b"masra.schema_version": str(SCHEMA_VERSION).encode()},
)


def check_schema(found: pa.Schema, expected: pa.Schema, where: str) -> None:
    """Raise a clear error when a shard's schema is not the expected one (version or columns)."""
    meta = found.metadata or {}
    version = meta.get(b"masra.schema_version")
    if version is not None and int(version) != SCHEMA_VERSION:
        raise ValueError(f"{where}: schema_version {int(version)}, this masra reads {SCHEMA_VERSION}")
    missing = [n for n in expected.names if n not in found.names]
    if missing:
        raise ValueError(f"{where}: not a masra shard of this kind; missing columns {missing}")
