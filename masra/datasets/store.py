"""The training feature store: per-video npz files converted once into contiguous memory-mapped arrays.

Training reads clip features from here so it never opens or decompresses an npz file per sample, and
the whole store can be moved to a GPU at once through the raw arrays.

Layout of a store directory (every array a plain ``.npy`` file opened with ``mmap_mode="r"``)::

    index.json          version, dataset, splits, dtype, dims, clip_len, video_ids, qids, fingerprint
    video_data.npy      (total_clips, Dv)  features of all videos back to back (see below)
    video_offsets.npy   (num_videos,) int64 first row of each video in video_data
    video_lengths.npy   (num_videos,) int64 number of clips of each video
    text_data.npy       (total_tokens, Dt) token features of all queries back to back
    text_offsets.npy    (num_queries,) int64
    text_lengths.npy    (num_queries,) int64
    text_pooled.npy     (num_queries, Dt) pooled query features

Video rows are what :func:`masra.datasets.features.load_video_features` returns without ``max_clips``
(types L2-normalised, cut to the shortest, concatenated; no temporal-endpoint features), cast to the
store dtype. Query ids are stored as strings (:func:`qid_key`), so int and str ids share one index.

A build writes into a hidden sibling directory and renames it into place when complete, so a killed
build never leaves a store that opens. Builds of one store folder are serialised by a lock file
``.{name}.lock`` beside it (:class:`masra.runlock.RunLock`): a second build waits for the first, then
finds its store up to date and uses it. A store is *up to date* when its ``index.json`` fingerprint
matches its own split list and dtype: store version, dtype, the splits, the card's feature
dirs/keys/dims and clip length, and the size and modification time of every source file
(annotations, durations, npz files). An up-to-date store that holds all the requested splits (a
superset is fine) is used as it is. Otherwise the store is rebuilt with a log line saying why, except
with ``reuse_only=True`` (a store named with ``masra train --store``): an existing store is then never
rebuilt, and a store missing splits or out of date is refused with what is missing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from masra.datasets.card import DatasetCard
from masra.datasets.features import (
    find_missing,
    load_text_features,
    load_video_features,
    npz_shape,
    text_path,
    video_path,
)
from masra.datasets.lengths import check_lengths, warn_lengths
from masra.datasets.readers import load_queries
from masra.datasets.types import QueryId
from masra.runlock import RunLock

log = logging.getLogger(__name__)

STORE_VERSION = 1
LOCK_WAIT_S = 6 * 3600.0  # how long a build waits for another build of the same store
INDEX = "index.json"
DTYPES = ("float16", "float32")
_ARRAYS = (
    "video_data",
    "video_offsets",
    "video_lengths",
    "text_data",
    "text_offsets",
    "text_lengths",
    "text_pooled",
)


def qid_key(qid: QueryId) -> str:
    """Canonical string form of a query id: ``5 -> "5"``, ``"s13-d21_0" -> "s13-d21_0"``."""
    if isinstance(qid, bool):
        raise TypeError(f"a qid must be int or str, got {qid!r}")
    if isinstance(qid, int | np.integer):
        return str(int(qid))
    if isinstance(qid, str):
        return qid
    raise TypeError(f"a qid must be int or str, got {type(qid).__name__} {qid!r}")


def _card_spec(card: DatasetCard) -> dict[str, Any]:
    return {
        "video_features": [
            {"name": f.name, "dir": str(f.dir.resolve()), "key": f.key, "dim": f.dim}
            for f in card.video_features
        ],
        "text_features": {
            "dir": str(card.text_features.dir.resolve()),
            "key": card.text_features.key,
            "dim": card.text_features.dim,
        },
        "clip_len": card.clip_len,
    }


def _fingerprint(spec: dict[str, Any], sources: list[Path]) -> str:
    h = hashlib.sha256(json.dumps(spec, sort_keys=True).encode())
    for p in sources:
        st = p.stat()
        h.update(f"{p.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


@dataclass(frozen=True)
class _Plan:
    """What one build holds: ids in store order and their lengths (read from npz headers)."""

    video_ids: list[str]
    video_lengths: np.ndarray  # (num_videos,) int64
    qids: list[QueryId]
    text_lengths: np.ndarray  # (num_queries,) int64


def _collect(
    card: DatasetCard, splits: list[str]
) -> tuple[list[str], list[QueryId], list[Path], dict[str, float]]:
    """Sorted vids, qids, the annotation files read, and each vid's annotated duration."""
    durations: dict[str, float] = {}
    vids: set[str] = set()
    qids: dict[str, QueryId] = {}
    owner: dict[str, str] = {}
    ann_files: list[Path] = []
    for split in splits:
        queries, _ = load_queries(card, split)
        ann_files.append(card.annotation_path(split))
        for q in queries:
            key = qid_key(q.qid)
            if key in owner and owner[key] != q.vid:
                raise ValueError(
                    f"qid {key!r} names video {owner[key]!r} in one split and {q.vid!r} in split {split!r}"
                )
            owner[key] = q.vid
            qids.setdefault(key, q.qid)
            vids.add(q.vid)
            durations.setdefault(q.vid, q.duration)
    if not qids:
        raise ValueError(f"dataset {card.name!r}: splits {splits} hold no queries; nothing to store")
    if card.format == "charades_txt" and card.durations is not None:
        ann_files.append(card.durations)
    return sorted(vids), list(qids.values()), ann_files, durations


