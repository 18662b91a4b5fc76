"""A tiny synthetic grounding dataset for the training tests, written in the real on-disk layout.

Each video has ``num_clips`` clips of 2 s; one of ``num_types`` event types happens in a window, and
the clip features inside it carry that type's code (plus noise). A query's token features carry the
code of the type it asks for, so the task is learnable but not trivial. Prior embeddings (events
and clip captions) are written with the shared Parquet writers in ``EMBED_SCHEMA``, next to a prior
shard whose provenance says ``source=reference``.

With ``event_texts`` the prior shard's events read like the queries (``type K happens``, plus a
``background`` line before each event) and their query features, made like the queries' (the
type's text code plus noise), are written as the prior run's pseudo-query text cache for the card's
``text_encoder: toy``, so prior events can train as queries without a real text encoder.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from masra.grounding.data.pseudo_cache import write_encoded_texts
from masra.priors.run import PriorRun
from masra.priors.schema import EMBED_SCHEMA, PRIOR_SCHEMA, SCHEMA_VERSION
from masra.priors.shards import rows_to_table, write_table_atomic

VIDEO_DIM = 12
TEXT_DIM = 16
PRIOR_DIM = 8
CLIP_LEN = 2.0


def make_world(
    root: Path,
    *,
    num_train: int = 24,
    num_val: int = 8,
    num_clips: int = 16,
    num_types: int = 4,
    seed: int = 0,
    saliency: bool = True,
    long_video_clips: int | None = None,
    prior_videos: str = "all",
    event_texts: bool = False,
) -> Path:
    """Write the dataset under ``root`` and return the path of its card YAML.

    ``long_video_clips`` gives the first train video that many clips (to test the max_clips cut);
    ``prior_videos`` is ``all``, ``none`` or ``train-half`` (the first half of train videos only);
    ``event_texts``: readable event texts and their encoded-text cache (module doc).
    """
    rng = np.random.default_rng(seed)
    codes_v = rng.normal(size=(num_types, VIDEO_DIM))
    codes_t = rng.normal(size=(num_types, TEXT_DIM))
    codes_p = rng.normal(size=(num_types + 1, PRIOR_DIM))  # last row: "background" captions
    (root / "features" / "vis").mkdir(parents=True, exist_ok=True)
    (root / "features" / "text").mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    embed_rows, prior_rows = [], []
    qid = 0
    for split, count in (("train", num_train), ("val", num_val)):
        lines = []
        for i in range(count):
            vid = f"{split}{i:03d}"
            n = long_video_clips if (long_video_clips and split == "train" and i == 0) else num_clips
            kind = int(rng.integers(num_types))
            width = int(rng.integers(2, max(3, n // 3)))
            start = int(rng.integers(0, n - width + 1))
            feats = rng.normal(scale=0.5, size=(n, VIDEO_DIM))
            feats[start : start + width] += codes_v[kind]
            np.savez(root / "features" / "vis" / f"{vid}.npz", features=feats.astype(np.float32))
            tokens = codes_t[kind] + rng.normal(scale=0.3, size=(int(rng.integers(3, 7)), TEXT_DIM))
            np.savez(
                root / "features" / "text" / f"qid{qid}.npz",
                last_hidden_state=tokens.astype(np.float32),
                pooler_output=tokens.mean(0).astype(np.float32),
            )
            duration = n * CLIP_LEN
            row = {
                "qid": qid,
                "query": f"type {kind} happens",
                "vid": vid,
                "duration": duration,
                "relevant_windows": [[start * CLIP_LEN, (start + width) * CLIP_LEN]],
            }
            if saliency:
                row["relevant_clip_ids"] = list(range(start, start + width))
                row["saliency_scores"] = [[int(rng.integers(1, 5)) for _ in range(3)] for _ in range(width)]
            lines.append(json.dumps(row))
            qid += 1
            keep = prior_videos == "all" or (
                prior_videos == "train-half" and split == "train" and i < count // 2
            )
            if keep:
                cap = np.repeat(codes_p[num_types][None], n, 0)
                cap[start : start + width] = codes_p[kind]
                cap += rng.normal(scale=0.1, size=cap.shape)
                embed_rows.append(
                    {
                        "video_id": vid,
                        "encoder": "toy",
                        "dim": PRIOR_DIM,
                        "num_clips": n,
                        "event_start": [start * CLIP_LEN],
                        "event_end": [(start + width) * CLIP_LEN],
                        "event_emb": [codes_p[kind].astype(np.float16).tolist()],
                        "caption_emb": cap.astype(np.float16).tolist(),
                        "caption_valid": [True] * n,
                        "schema_version": SCHEMA_VERSION,
                    }
                )
                events = [{"start": start * CLIP_LEN, "end": (start + width) * CLIP_LEN, "text": "x"}]
                if event_texts:
                    events[0]["text"] = f"type {kind} happens"
                    if start > 0:
                        events.insert(0, {"start": 0.0, "end": start * CLIP_LEN, "text": "background"})
                prior_rows.append(
                    {
                        "video_id": vid,
                        "duration": duration,
                        "clip_len": CLIP_LEN,
                        "num_clips": n,
                        "events": events,
                        "clip_captions": ["c"] * n,
                        "status": "ok",
                        "source": "reference",
                        "schema_version": SCHEMA_VERSION,
                    }
                )
        (root / "annotations" / f"{split}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if embed_rows:
        run = root / "priors" / "reference"
        write_table_atomic(rows_to_table(prior_rows, PRIOR_SCHEMA), run / "shard-00000.parquet")
        write_table_atomic(
            rows_to_table(embed_rows, EMBED_SCHEMA), run / "embeddings" / "toy" / "shard-00000.parquet"
        )
        if event_texts:
            texts = sorted({e["text"] for r in prior_rows for e in r["events"]})
            write_encoded_texts(
                PriorRun.at(run).pseudo_queries_dir("toy"),
                encoder="toy",
                dim=TEXT_DIM,
                texts=texts,
                encode=lambda chunk: [_toy_tokens(t, codes_t, rng) for t in chunk],
                progress=False,
            )
    card = root / "toy.yaml"
    card.write_text(
        "\n".join(
            [
                "name: toy",
                "format: qvhighlights",
                f"root: {root}",
                "annotations: {train: annotations/train.jsonl, val: annotations/val.jsonl}",
                f"clip_len: {CLIP_LEN}",
                f"max_clips: {num_clips}",
                f"video_features: {{vis: {{dir: features/vis, dim: {VIDEO_DIM}}}}}",
                "temporal_endpoint: true",
                f"text_features: {{dir: features/text, key: last_hidden_state, dim: {TEXT_DIM}}}",
                "video_dir: videos",
                "prior_dir: priors",
                *(["text_encoder: toy"] if event_texts else []),
                "",
            ]
        ),
        encoding="utf-8",
    )
    return card


def _toy_tokens(text: str, codes_t: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Token features of an event text made like a query's: ``type K happens`` carries type K's code."""
    code = codes_t[int(text.split()[1])] if text.startswith("type ") else np.zeros(TEXT_DIM)
    tokens = (code + rng.normal(scale=0.3, size=(4, TEXT_DIM))).astype(np.float32)
    pooled = tokens.mean(0)
    return tokens, (pooled / np.linalg.norm(pooled)).astype(np.float32)


TINY_MODEL = {
    "hidden_dim": 32,
    "num_heads": 4,
    "ffn_dim": 64,
    "num_queries": 4,
    "num_cross_layers": 1,
    "num_encoder_layers": 1,
    "num_decoder_layers": 2,
    "lrca_dim": 16,
    "dai_codebook_size": 4,
    "dropout": 0.1,
    "input_dropout": 0.1,
}


def tiny_overrides(card: Path, **extra: object) -> dict[str, object]:
    """TrainConfig overrides for a few-second CPU run on the toy world."""
    out: dict[str, object] = {
        "epochs": 2,
        "batch_size": 8,
        "eval_batch_size": 16,
        "eval_every": 1,
        "log_every": 2,
        "priors_encoder": "toy",
        "mixed_precision": "no",
        "deterministic": True,
        "cpu_threads": 1,
        "best_metric": "MR-full-R1@0.5",
        "model": dict(TINY_MODEL),
    }
    out.update(extra)
    return out
