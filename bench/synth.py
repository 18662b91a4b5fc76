"""Synthetic QVHighlights-scale data, written as a real dataset card, feature store and prior shards.

The feature *values* are random (speed does not depend on them); the *shapes* are QVHighlights':
7,218 train queries over 7,100 videos (1,550 val queries over 1,519 videos), 75 clips of 2 s with
SlowFast (2,304) + CLIP (512) features (+ 2 temporal-endpoint dims added by the loader), query tokens
of 512 dims, at most 32 of them. Prior embeddings (events + one caption per clip) are 384-d, the
MiniLM space that ``masra/configs/qvhighlights.yaml`` names (``priors_encoder: minilm``).

Window structure (durations, windows, saliency labels) comes from the real annotation files when a
folder holding ``highlight_{train,val}_release.jsonl`` is given (default ``../shared/datasets/
qvhighlights`` next to the checkout), else from a generator with the same statistics (97 % of videos
150 s long, 1.8 windows per query on average, windows ~24 s long). :attr:`SynthData.window_source`
says which one was used; every report prints it.

Layout of ``out``::

    qvh_synth.yaml                      dataset card (format qvhighlights), root = out
    annotations/highlight_{train,val}_release.jsonl
    store/                              feature store (masra.datasets.store layout; opened by FeatureStore)
    priors/synth/embeddings/minilm/shard-00000.parquet   EMBED_SCHEMA rows of the train videos

Nothing here reads per-video npz files: the store is written directly, in the layout
:class:`masra.datasets.store.FeatureStore` opens, so training and evaluation read it through the real
loader (``FeatureStore.open`` -> ``build_split``, ``read_prior_table``).

Every random draw is made first, in a fixed order; the files are then written by a few threads (the
store's rows in blocks at their offsets, the prior shard through the stage-1 atomic writer), so what
is written does not depend on the number of threads or on the order in which they finish.
"""

from __future__ import annotations

import json
import logging
import math
import os
from concurrent.futures import Executor, Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import yaml
from tqdm.auto import tqdm

from masra.datasets.store import INDEX, STORE_VERSION
from masra.priors.run import PriorRun
from masra.priors.schema import EMBED_SCHEMA, SCHEMA_VERSION
from masra.priors.shards import write_table_atomic

log = logging.getLogger(__name__)

__all__ = ["PRIOR_ENCODER", "PRIOR_RUN", "SynthConfig", "SynthData", "default_annotation_dir", "make_synth"]

CARD_NAME = "qvh_synth.yaml"
PRIOR_RUN = "synth"
PRIOR_ENCODER = "minilm"
_FILES = {"train": "highlight_train_release.jsonl", "val": "highlight_val_release.jsonl"}


def default_annotation_dir() -> Path:
    """``../shared/datasets/qvhighlights`` beside the source checkout (may not exist)."""
    return Path(__file__).resolve().parents[2] / "shared" / "datasets" / "qvhighlights"


