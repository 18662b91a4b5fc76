"""Per-file feature readers: video features ``{dir}/{vid}.npz`` and query features ``{dir}/qid{qid}.npz``.

Video: each feature type of the card holds ``key`` of shape (L, dim). :func:`load_video_features`
L2-normalises every type per clip, cuts all types to the shortest L, concatenates them in card order
and optionally cuts to ``max_clips``. Temporal-endpoint features are *not* added here: they depend on
the final number of clips, so the data pipeline appends :func:`temporal_endpoint_features` after any
cut.

Text: ``last_hidden_state`` (T, D) (or the card's ``key``) and ``pooler_output`` (D,).

npz files are always read with ``allow_pickle=False``. A NaN or Inf anywhere is an error naming the file,
the vid or qid and the first bad index (so ``masra data build-store`` refuses such features).
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from masra.datasets.card import DatasetCard, FeatureSource
from masra.datasets.types import MissingFilesError, QueryId

POOLED_KEY = "pooler_output"
NORM_EPS = 1e-6


def video_path(source: FeatureSource, vid: str) -> Path:
    return source.dir / f"{vid}.npz"


def text_path(card: DatasetCard, qid: QueryId) -> Path:
    return card.text_features.dir / f"qid{qid}.npz"


def _load_key(path: Path, key: str) -> np.ndarray:
    """One array of an npz file, without unpickling; errors name the file and the keys present."""
    if not path.is_file():
        raise FileNotFoundError(f"feature file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if key not in npz.files:
                raise KeyError(f"{path}: no array {key!r} (arrays present: {npz.files})")
            return np.asarray(npz[key])
    except (zipfile.BadZipFile, ValueError, OSError) as e:
        raise ValueError(f"{path}: not a readable npz file ({e})") from e


def check_finite(x: np.ndarray, path: Path, what: str) -> None:
    """Raise ValueError naming ``path``, ``what`` and the first NaN/Inf index of ``x``, if it has one."""
    bad = ~np.isfinite(x)
    if not bad.any():
        return
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    where = f"row {first[0]}, column {first[1]}" if len(first) == 2 else f"index {', '.join(map(str, first))}"
    raise ValueError(
        f"{path}: {what} holds {int(bad.sum())} non-finite value(s); the first, {x[first]}, is at {where}"
    )


def npz_shape(path: Path, key: str) -> tuple[int, ...]:
    """The shape of ``key`` in an npz file, read from the array header only (no decompression of data)."""
    try:
        with zipfile.ZipFile(path) as zf:
            name = f"{key}.npy"
            if name not in zf.namelist():
                keys = [n.removesuffix(".npy") for n in zf.namelist()]
                raise KeyError(f"{path}: no array {key!r} (arrays present: {keys})")
            with zf.open(name) as fp:
                version = np.lib.format.read_magic(fp)
                if version == (1, 0):
                    shape, _, _ = np.lib.format.read_array_header_1_0(fp)
                else:
                    shape, _, _ = np.lib.format.read_array_header_2_0(fp)
    except (zipfile.BadZipFile, ValueError) as e:
        raise ValueError(f"{path}: not a readable npz file ({e})") from e
    return tuple(int(s) for s in shape)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation of (L, D); all-zero rows stay zero."""
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, NORM_EPS)


def _video_type(source: FeatureSource, vid: str) -> np.ndarray:
    path = video_path(source, vid)
    x = _load_key(path, source.key)
    if x.ndim != 2 or x.shape[1] != source.dim:
        raise ValueError(
            f"{path}: {source.key!r} has shape {x.shape}; the card says (L, {source.dim}) "
            f"for feature type {source.name!r}"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{path}: {source.key!r} has no clips")
    check_finite(x, path, f"{source.key!r} of video {vid!r}")
    return x.astype(np.float32, copy=False)


def load_video_features(card: DatasetCard, vid: str, max_clips: int | None = None) -> np.ndarray:
    """(L, sum of the card's dims) float32: per-type L2-normalised, cut to the shortest, concatenated.

    ``max_clips`` then cuts the clip axis. No temporal-endpoint features (see module doc).
    """
    if max_clips is not None and max_clips <= 0:
        raise ValueError(f"max_clips must be > 0, got {max_clips}")
    parts = [l2_normalize(_video_type(src, vid)) for src in card.video_features]
    length = min(p.shape[0] for p in parts)
    if max_clips is not None:
        length = min(length, max_clips)
    out = np.concatenate([p[:length] for p in parts], axis=1)  # (L, sum dims)
    return np.ascontiguousarray(out, dtype=np.float32)


def temporal_endpoint_features(num_clips: int) -> np.ndarray:
    """(L, 2) float32; row i = [i / L, (i + 1) / L]."""
    if num_clips <= 0:
        raise ValueError(f"num_clips must be > 0, got {num_clips}")
    start = np.arange(num_clips, dtype=np.float64) / num_clips
    return np.stack([start, start + 1.0 / num_clips], axis=1).astype(np.float32)


def load_text_features(card: DatasetCard, qid: QueryId) -> tuple[np.ndarray, np.ndarray]:
    """(last_hidden_state (T, D), pooler_output (D,)) float32 of one query."""
    src = card.text_features
    path = text_path(card, qid)
    tokens = _load_key(path, src.key)
    pooled = _load_key(path, POOLED_KEY)
    if tokens.ndim != 2 or tokens.shape[1] != src.dim or tokens.shape[0] == 0:
        raise ValueError(f"{path}: {src.key!r} has shape {tokens.shape}; the card says (T > 0, {src.dim})")
    if pooled.shape != (src.dim,):
        raise ValueError(f"{path}: {POOLED_KEY!r} has shape {pooled.shape}; the card says ({src.dim},)")
    check_finite(tokens, path, f"{src.key!r} of qid {qid}")
    check_finite(pooled, path, f"{POOLED_KEY!r} of qid {qid}")
    return tokens.astype(np.float32, copy=False), pooled.astype(np.float32, copy=False)


def find_missing(card: DatasetCard, vids: Iterable[str], qids: Iterable[QueryId]) -> None:
    """Raise :class:`MissingFilesError` if any video or text feature file is absent.

    Video types are checked one by one (the first type with gaps is reported), then the text features.
    """
    vids = sorted(set(vids))
    for src in card.video_features:
        missing = [v for v in vids if not video_path(src, v).is_file()]
        if missing:
            raise MissingFilesError(f"{src.name} video feature files (of {len(vids)})", str(src.dir), missing)
    qid_list = list(dict.fromkeys(qids))
    missing_q = [str(q) for q in qid_list if not text_path(card, q).is_file()]
    if missing_q:
        raise MissingFilesError(
            f"text feature files (of {len(qid_list)})", str(card.text_features.dir), missing_q
        )