def _plan(card: DatasetCard, vids: list[str], qids: list[QueryId]) -> _Plan:
    vlen = np.zeros(len(vids), dtype=np.int64)
    for i, vid in enumerate(tqdm(vids, desc="video headers", unit="video", leave=False)):
        lengths = []
        for src in card.video_features:
            shape = npz_shape(video_path(src, vid), src.key)
            if len(shape) != 2 or shape[1] != src.dim or shape[0] == 0:
                raise ValueError(
                    f"{video_path(src, vid)}: {src.key!r} has shape {shape}; the card says (L > 0, {src.dim})"
                )
            lengths.append(shape[0])
        vlen[i] = min(lengths)
    tlen = np.zeros(len(qids), dtype=np.int64)
    for i, qid in enumerate(tqdm(qids, desc="text headers", unit="query", leave=False)):
        shape = npz_shape(text_path(card, qid), card.text_features.key)
        if len(shape) != 2 or shape[0] == 0:
            raise ValueError(f"{text_path(card, qid)}: {card.text_features.key!r} has shape {shape}")
        tlen[i] = shape[0]
    return _Plan(vids, vlen, qids, tlen)


def _offsets(lengths: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)


def _write(card: DatasetCard, plan: _Plan, tmp: Path, dtype: str) -> None:
    dv = sum(f.dim for f in card.video_features)
    dt = card.text_features.dim
    np.save(tmp / "video_offsets.npy", _offsets(plan.video_lengths))
    np.save(tmp / "video_lengths.npy", plan.video_lengths)
    np.save(tmp / "text_offsets.npy", _offsets(plan.text_lengths))
    np.save(tmp / "text_lengths.npy", plan.text_lengths)
    vdata = np.lib.format.open_memmap(
        tmp / "video_data.npy", mode="w+", dtype=dtype, shape=(int(plan.video_lengths.sum()), dv)
    )
    row = 0
    for vid, length in zip(
        tqdm(plan.video_ids, desc="videos", unit="video"), plan.video_lengths, strict=True
    ):
        x = load_video_features(card, vid)  # (L, Dv)
        if x.shape[0] != length:
            raise RuntimeError(f"video {vid!r}: {x.shape[0]} clips read but {length} in the header pass")
        vdata[row : row + length] = x
        row += int(length)
    vdata.flush()
    del vdata
    tdata = np.lib.format.open_memmap(
        tmp / "text_data.npy", mode="w+", dtype=dtype, shape=(int(plan.text_lengths.sum()), dt)
    )
    pooled = np.lib.format.open_memmap(
        tmp / "text_pooled.npy", mode="w+", dtype=dtype, shape=(len(plan.qids), dt)
    )
    row = 0
    for i, (qid, length) in enumerate(
        zip(tqdm(plan.qids, desc="queries", unit="query"), plan.text_lengths, strict=True)
    ):
        tokens, pool = load_text_features(card, qid)  # (T, Dt), (Dt,)
        if tokens.shape[0] != length:
            raise RuntimeError(f"qid {qid!r}: {tokens.shape[0]} tokens read but {length} in the header pass")
        tdata[row : row + length] = tokens
        pooled[i] = pool
        row += int(length)
    tdata.flush()
    pooled.flush()
    del tdata, pooled


