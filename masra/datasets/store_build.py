"""Building the feature store (layout and up-to-date rule: :mod:`masra.datasets.store`).

:func:`build_feature_store` converts a card's splits once, under a lock, into a hidden sibling folder
that is renamed into place when complete; :func:`find_feature_store` opens an up-to-date store that
holds some splits, never building one. A store may also hold further videos without queries
(``videos``: the prior run's videos of a collection without annotation files, whose pseudo-queries
train on them); its index then lists them under ``videos`` and its fingerprint covers their files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Sequence
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
from masra.datasets.store import (
    DTYPES,
    INDEX,
    LOCK_WAIT_S,
    STORE_VERSION,
    FeatureStore,
    qid_key,
    read_index,
)
from masra.datasets.types import QueryId
from masra.runlock import RunLock

log = logging.getLogger(__name__)

__all__ = ["build_feature_store", "find_feature_store"]


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
    card: DatasetCard, splits: list[str], videos: Sequence[str] = ()
) -> tuple[list[str], list[QueryId], list[Path], dict[str, float]]:
    """Sorted vids (those of ``splits`` and ``videos``), qids, the annotation files read, and each
    split vid's annotated duration."""
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
    vids.update(videos)
    if not qids and not videos:
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
    """First row of each item: (n,) int64 (empty for no item: a store of videos alone has no query)."""
    return np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)[: len(lengths)]


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


def _spec(card: DatasetCard, dtype: Any, splits: list[str], videos: Sequence[str]) -> dict[str, Any]:
    """What a store's fingerprint covers besides its source files (``videos`` only when given, so a
    store of splits alone keeps the fingerprint it always had)."""
    spec = {"version": STORE_VERSION, "dtype": dtype, "splits": sorted(splits), "card": _card_spec(card)}
    if videos:
        spec["videos"] = sorted(videos)
    return spec


def _stale_reason(
    card: DatasetCard, old: dict[str, Any], splits: list[str], dtype: str | None, videos: Sequence[str] = ()
) -> str | None:
    """Why the store indexed by ``old`` cannot serve ``splits`` and ``videos`` (None: it can, as it is)."""
    have = [str(x) for x in old.get("splits") or []]
    missing = [x for x in splits if x not in have]
    if missing:
        return f"it holds splits {have}; missing {missing}"
    held = set(old.get("video_ids") or [])
    lacking = [v for v in videos if v not in held]
    if lacking:
        return (
            f"it lacks {len(lacking)} of the {len(videos)} videos asked for (e.g. {', '.join(lacking[:3])})"
        )
    if dtype is not None and old.get("dtype") != dtype:
        return f"its dtype is {old.get('dtype')}, not {dtype}"
    extra = [str(v) for v in old.get("videos") or []]
    try:
        vids, qids, ann_files, _ = _collect(card, have, extra)
        spec = _spec(card, old.get("dtype"), have, extra)
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
    videos: Sequence[str] = (),
) -> Path:
    """Convert the features of ``splits`` (and of ``videos``, videos without queries) into a store at
    ``out_dir`` (default ``{card.root}/store``).

    Returns the store path. An up-to-date store there holding ``splits`` and ``videos`` (or more) is
    used as it is (see module doc). ``reuse_only``: never rebuild an existing store, refuse one that is missing
    splits or out of date (``ValueError`` naming what is missing); a folder that does not exist yet
    is built. Raises :class:`~masra.datasets.types.MissingFilesError` before writing anything if
    files are absent.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if not splits and not videos:
        raise ValueError("build_feature_store needs at least one split (or videos)")
    out = Path(out_dir) if out_dir is not None else card.root / "store"
    splits = list(dict.fromkeys(splits))
    videos = sorted(set(videos))
    out.parent.mkdir(parents=True, exist_ok=True)
    with RunLock(out.parent / f".{out.name}.lock", f"feature store {out}", wait=LOCK_WAIT_S):
        old = read_index(out)
        if old is not None:
            reason = _stale_reason(card, old, splits, None if reuse_only else dtype, videos)
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
        return _build(card, splits, out, dtype, videos)


def find_feature_store(
    card: DatasetCard, splits: list[str], path: str | os.PathLike[str] | None = None
) -> FeatureStore | None:
    """The up-to-date store at ``path`` (default ``{card.root}/store``) holding ``splits``, or None.

    Never builds, rebuilds or waits: evaluation uses the store training read (same bytes, same
    dtype) when there is one, and the feature files otherwise. Any dtype is accepted.
    """
    out = Path(path) if path is not None else card.root / "store"
    old = read_index(out)
    if old is None:
        return None
    reason = _stale_reason(card, old, list(dict.fromkeys(splits)), None)
    if reason is not None:
        log.info("feature store %s not used: %s", out, reason)
        return None
    return FeatureStore.open(out)


def _build(card: DatasetCard, splits: list[str], out: Path, dtype: str, videos: Sequence[str] = ()) -> Path:
    vids, qids, ann_files, durations = _collect(card, splits, videos)
    find_missing(card, vids, qids)
    spec = _spec(card, dtype, splits, videos)
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
        if videos:
            index["videos"] = list(videos)
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
