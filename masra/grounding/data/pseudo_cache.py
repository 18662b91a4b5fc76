"""The event texts of a prior run encoded as query features, once per (prior run, text encoder).

Pseudo-queries (:mod:`masra.grounding.data.pseudo`) need their texts in the space of the dataset's
query features: the card's query text encoder, its token features (the last hidden states of the
real tokens, as ``masra features extract --queries`` writes them) and its pooled vector. Encoding
happens once, at the first training start that needs it, into

    {prior_dir}/{run}/pseudo_queries/{encoder}/
        index.json        version, encoder, dim, max_length, texts (sorted, unique), texts_sha256
        text_data.npy     (total_tokens, D) float16 token features of every text back to back
        text_offsets.npy  (U,) int64 first row of text i;  text_lengths.npy (U,) int64 its tokens
        text_pooled.npy   (U, D) float16 pooled, L2-normalised vectors

laid out like the feature store's query arrays, so a training start copies them into the resident
split like stored query features and no step encodes anything. Every distinct event text of the run
is encoded, whatever the filters keep, so changing a filter rule reuses the cache. The cache is used
when its encoder, dim and token budget are the ones asked for and its ``texts_sha256`` is that of the
run's current event texts; when the prior shards change their texts (a rerun of ``generate``, an
``import --overwrite``), it is rebuilt, with a log line saying why. Writes are atomic (a hidden
sibling folder renamed into place, ``index.json`` written last) and one build at a time holds the
lock ``.{encoder}.lock`` beside the folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from masra.fsops import swap_in_folder
from masra.runlock import RunLock

log = logging.getLogger(__name__)

__all__ = [
    "CACHE_VERSION",
    "MAX_TEXT_TOKENS",
    "EncodedTexts",
    "encoded_event_texts",
    "read_encoded_texts",
    "texts_digest",
    "write_encoded_texts",
]

CACHE_VERSION = 1
INDEX = "index.json"
# The encoder's token budget: TextEncoder.load's default, which `masra features extract --queries`
# and raw-text prediction use too.
MAX_TEXT_TOKENS = 32
LOCK_WAIT_S = 6 * 3600.0
ENCODE_CHUNK = 1024  # texts per progress step

# texts -> per text (token features (T_i, D), pooled (D,)), as TextEncoder.encode_tokens returns them.
Encode = Callable[[list[str]], list[tuple[np.ndarray, np.ndarray]]]


def texts_digest(texts: Sequence[str]) -> str:
    """SHA-256 of the sorted distinct ``texts``: what a cache must hold to serve them."""
    h = hashlib.sha256()
    for t in sorted(set(texts)):
        h.update(t.encode("utf-8") + b"\0")
    return h.hexdigest()


@dataclass
class EncodedTexts:
    """Encoded texts read from a cache folder (arrays memory-mapped).

    Attributes:
        folder: the cache folder; encoder / dim: the encoder's name and width.
        texts: U distinct texts in row order (sorted); ``row(text)`` gives a text's row.
        data: (total_tokens, D) float16; offsets / lengths: (U,) int64; pooled: (U, D) float16.
    """

    folder: Path
    encoder: str
    dim: int
    texts: list[str]
    data: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray
    pooled: np.ndarray

    def __post_init__(self) -> None:
        self._rows = {t: i for i, t in enumerate(self.texts)}

    def row(self, text: str) -> int:
        try:
            return self._rows[text]
        except KeyError:
            raise KeyError(f"text {text!r} is not in the encoded texts at {self.folder}") from None

    def tokens(self, text: str) -> np.ndarray:
        """(T, D) token features of ``text`` (a view, no copy)."""
        i = self.row(text)
        start = int(self.offsets[i])
        return self.data[start : start + int(self.lengths[i])]


def _stale_reason(index: dict[str, object], encoder: str, dim: int, digest: str) -> str | None:
    if index.get("version") != CACHE_VERSION:
        return f"cache version {index.get('version')}, this code writes {CACHE_VERSION}"
    if index.get("encoder") != encoder or index.get("dim") != dim:
        return f"it holds encoder {index.get('encoder')} ({index.get('dim')}-d), not {encoder} ({dim}-d)"
    if index.get("max_length") != MAX_TEXT_TOKENS:
        return f"its token budget is {index.get('max_length')}, not {MAX_TEXT_TOKENS}"
    if index.get("texts_sha256") != digest:
        return "the prior run's event texts changed since it was written"
    return None


def read_encoded_texts(folder: Path, *, encoder: str, dim: int, texts: Sequence[str]) -> EncodedTexts | None:
    """The cache at ``folder`` when it serves ``texts`` with ``encoder`` at ``dim``, else None (a
    present but stale cache is logged with the reason)."""
    try:
        index = json.loads((folder / INDEX).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    reason = _stale_reason(index, encoder, dim, texts_digest(texts))
    if reason is not None:
        log.info("pseudo-query text cache %s not used: %s", folder, reason)
        return None
    arrays = {
        name: np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False)
        for name in ("text_data", "text_offsets", "text_lengths", "text_pooled")
    }
    cached = [str(t) for t in index["texts"]]
    n = len(cached)
    if (
        arrays["text_offsets"].shape != (n,)
        or arrays["text_lengths"].shape != (n,)
        or arrays["text_pooled"].shape != (n, dim)
        or arrays["text_data"].shape != (int(arrays["text_lengths"].sum()), dim)
    ):
        log.warning("pseudo-query text cache %s: arrays do not match %s; rebuilding it", folder, INDEX)
        return None
    return EncodedTexts(
        folder=folder,
        encoder=encoder,
        dim=dim,
        texts=cached,
        data=arrays["text_data"],
        offsets=arrays["text_offsets"],
        lengths=arrays["text_lengths"],
        pooled=arrays["text_pooled"],
    )


def write_encoded_texts(
    folder: Path, *, encoder: str, dim: int, texts: Sequence[str], encode: Encode, progress: bool = True
) -> Path:
    """Encode the distinct ``texts`` (sorted) with ``encode`` and write the cache at ``folder``,
    atomically (a hidden sibling renamed into place; an older cache is replaced). Returns ``folder``.

    Raises ValueError when an encoded vector is not ``dim`` wide or not finite.
    """
    unique = sorted(set(texts))
    tokens: list[np.ndarray] = []
    pooled = np.zeros((len(unique), dim), np.float16)
    for s in tqdm(range(0, len(unique), ENCODE_CHUNK), desc="encode event texts", disable=not progress):
        chunk = unique[s : s + ENCODE_CHUNK]
        for j, (tok, pool) in enumerate(encode(chunk)):
            if tok.ndim != 2 or tok.shape[1] != dim or pool.shape != (dim,) or len(tok) == 0:
                raise ValueError(
                    f"encoder {encoder!r} gave token features {tok.shape} and a pooled vector "
                    f"{pool.shape} for {chunk[j]!r}; the query features are {dim}-d"
                )
            if not (np.isfinite(tok).all() and np.isfinite(pool).all()):
                raise ValueError(f"encoder {encoder!r} gave non-finite features for {chunk[j]!r}")
            tokens.append(tok.astype(np.float16))
            pooled[s + j] = pool
    lengths = np.array([len(t) for t in tokens], np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)[: len(lengths)]
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        data = np.lib.format.open_memmap(  # filled in place: no second copy of every token
            tmp / "text_data.npy", mode="w+", dtype=np.float16, shape=(int(lengths.sum()), dim)
        )
        for tok, start in zip(tokens, offsets.tolist(), strict=True):
            data[start : start + len(tok)] = tok
        data.flush()
        del data
        np.save(tmp / "text_offsets.npy", offsets)
        np.save(tmp / "text_lengths.npy", lengths)
        np.save(tmp / "text_pooled.npy", pooled)
        index = {
            "version": CACHE_VERSION,
            "encoder": encoder,
            "dim": dim,
            "max_length": MAX_TEXT_TOKENS,
            "texts_sha256": texts_digest(unique),
            "texts": unique,
        }
        (tmp / INDEX).write_text(json.dumps(index), encoding="utf-8")
        swap_in_folder(tmp, folder, folder.parent / f".{folder.name}.old-{os.getpid()}")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _load_encoder(name: str, dim: int) -> Encode:
    import torch

    from masra.text_encoder import TextEncoder

    enc = TextEncoder.load(
        name, device="cuda" if torch.cuda.is_available() else "cpu", max_length=MAX_TEXT_TOKENS
    )
    if enc.dim != dim:
        raise ValueError(
            f"text encoder {name!r} gives {enc.dim}-d features but the card's query features are {dim}-d; "
            "set the card's `text_encoder` to the encoder that made them"
        )
    return enc.encode_tokens


def encoded_event_texts(
    folder: Path, texts: Sequence[str], *, encoder: str, dim: int, encode: Encode | None = None
) -> tuple[EncodedTexts, str]:
    """The cache at ``folder`` serving ``texts``: read when up to date, else (re)built with ``encode``
    (default: the text encoder ``encoder``, loaded only then). Returns it and ``"hit"`` or ``"built"``."""
    with RunLock(
        folder.parent / f".{folder.name}.lock", f"pseudo-query text cache {folder}", wait=LOCK_WAIT_S
    ):
        cached = read_encoded_texts(folder, encoder=encoder, dim=dim, texts=texts)
        if cached is not None:
            log.info("pseudo-query texts: %d encoded texts from the cache %s", len(cached.texts), folder)
            return cached, "hit"
        n = len(set(texts))
        log.info("pseudo-query texts: encoding %d distinct event texts with %s into %s", n, encoder, folder)
        write_encoded_texts(
            folder, encoder=encoder, dim=dim, texts=texts, encode=encode or _load_encoder(encoder, dim)
        )
        built = read_encoded_texts(folder, encoder=encoder, dim=dim, texts=texts)
        if built is None:  # pragma: no cover - just written
            raise RuntimeError(f"{folder}: the pseudo-query text cache just written does not read back")
        return built, "built"