def _read_index(path: Path) -> dict[str, Any] | None:
    try:
        with open(path / INDEX, encoding="utf-8") as f:
            index: dict[str, Any] = json.load(f)
        return index
    except (OSError, json.JSONDecodeError):
        return None


def _clean_stale(out: Path) -> None:
    """Remove temp/old siblings left by builds that were killed (their process is gone)."""
    for stale in out.parent.glob(f".{out.name}.*-*"):
        try:
            pid = int(stale.name.rsplit("-", 1)[1])
        except ValueError:
            continue
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            log.info("removing %s left by an interrupted build", stale)
            shutil.rmtree(stale, ignore_errors=True)
        except PermissionError:
            pass


def _sources(card: DatasetCard, vids: list[str], qids: list[QueryId], ann_files: list[Path]) -> list[Path]:
    sources = ann_files + [video_path(s, v) for s in card.video_features for v in vids]
    return sources + [text_path(card, q) for q in qids]


def _stale_reason(card: DatasetCard, old: dict[str, Any], splits: list[str], dtype: str | None) -> str | None:
    """Why the store indexed by ``old`` cannot serve ``splits`` (None: it can, as it is)."""
    have = [str(x) for x in old.get("splits") or []]
    missing = [x for x in splits if x not in have]
    if missing:
        return f"it holds splits {have}; missing {missing}"
    if dtype is not None and old.get("dtype") != dtype:
        return f"its dtype is {old.get('dtype')}, not {dtype}"
    try:
        vids, qids, ann_files, _ = _collect(card, have)
        spec = {
            "version": STORE_VERSION,
            "dtype": old.get("dtype"),
            "splits": sorted(have),
            "card": _card_spec(card),
        }
        fingerprint = _fingerprint(spec, _sources(card, vids, qids, ann_files))
    except (ValueError, KeyError, OSError) as e:
        return f"its splits {have} cannot be checked against the card: {e}"
    if fingerprint != old.get("fingerprint"):
        return "the card or its source files (annotations, features) changed since it was built"
    return None


