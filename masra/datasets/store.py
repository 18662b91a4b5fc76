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

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from masra.datasets.types import QueryId

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


def read_index(path: Path) -> dict[str, Any] | None:
    try:
        with open(path / INDEX, encoding="utf-8") as f:
            index: dict[str, Any] = json.load(f)
        return index
    except (OSError, json.JSONDecodeError):
        return None


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
        index = read_index(p)
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


__all__ = ["DTYPES", "INDEX", "STORE_VERSION", "FeatureStore", "qid_key", "read_index"]