@dataclass(frozen=True)
class SynthConfig:
    """Sizes of the synthetic dataset (defaults: QVHighlights train + val).

    Attributes:
        out: output folder.
        train_queries / train_videos / val_queries / val_videos: split sizes; with real annotations
            the first queries of each file are taken (the videos follow from them).
        clip_len / max_clips: 2 s clips, 75 per 150-s video.
        slowfast_dim / clip_dim / text_dim / prior_dim: feature widths.
        max_tokens: longest query in tokens.
        annotations: folder with the real jsonl files, or None for the generated structure.
        priors: write prior-embedding shards for the train videos.
        dtype: store precision.
        seed: seeds every random choice.
    """

    out: Path
    train_queries: int = 7218
    train_videos: int = 7100
    val_queries: int = 1550
    val_videos: int = 1519
    clip_len: float = 2.0
    max_clips: int = 75
    slowfast_dim: int = 2304
    clip_dim: int = 512
    text_dim: int = 512
    prior_dim: int = 384
    max_tokens: int = 32
    annotations: Path | None = None
    priors: bool = True
    dtype: str = "float16"
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("train_queries", "train_videos", "val_queries", "val_videos", "max_clips", "max_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"SynthConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.train_videos > self.train_queries or self.val_videos > self.val_queries:
            raise ValueError("SynthConfig: every video needs at least one query (videos <= queries)")
        for name in ("slowfast_dim", "clip_dim", "text_dim", "prior_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"SynthConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.clip_len <= 0:
            raise ValueError(f"SynthConfig.clip_len must be > 0, got {self.clip_len}")
        if self.dtype not in ("float16", "float32"):
            raise ValueError(f"SynthConfig.dtype must be float16 or float32, got {self.dtype!r}")
        if self.annotations is not None and not all(
            (Path(self.annotations) / f).is_file() for f in _FILES.values()
        ):
            raise ValueError(f"SynthConfig.annotations: {self.annotations} lacks {sorted(_FILES.values())}")


@dataclass
class SynthData:
    """What :func:`make_synth` wrote."""

    root: Path
    card_path: Path
    store_path: Path
    prior_dir: Path | None
    window_source: str
    counts: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        c = self.counts
        return (
            f"{c.get('train_queries', 0)} train queries / {c.get('train_videos', 0)} videos, "
            f"{c.get('val_queries', 0)} val queries / {c.get('val_videos', 0)} videos; "
            f"window structure: {self.window_source}"
        )


def num_clips(duration: float, clip_len: float, max_clips: int) -> int:
    """Clips of a video: the duration rounded half-up to whole clips, capped (150 s / 2 s = 75)."""
    return min(max(1, math.floor(duration / clip_len + 0.5)), max_clips)


# ---- window structure ---------------------------------------------------------------------------
def _real_rows(path: Path, n_queries: int, n_videos: int) -> list[dict[str, Any]]:
    """The first queries of a real jsonl file, stopping once ``n_videos`` videos are covered."""
    rows: list[dict[str, Any]] = []
    vids: set[str] = set()
    with open(path, encoding="utf-8-sig") as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            if r["vid"] not in vids and len(vids) >= n_videos:
                continue
            vids.add(r["vid"])
            rows.append(r)
            if len(rows) >= n_queries:
                break
    return rows


def _synthetic_rows(
    rng: np.random.Generator, n_queries: int, n_videos: int, cfg: SynthConfig, split: str
) -> list[dict[str, Any]]:
    """Rows with QVHighlights-like statistics (see the module doc); every video gets >= 1 query."""
    step = cfg.clip_len
    durations = np.where(
        rng.random(n_videos) < 0.97, 150.0, step * rng.integers(5, 74, size=n_videos)
    )  # (V,) seconds
    owner = np.concatenate([np.arange(n_videos), rng.integers(0, n_videos, size=n_queries - n_videos)])
    rng.shuffle(owner)
    base = 0 if split == "train" else 10_000_000
    rows = []
    for j, v in enumerate(owner):
        dur = float(durations[v])
        n_clip = num_clips(dur, step, cfg.max_clips)
        n_win = min(1 + int(rng.geometric(1 / 1.8)) - 1, 6)
        lengths = np.clip(rng.geometric(1 / 12.0, size=n_win), 1, n_clip)  # clips per window
        windows: list[list[float]] = []
        used = np.zeros(n_clip, bool)
        for length in lengths:
            start = int(rng.integers(0, n_clip - length + 1))
            if used[start : start + length].any():
                continue
            used[start : start + length] = True
            windows.append([start * step, min((start + int(length)) * step, dur)])
        windows.sort()
        ids = np.flatnonzero(used).tolist()
        rows.append(
            {
                "qid": base + j,
                "query": "synthetic query " + " ".join(["word"] * int(rng.integers(4, 20))),
                "duration": dur,
                "vid": f"{split}_{v:05d}",
                "relevant_windows": windows,
                "relevant_clip_ids": ids,
                "saliency_scores": rng.integers(0, 5, size=(len(ids), 3)).tolist(),
            }
        )
    return rows


# ---- writers ------------------------------------------------------------------------------------
def _write_card(cfg: SynthConfig, root: Path) -> Path:
    card = {
        "name": "qvh_synth",
        "format": "qvhighlights",
        "root": str(root.resolve()),
        "annotations": {k: f"annotations/{v}" for k, v in _FILES.items()},
        "clip_len": cfg.clip_len,
        "max_clips": cfg.max_clips,
        "video_features": {
            "slowfast": {"dir": "features/slowfast", "dim": cfg.slowfast_dim},
            "clip": {"dir": "features/clip", "dim": cfg.clip_dim},
        },
        "temporal_endpoint": True,
        "text_features": {"dir": "features/text", "key": "last_hidden_state", "dim": cfg.text_dim},
        "video_dir": "videos",
        "prior_dir": "priors",
    }
    path = root / CARD_NAME
    path.write_text("# synthetic QVHighlights-scale data (bench/synth.py)\n" + yaml.safe_dump(card))
    return path


def _unit_rows(rng: np.random.Generator, n: int, dims: list[int]) -> np.ndarray:
    """(n, sum dims) float32 rows, each block L2-normalised like the real loader's feature types."""
    parts = []
    for d in dims:
        x = rng.standard_normal((n, d), dtype=np.float32)
        parts.append(x / np.linalg.norm(x, axis=1, keepdims=True))
    return np.concatenate(parts, axis=1)


_DRAW_ROWS = 1 << 16  # store rows per index draw; fixed, so the data never depend on how writing is split
_WRITE_ROWS = 1 << 14  # store rows per write task (~90 MB of video rows at float16)


@dataclass
class _StorePlan:
    """Everything random about the feature store, drawn up front (the writers draw nothing).

    Attributes:
        pools: ``video_data`` / ``text_data`` -> (P, D) unit rows in the store dtype.
        picks: ``video_data`` / ``text_data`` -> (N,) int64 pool row of every store row.
        pooled: (Q, text_dim) ``text_pooled`` rows.
        lengths: ``video`` / ``text`` -> (V,) / (Q,) int64 rows per video / query.
    """

    pools: dict[str, np.ndarray]
    picks: dict[str, np.ndarray]
    pooled: np.ndarray
    lengths: dict[str, np.ndarray]


def _draw_picks(rng: np.random.Generator, pool_rows: int, total: int) -> np.ndarray:
    """(total,) int64 pool rows, drawn in blocks of ``_DRAW_ROWS`` (the random stream is fixed by this)."""
    blocks = [
        rng.integers(0, pool_rows, size=min(_DRAW_ROWS, total - a)) for a in range(0, total, _DRAW_ROWS)
    ]
    return np.concatenate(blocks) if blocks else np.zeros(0, np.int64)


def _plan_store(
    cfg: SynthConfig, videos: dict[str, int], qlen: dict[str, int], rng: np.random.Generator
) -> _StorePlan:
    """Draw the store's rows: pools of random unit rows, then which pool row fills each store row."""
    vlen = np.array([videos[v] for v in videos], np.int64)
    tlen = np.array([qlen[q] for q in qlen], np.int64)
    pool_v = _unit_rows(rng, 4096, [cfg.slowfast_dim, cfg.clip_dim]).astype(cfg.dtype)
    pool_t = _unit_rows(rng, 4096, [cfg.text_dim]).astype(cfg.dtype)
    picks = {
        "video_data": _draw_picks(rng, len(pool_v), int(vlen.sum())),
        "text_data": _draw_picks(rng, len(pool_t), int(tlen.sum())),
    }
    pooled = pool_t[rng.integers(0, len(pool_t), size=len(tlen))]
    return _StorePlan(
        {"video_data": pool_v, "text_data": pool_t}, picks, pooled, {"video": vlen, "text": tlen}
    )


def _pwrite_all(fd: int, data: np.ndarray, offset: int) -> None:
    """Write all of ``data``'s bytes at ``offset`` (``os.pwrite`` may write fewer than asked)."""
    view = np.ascontiguousarray(data).data.cast("B")
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def _write_rows(path: Path, pool: np.ndarray, picks: np.ndarray, executor: Executor) -> list[Future[None]]:
    """Start writing the .npy file ``pool[picks]`` (N, D) in row blocks on ``executor``.

    The header is written and the file sized here; each task gathers its rows and writes them at
    their offset (numpy's gather and ``os.pwrite`` release the GIL, so the tasks run in parallel).
    Nothing is synced to disk: readers on this machine see the data through the page cache.
    """
    header = {
        "descr": np.lib.format.dtype_to_descr(pool.dtype),
        "fortran_order": False,
        "shape": (len(picks), pool.shape[1]),
    }
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        offset = f.tell()
        f.truncate(offset + len(picks) * pool.shape[1] * pool.itemsize)
    row_bytes = pool.shape[1] * pool.itemsize

    def task(a: int) -> None:
        rows = np.take(pool, picks[a : a + _WRITE_ROWS], axis=0, mode="clip")  # (n, D); picks are in range
        fd = os.open(path, os.O_WRONLY)
        try:
            _pwrite_all(fd, rows, offset + a * row_bytes)
        finally:
            os.close(fd)

    return [executor.submit(task, a) for a in range(0, len(picks), _WRITE_ROWS)]


def _write_store(
    cfg: SynthConfig,
    out: Path,
    videos: dict[str, int],
    qlen: dict[str, int],
    plan: _StorePlan,
    executor: Executor,
) -> list[Future[None]]:
    """Write the FeatureStore files; returns the pending row writes of the two data arrays."""
    out.mkdir(parents=True, exist_ok=True)
    for name, lengths in plan.lengths.items():
        np.save(out / f"{name}_lengths.npy", lengths)
        np.save(out / f"{name}_offsets.npy", np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64))
    futures = [
        f
        for name in ("video_data", "text_data")
        for f in _write_rows(out / f"{name}.npy", plan.pools[name], plan.picks[name], executor)
    ]
    np.save(out / "text_pooled.npy", plan.pooled)
    index = {
        "version": STORE_VERSION,
        "dataset": "qvh_synth",
        "splits": ["train", "val"],
        "dtype": cfg.dtype,
        "clip_len": cfg.clip_len,
        "max_clips": cfg.max_clips,
        "video_dim": cfg.slowfast_dim + cfg.clip_dim,
        "text_dim": cfg.text_dim,
        "card": {"synthetic": True},
        "video_ids": list(videos),
        "qids": list(qlen),
        "fingerprint": f"synthetic-seed{cfg.seed}",
    }
    (out / INDEX).write_text(json.dumps(index))
    return futures


def _list_array(flat: np.ndarray, lengths: np.ndarray, value_type: pa.DataType) -> pa.Array:
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, type=value_type))