def build_feature_store(
    card: DatasetCard,
    splits: list[str],
    out_dir: Path | None = None,
    dtype: str = "float16",
    *,
    reuse_only: bool = False,
) -> Path:
    """Convert the features of ``splits`` into a store at ``out_dir`` (default ``{card.root}/store``).

    Returns the store path. An up-to-date store there holding ``splits`` (or more) is used as it is
    (see module doc). ``reuse_only``: never rebuild an existing store, refuse one that is missing
    splits or out of date (``ValueError`` naming what is missing); a folder that does not exist yet
    is built. Raises :class:`~masra.datasets.types.MissingFilesError` before writing anything if
    files are absent.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if not splits:
        raise ValueError("build_feature_store needs at least one split")
    out = Path(out_dir) if out_dir is not None else card.root / "store"
    splits = list(dict.fromkeys(splits))
    out.parent.mkdir(parents=True, exist_ok=True)
    with RunLock(out.parent / f".{out.name}.lock", f"feature store {out}", wait=LOCK_WAIT_S):
        old = _read_index(out)
        if old is not None:
            reason = _stale_reason(card, old, splits, None if reuse_only else dtype)
            if reason is None:
                log.info(
                    "feature store %s is up to date (splits %s, %d videos, %d queries); not rebuilt",
                    out, old.get("splits"), len(old.get("video_ids", [])), len(old.get("qids", [])),
                )  # fmt: skip
                return out
            if reuse_only:
                raise ValueError(
                    f"feature store {out} cannot be used for splits {splits}: {reason}. It is not rebuilt "
                    f"because it was named; rebuild it with `masra data build-store --dataset {card.name} "
                    + " ".join(f"--split {x}" for x in splits)
                    + f" --out {out}`, or delete it"
                )
            log.warning("rebuilding feature store %s: %s", out, reason)
        elif out.exists() and any(out.iterdir()):
            raise ValueError(
                f"{out} exists and is not a feature store (no readable {INDEX}); refusing to replace it"
            )
        else:
            log.info("building feature store %s (splits %s)", out, splits)
        return _build(card, splits, out, dtype)


def find_feature_store(
    card: DatasetCard, splits: list[str], path: str | os.PathLike[str] | None = None
) -> FeatureStore | None:
    """The up-to-date store at ``path`` (default ``{card.root}/store``) holding ``splits``, or None.

    Never builds, rebuilds or waits: evaluation uses the store training read (same bytes, same
    dtype) when there is one, and the feature files otherwise. Any dtype is accepted.
    """
    out = Path(path) if path is not None else card.root / "store"
    old = _read_index(out)
    if old is None:
        return None
    reason = _stale_reason(card, old, list(dict.fromkeys(splits)), None)
    if reason is not None:
        log.info("feature store %s not used: %s", out, reason)
        return None
    return FeatureStore.open(out)


def _build(card: DatasetCard, splits: list[str], out: Path, dtype: str) -> Path:
    vids, qids, ann_files, durations = _collect(card, splits)
    find_missing(card, vids, qids)
    spec = {"version": STORE_VERSION, "dtype": dtype, "splits": sorted(splits), "card": _card_spec(card)}
    fingerprint = _fingerprint(spec, _sources(card, vids, qids, ann_files))
    out.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale(out)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        t0 = time.perf_counter()
        plan = _plan(card, vids, qids)
        lengths = dict(zip(plan.video_ids, plan.video_lengths.tolist(), strict=True))
        warn_lengths(check_lengths(durations, lengths, card.clip_len), f"feature store {out}")
        _write(card, plan, tmp, dtype)
        index = {
            "version": STORE_VERSION,
            "dataset": card.name,
            "splits": splits,
            "dtype": dtype,
            "clip_len": card.clip_len,
            "max_clips": card.max_clips,
            "video_dim": sum(f.dim for f in card.video_features),
            "text_dim": card.text_features.dim,
            "card": _card_spec(card),
            "video_ids": plan.video_ids,
            "qids": [qid_key(q) for q in plan.qids],
            "fingerprint": fingerprint,
        }
        with open(tmp / INDEX, "w", encoding="utf-8") as f:
            json.dump(index, f)
            f.flush()
            os.fsync(f.fileno())
        _swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info(
        "built feature store %s: %d videos (%d clips), %d queries in %.1f s",
        out, len(vids), int(plan.video_lengths.sum()), len(qids), time.perf_counter() - t0,
    )  # fmt: skip
    return out


def _swap_in(tmp: Path, out: Path) -> None:
    """Move a complete store into place; an existing store is moved aside first, then deleted."""
    if not out.exists():
        os.rename(tmp, out)
        return
    aside = out.parent / f".{out.name}.old-{os.getpid()}"
    shutil.rmtree(aside, ignore_errors=True)
    os.rename(out, aside)
    os.rename(tmp, out)
    shutil.rmtree(aside, ignore_errors=True)


class FeatureStore:
    """A read-only view of a built store. Open with :meth:`open`; every array is a memmap."""

    def __init__(self, path: Path, index: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.path = path
        self.index = index
        self.video_data: np.ndarray = arrays["video_data"]  # (total_clips, Dv)
        self.video_offsets: np.ndarray = arrays["video_offsets"]  # (num_videos,) int64
        self.video_lengths: np.ndarray = arrays["video_lengths"]  # (num_videos,) int64
        self.text_data: np.ndarray = arrays["text_data"]  # (total_tokens, Dt)
        self.text_offsets: np.ndarray = arrays["text_offsets"]  # (num_queries,) int64
        self.text_lengths: np.ndarray = arrays["text_lengths"]  # (num_queries,) int64
        self.text_pooled: np.ndarray = arrays["text_pooled"]  # (num_queries, Dt)
        self.video_ids: list[str] = list(index["video_ids"])
        self.qids: list[str] = list(index["qids"])
        self._vrow = {v: i for i, v in enumerate(self.video_ids)}
        self._trow = {q: i for i, q in enumerate(self.qids)}

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> FeatureStore:
        p = Path(path)
        index = _read_index(p)
        if index is None:
            raise FileNotFoundError(
                f"no feature store at {p} (no readable {INDEX}); build it with `masra data build-store`"
            )
        if index.get("version") != STORE_VERSION:
            raise ValueError(
                f"{p}: store version {index.get('version')} but this code reads {STORE_VERSION}; rebuild it"
            )
        arrays = {name: np.load(p / f"{name}.npy", mmap_mode="r", allow_pickle=False) for name in _ARRAYS}
        nv, nq = len(index["video_ids"]), len(index["qids"])
        checks = [
            arrays["video_offsets"].shape == (nv,) and arrays["video_lengths"].shape == (nv,),
            arrays["text_offsets"].shape == (nq,) and arrays["text_lengths"].shape == (nq,),
            arrays["video_data"].shape == (int(arrays["video_lengths"].sum()), index["video_dim"]),
            arrays["text_data"].shape == (int(arrays["text_lengths"].sum()), index["text_dim"]),
            arrays["text_pooled"].shape == (nq, index["text_dim"]),
        ]
        if not all(checks):
            raise ValueError(f"{p}: store arrays do not match {INDEX}; rebuild it")
        return cls(p, index, arrays)

    @property
    def video_dim(self) -> int:
        return int(self.index["video_dim"])

    @property
    def text_dim(self) -> int:
        return int(self.index["text_dim"])

    @property
    def clip_len(self) -> float:
        return float(self.index["clip_len"])

    @property
    def dtype(self) -> np.dtype:
        return self.video_data.dtype

    def video_row(self, vid: str) -> int:
        try:
            return self._vrow[vid]
        except KeyError:
            raise KeyError(
                f"video {vid!r} is not in the feature store {self.path} ({len(self.video_ids)} videos)"
            ) from None

    def text_row(self, qid: QueryId) -> int:
        key = qid_key(qid)
        try:
            return self._trow[key]
        except KeyError:
            raise KeyError(
                f"qid {key!r} is not in the feature store {self.path} ({len(self.qids)} queries)"
            ) from None

    def video(self, vid: str) -> np.ndarray:
        """(L, Dv) view into ``video_data`` (no copy)."""
        i = self.video_row(vid)
        start = int(self.video_offsets[i])
        return self.video_data[start : start + int(self.video_lengths[i])]

    def text(self, qid: QueryId) -> np.ndarray:
        """(T, Dt) view into ``text_data`` (no copy)."""
        i = self.text_row(qid)
        start = int(self.text_offsets[i])
        return self.text_data[start : start + int(self.text_lengths[i])]

    def pooled(self, qid: QueryId) -> np.ndarray:
        """(Dt,) pooled query feature."""
        return self.text_pooled[self.text_row(qid)]

    def holds(self, vids: Iterable[str], qids: Iterable[QueryId]) -> bool:
        """Whether every video of ``vids`` and every query of ``qids`` is in the store."""
        return all(v in self._vrow for v in vids) and all(qid_key(q) in self._trow for q in qids)

    def __repr__(self) -> str:
        return (
            f"FeatureStore({str(self.path)!r}, videos={len(self.video_ids)}, queries={len(self.qids)}, "
            f"video_dim={self.video_dim}, text_dim={self.text_dim}, dtype={self.dtype})"
        )


__all__ = ["FeatureStore", "build_feature_store", "find_feature_store", "qid_key"]
