"""Query text features of a card: ``{text_features.dir}/qid{qid}.npz`` from an annotation file.

Each file holds the card's token key (default ``last_hidden_state``, (T, dim): the real tokens'
last hidden states) and ``pooler_output`` ((dim,), L2-normalised), made by the card's text encoder
(:func:`card_text_encoder`; :class:`masra.text_encoder.TextEncoder`). Like the video features the
writes are atomic and a run skips queries whose file already exists.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm.auto import tqdm

from masra.datasets.card import DatasetCard
from masra.datasets.features import POOLED_KEY, text_path
from masra.datasets.readers import load_queries
from masra.features.extract import save_npz_atomic

if TYPE_CHECKING:
    from masra.text_encoder import TextEncoder

log = logging.getLogger(__name__)

__all__ = ["TEXT_ENCODER_BY_DIM", "card_text_encoder", "extract_query_features"]

# The encoder of a card without a ``text_encoder`` key, by the width of its query features.
TEXT_ENCODER_BY_DIM = {384: "minilm", 512: "openai/clip-vit-base-patch32"}


def card_text_encoder(card: DatasetCard) -> str:
    """The encoder that makes the card's query features: its ``text_encoder`` key, else by width."""
    named = card.extra.get("text_encoder")
    if named:
        return str(named)
    if card.text_features.dim in TEXT_ENCODER_BY_DIM:
        return TEXT_ENCODER_BY_DIM[card.text_features.dim]
    raise ValueError(
        f"card {card.name!r}: no `text_encoder` key and no default for {card.text_features.dim}-d query "
        "features; add `text_encoder: NAME_OR_FOLDER` to the card"
    )


def extract_query_features(
    card: DatasetCard,
    annotations: str | os.PathLike[str],
    encoder: TextEncoder,
    *,
    overwrite: bool = False,
    batch_size: int = 64,
    progress: bool = True,
) -> dict[str, object]:
    """Write the text feature files of every query in ``annotations`` (read with the card's reader).

    Returns ``{"queries", "written", "skipped_finished", "seconds"}``.

    Raises:
        ValueError: the encoder's width differs from the card's ``text_features.dim``.
    """
    if encoder.dim != card.text_features.dim:
        raise ValueError(
            f"text encoder {encoder.name!r} gives {encoder.dim}-d features; card {card.name!r} expects "
            f"{card.text_features.dim}-d query features"
        )
    t0 = time.perf_counter()
    queries, _ = load_queries(card, "queries", Path(annotations))
    todo = [q for q in queries if overwrite or not text_path(card, q.qid).is_file()]
    bar = tqdm(total=len(todo), desc="queries", unit="query", disable=not progress)
    for s in range(0, len(todo), batch_size):
        chunk = todo[s : s + batch_size]
        for q, (tokens, pooled) in zip(chunk, encoder.encode_tokens([q.query for q in chunk]), strict=True):
            save_npz_atomic(text_path(card, q.qid), **{card.text_features.key: tokens, POOLED_KEY: pooled})
        bar.update(len(chunk))
    bar.close()
    return {
        "queries": len(queries),
        "written": len(todo),
        "skipped_finished": len(queries) - len(todo),
        "seconds": round(time.perf_counter() - t0, 2),
    }