def _prior_table(
    cfg: SynthConfig, videos: dict[str, int], durations: dict[str, float], rng: np.random.Generator
) -> pa.Table:
    """EMBED_SCHEMA rows of ``videos``: 3-8 events per video and one caption embedding per clip."""
    vids = list(videos)
    n_clip = np.array([videos[v] for v in vids], np.int64)
    n_ev = rng.integers(3, 9, size=len(vids))
    starts, ends = [], []
    for v, k in zip(vids, n_ev, strict=True):
        cuts = np.sort(rng.uniform(0.0, durations[v], size=2 * int(k))).reshape(-1, 2)
        starts.append(cuts[:, 0])
        ends.append(np.maximum(cuts[:, 1], cuts[:, 0] + 0.5))
    pool = _unit_rows(rng, 2048, [cfg.prior_dim]).astype(np.float16)
    ev_rows = pool[rng.integers(0, len(pool), size=int(n_ev.sum()))].reshape(-1)
    cap_rows = pool[rng.integers(0, len(pool), size=int(n_clip.sum()))].reshape(-1)
    dim = cfg.prior_dim
    inner_ev = _list_array(ev_rows, np.full(int(n_ev.sum()), dim), pa.float16())
    inner_cap = _list_array(cap_rows, np.full(int(n_clip.sum()), dim), pa.float16())
    ev_offsets = pa.array(np.concatenate([[0], np.cumsum(n_ev)]).astype(np.int32))
    cap_offsets = pa.array(np.concatenate([[0], np.cumsum(n_clip)]).astype(np.int32))
    table = pa.table(
        {
            "video_id": pa.array(vids, pa.string()),
            "encoder": pa.array([PRIOR_ENCODER] * len(vids), pa.string()),
            "dim": pa.array(np.full(len(vids), dim, np.int32)),
            "num_clips": pa.array(n_clip.astype(np.int32)),
            "event_start": _list_array(np.concatenate(starts).astype(np.float32), n_ev, pa.float32()),
            "event_end": _list_array(np.concatenate(ends).astype(np.float32), n_ev, pa.float32()),
            "event_emb": pa.ListArray.from_arrays(ev_offsets, inner_ev),
            "caption_emb": pa.ListArray.from_arrays(cap_offsets, inner_cap),
            "caption_valid": _list_array(np.ones(int(n_clip.sum()), bool), n_clip, pa.bool_()),
            "schema_version": pa.array(np.full(len(vids), SCHEMA_VERSION, np.int32)),
        },
        schema=EMBED_SCHEMA,
    )
    return table


def make_synth(cfg: SynthConfig) -> SynthData:
    """Write the synthetic dataset into ``cfg.out`` (replacing an earlier one there)."""
    root = Path(cfg.out)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(cfg.seed)
    sizes = {"train": (cfg.train_queries, cfg.train_videos), "val": (cfg.val_queries, cfg.val_videos)}
    rows: dict[str, list[dict[str, Any]]] = {}
    if cfg.annotations is not None:
        source = f"real QVHighlights annotation files ({cfg.annotations})"
        for split, (nq, nv) in sizes.items():
            rows[split] = _real_rows(Path(cfg.annotations) / _FILES[split], nq, nv)
    else:
        source = "generated with QVHighlights statistics (real annotation files not found)"
        for split, (nq, nv) in sizes.items():
            rows[split] = _synthetic_rows(rng, nq, nv, cfg, split)
    videos: dict[str, int] = {}
    durations: dict[str, float] = {}
    qlen: dict[str, int] = {}
    train_vids: dict[str, int] = {}
    for split, split_rows in rows.items():
        with open(root / "annotations" / _FILES[split], "w", encoding="utf-8") as f:
            for r in split_rows:
                f.write(json.dumps(r) + "\n")
                n = num_clips(float(r["duration"]), cfg.clip_len, cfg.max_clips)
                videos[r["vid"]] = n
                durations[r["vid"]] = float(r["duration"])
                if split == "train":
                    train_vids[r["vid"]] = n
                words = len(str(r["query"]).split())
                qlen[str(r["qid"])] = int(min(cfg.max_tokens, max(2, words + 2 + int(rng.integers(0, 3)))))
    card_path = _write_card(cfg, root)
    store_path = root / "store"
    plan = _plan_store(cfg, videos, qlen, rng)  # every random draw happens here, in a fixed order
    prior_table = _prior_table(cfg, train_vids, durations, rng) if cfg.priors else None
    prior_dir = root / "priors" if cfg.priors else None
    with ThreadPoolExecutor(max_workers=_write_workers()) as pool:
        pending: list[Future[Any]] = []
        if prior_table is not None and prior_dir is not None:  # the longest single write: start it first
            shard = PriorRun(prior_dir, PRIOR_RUN).embeddings_dir(PRIOR_ENCODER) / "shard-00000.parquet"
            pending.append(pool.submit(write_table_atomic, prior_table, shard))
        pending += _write_store(cfg, store_path, videos, qlen, plan, pool)
        for fut in tqdm(as_completed(pending), total=len(pending), desc="synth writes", leave=False):
            fut.result()
    counts = {
        "train_queries": len(rows["train"]),
        "train_videos": len({r["vid"] for r in rows["train"]}),
        "val_queries": len(rows["val"]),
        "val_videos": len({r["vid"] for r in rows["val"]}),
    }
    data = SynthData(root, card_path, store_path, prior_dir, source, counts)
    log.info("synthetic data in %s: %s", root, data.describe())
    return data


def _write_workers() -> int:
    """Threads that write the store and the prior shard: the CPUs this process may use, at most 8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus))


def resolve_annotations(flag: str | None) -> Path | None:
    """``auto`` -> the default folder when present; ``none`` -> generated; else the given folder."""
    if flag in (None, "auto"):
        d = Path(os.environ.get("MASRA_QVH_ANNOTATIONS", default_annotation_dir()))
        return d if all((d / f).is_file() for f in _FILES.values()) else None
    if flag == "none":
        return None
    return Path(flag)
