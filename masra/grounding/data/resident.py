"""Device-resident training and evaluation data: every batch is an index gather, nothing more.

At start-up :func:`build_split` copies one split out of the feature store (and the prior table) into
padded tensors, moves them to the training device in training precision, and from then on
:meth:`ResidentSplit.batch` builds a :class:`~masra.grounding.data.batch.Batch` by indexing those tensors.
There are no DataLoader workers, no per-sample file reads and no per-sample decompression.

Shapes (V videos, N queries, L = max clips kept, T = max tokens, S = max windows, E = max events):
    video (V, L, Dv) [+ 2 temporal-endpoint dims], video_len (V,)
    text (N, T, Dt), text_len (N,), q2v (N,) video row of each query
    spans (N, S, 2) normalised (center, width), span_count (N,), saliency (N, L)
    priors: event_spans (V, E, 2) normalised (start, end), event_emb (V, E, Dp), event_mask (V, E),
            caption_emb (V, L, Dp), caption_mask (V, L), has_prior (V,)

Videos longer than ``max_clips`` are cut; windows and events starting after the cut are dropped,
those crossing it are clipped, and both are counted in :class:`SplitReport` and the log.

Epoch order is a function of (seed, epoch) only (:func:`epoch_batches`), and each process takes its
own slice of every global batch, so multi-process runs need no sampler.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch
from torch import Tensor

from masra.datasets.card import DatasetCard
from masra.datasets.features import temporal_endpoint_features
from masra.datasets.lengths import check_lengths, warn_lengths
from masra.datasets.store import FeatureStore
from masra.datasets.types import Query
from masra.grounding.data.batch import Batch, PriorBatch, VideoBatch, host_to_device
from masra.priors.table import PriorTable

log = logging.getLogger(__name__)

__all__ = [
    "PriorCoverageError",
    "ResidentSplit",
    "SplitReport",
    "build_split",
    "epoch_batches",
    "gt_row",
    "label_subset",
]

_EPS = 1e-6


class PriorCoverageError(ValueError):
    """Training videos without priors while prior losses are on; names the count and a few ids."""


@dataclass
class SplitReport:
    """What building a split cut or dropped, so nothing changes silently."""

    queries: int = 0
    videos: int = 0
    videos_cut: int = 0
    windows_dropped: int = 0
    windows_clipped: int = 0
    queries_without_windows: int = 0
    texts_cut: int = 0
    events_dropped: int = 0
    videos_without_priors: int = 0
    missing_prior_ids: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return ", ".join(
            f"{f.name}={getattr(self, f.name)}" for f in fields(self) if f.name != "missing_prior_ids"
        )


@dataclass
class ResidentSplit:
    """One split held as padded tensors (see the module doc for shapes). Build with :func:`build_split`."""

    video: Tensor
    video_mask: Tensor
    text: Tensor
    text_mask: Tensor
    q2v: Tensor
    spans: Tensor
    span_count: Tensor
    saliency: Tensor
    event_spans: Tensor | None
    event_emb: Tensor | None
    event_mask: Tensor | None
    caption_emb: Tensor | None
    caption_mask: Tensor | None
    has_prior: Tensor | None
    meta: list[dict[str, Any]]
    queries: list[Query]
    report: SplitReport
    span_count_cpu: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.meta)

    @property
    def has_priors(self) -> bool:
        return self.has_prior is not None

    @property
    def device(self) -> torch.device:
        return self.video.device

    def to(self, device: torch.device | str) -> ResidentSplit:
        """Move every tensor (in place) and return self."""
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Tensor):
                setattr(self, f.name, value.to(device))
        return self

    def batch(self, idx: Tensor, with_priors: bool = True) -> Batch:
        """Gather the queries ``idx`` ((B,) int64, on the CPU) into a Batch on this split's device."""
        rows = idx.tolist()
        i = host_to_device(idx, self.device)
        v = self.q2v[i]  # (B,)
        sp = self.spans[i]  # (B, S, 2)
        priors = self._priors(v) if with_priors and self.has_prior is not None else None
        return Batch(
            video=self.video[v],
            video_mask=self.video_mask[v],
            text=self.text[i],
            text_mask=self.text_mask[i],
            spans=[sp[b, : self.span_count_cpu[r]] for b, r in enumerate(rows)],
            saliency=self.saliency[i],
            priors=priors,
            meta=[self.meta[r] for r in rows],
        )

    def video_batch(self, rows: Tensor) -> VideoBatch:
        """The videos ``rows`` ((Bv,) int64 video rows, on the CPU) with their priors, no query."""
        if self.has_prior is None:
            raise ValueError("video_batch needs a split built with priors")
        v = host_to_device(rows, self.device)
        return VideoBatch(video=self.video[v], video_mask=self.video_mask[v], priors=self._priors(v))

    def _priors(self, v: Tensor) -> PriorBatch:
        """The priors of video rows ``v`` ((B,) on this split's device)."""
        assert self.has_prior is not None and self.event_spans is not None and self.event_emb is not None
        assert self.event_mask is not None and self.caption_emb is not None and self.caption_mask is not None
        return PriorBatch(
            event_spans=self.event_spans[v],
            event_emb=self.event_emb[v],
            event_mask=self.event_mask[v],
            caption_emb=self.caption_emb[v],
            caption_mask=self.caption_mask[v],
            has_prior=self.has_prior[v],
        )

    @property
    def num_videos(self) -> int:
        return int(self.video.shape[0])

    def gt_rows(self) -> list[dict[str, Any]]:
        """Ground truth of every query in the QVHighlights jsonl form (windows uncut)."""
        return [gt_row(q) for q in self.queries]


def gt_row(q: Query) -> dict[str, Any]:
    """One ground-truth row: qid, query, vid, duration, relevant_windows (+ saliency labels if any)."""
    row: dict[str, Any] = {
        "qid": q.qid,
        "query": q.query,
        "vid": q.vid,
        "duration": q.duration,
        "relevant_windows": [[float(s), float(e)] for s, e in q.windows],
    }
    if q.relevant_clip_ids is not None and q.saliency_scores is not None:
        row["relevant_clip_ids"] = list(q.relevant_clip_ids)
        row["saliency_scores"] = [list(s) for s in q.saliency_scores]
    return row


def label_subset(num_queries: int, fraction: float, seed: int) -> Tensor:
    """Sorted (k,) int64 rows of the queries kept as labelled, ``k = max(1, round(fraction * n))``.

    The rows are a prefix of one seeded permutation, so for one seed a smaller fraction's queries are
    among a larger one's.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"label fraction must be in (0, 1], got {fraction!r}")
    order = np.random.default_rng([int(seed), 0x1ABE1]).permutation(num_queries)
    k = max(1, round(fraction * num_queries))
    return torch.from_numpy(np.sort(order[:k]).astype(np.int64))


def epoch_batches(
    num_items: int,
    global_batch: int,
    *,
    seed: int,
    epoch: int,
    rank: int = 0,
    world: int = 1,
    shuffle: bool = True,
) -> list[Tensor]:
    """This process's index batches of one epoch; the order depends only on (seed, epoch).

    Global batch ``s`` is ``order[s * G : (s + 1) * G]``; process ``rank`` takes its ``G / world``
    contiguous share. With one process the last batch may be smaller; with several the order is
    padded by wrapping around so every process runs the same number of equal batches.
    """
    if global_batch % world:
        raise ValueError(f"batch size {global_batch} is not a multiple of the {world} processes")
    if num_items < 1:
        raise ValueError("an epoch needs at least one item")
    if shuffle:
        gen = torch.Generator().manual_seed(int(seed) * 100_003 + int(epoch))
        order = torch.randperm(num_items, generator=gen)
    else:
        order = torch.arange(num_items)
    steps = -(-num_items // global_batch)
    if world > 1:
        need = steps * global_batch
        order = order.repeat(-(-need // num_items))[:need]
    per = global_batch // world
    out = []
    for s in range(steps):
        chunk = order[s * global_batch : (s + 1) * global_batch]
        out.append(chunk[rank * per : (rank + 1) * per] if world > 1 else chunk)
    return out


def _windows_on_grid(
    windows: tuple[tuple[float, float], ...], grid: float, report: SplitReport
) -> list[tuple[float, float]]:
    """Windows in seconds cut to ``[0, grid]``; counts dropped and clipped ones."""
    out = []
    for s, e in windows:
        if s >= grid - _EPS:
            report.windows_dropped += 1
            continue
        if e > grid + _EPS:
            report.windows_clipped += 1
        out.append((max(0.0, s), min(e, grid)))
    return out


def _saliency_row(q: Query, kept: list[tuple[float, float]], length: int, clip_len: float) -> np.ndarray:
    """(length,) float32: mean annotator score when given, else 1 for clips overlapping a window."""
    row = np.zeros(length, np.float32)
    if q.relevant_clip_ids is not None and q.saliency_scores is not None:
        if q.relevant_clip_ids:
            ids = np.asarray(q.relevant_clip_ids, dtype=np.int64)
            means = np.asarray(q.saliency_scores, dtype=np.float32).mean(axis=1)
            keep = (ids >= 0) & (ids < length)
            row[ids[keep]] = means[keep]
        return row
    for s, e in kept:
        a = int(np.floor(s / clip_len + _EPS))
        b = int(np.ceil(e / clip_len - _EPS))
        row[a : max(b, a + 1)] = 1.0
    return row


# Padded rows per block of :func:`_gather_rows`: bounds its temporary copy (~180 MB at 2,816 float16 dims).
GATHER_ROWS = 1 << 15


def _gather_rows(
    src: np.ndarray, offsets: np.ndarray, lengths: np.ndarray, out: torch.Tensor, width: int
) -> None:
    """Copy rows ``src[offsets[i] : offsets[i] + lengths[i]]`` of every item ``i`` to ``out[i, :lengths[i], :width]``.

    Items are copied in blocks: numpy slice copies (no cast) into a zeroed block buffer, then one torch
    cast-and-copy per block. A torch copy per item instead wakes torch's thread pool once per item:
    on a busy 2-core machine with 2 torch threads that took 388 s for QVHighlights' train split,
    against 56 s this way. (A numpy cast per block, single-threaded, was slower under load: 339 s
    against 207 s at load ~8.)
    """
    per_block = max(1, GATHER_ROWS // max(1, out.shape[1]))
    for a in range(0, len(offsets), per_block):
        b = min(a + per_block, len(offsets))
        buf = np.zeros((b - a, out.shape[1], width), dtype=src.dtype)
        for k in range(a, b):
            n = int(lengths[k])
            buf[k - a, :n] = src[int(offsets[k]) : int(offsets[k]) + n]
        out[a:b, :, :width] = torch.from_numpy(buf)  # one cast-and-copy per block


def build_split(
    card: DatasetCard,
    queries: list[Query],
    store: FeatureStore,
    *,
    max_clips: int,
    max_text_len: int,
    priors: PriorTable | None = None,
    prior_dim: int | None = None,
    allow_partial_priors: bool = False,
    drop_unlabelled: bool = False,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    name: str = "split",
) -> ResidentSplit:
    """Copy ``queries`` (their videos, texts, targets and, if given, priors) into a :class:`ResidentSplit`.

    Args:
        priors: prior table joined by video id; None trains/evaluates without priors.
        prior_dim: expected prior embedding size (the model's); a different table dim is an error.
        allow_partial_priors: videos missing from ``priors`` get ``has_prior`` False instead of an error.
        drop_unlabelled: drop queries left without any window after the cut (for training).
        dtype: precision of the resident features (targets stay float32).

    Raises:
        PriorCoverageError: priors missing for some videos and ``allow_partial_priors`` is False.
        ValueError: priors of another dim or clip count than the features.
    """
    report = SplitReport()
    clip_len = card.clip_len
    kept_q: list[Query] = []
    q_windows: list[list[tuple[float, float]]] = []
    vid_rows: dict[str, int] = {}
    for q in queries:
        row = store.video_row(q.vid)
        length = min(int(store.video_lengths[row]), max_clips)
        kept = _windows_on_grid(q.windows, length * clip_len, report)
        if not kept and drop_unlabelled:
            report.queries_without_windows += 1
            continue
        kept_q.append(q)
        q_windows.append(kept)
        vid_rows.setdefault(q.vid, row)
    if not kept_q:
        raise ValueError(f"{name}: no queries left to use ({report.summary()})")
    durations: dict[str, float] = {}
    for q in kept_q:
        durations.setdefault(q.vid, q.duration)
    full_lengths = {v: int(store.video_lengths[r]) for v, r in vid_rows.items()}
    warn_lengths(check_lengths(durations, full_lengths, clip_len), f"split {name!r}")
    vids = list(vid_rows)
    vindex = {v: i for i, v in enumerate(vids)}
    v_rows = np.array([vid_rows[v] for v in vids], np.int64)
    full_len = np.asarray(store.video_lengths[v_rows], np.int64)
    vlen = np.minimum(full_len, max_clips)
    report.queries, report.videos = len(kept_q), len(vids)
    report.videos_cut = int((full_len > max_clips).sum())
    n_v, n_q, l_max = len(vids), len(kept_q), int(vlen.max())
    tef = 2 if card.temporal_endpoint else 0
    dv = store.video_dim

    video = torch.zeros((n_v, l_max, dv + tef), dtype=dtype)
    video_mask = torch.arange(l_max)[None, :] < torch.from_numpy(vlen)[:, None]  # (V, L)
    _gather_rows(store.video_data, np.asarray(store.video_offsets[v_rows], np.int64), vlen, video, dv)
    if tef:
        for n in np.unique(vlen):  # one write per distinct length
            video[torch.from_numpy(vlen == n), : int(n), dv:] = torch.from_numpy(
                temporal_endpoint_features(int(n))
            ).to(dtype)

    t_rows = np.array([store.text_row(q.qid) for q in kept_q], np.int64)
    t_len = np.asarray(store.text_lengths[t_rows], np.int64)
    report.texts_cut = int((t_len > max_text_len).sum())
    t_len = np.minimum(t_len, max_text_len)
    t_max = int(t_len.max())
    text = torch.zeros((n_q, t_max, store.text_dim), dtype=dtype)
    text_mask = torch.arange(t_max)[None, :] < torch.from_numpy(t_len)[:, None]  # (N, T)
    _gather_rows(
        store.text_data, np.asarray(store.text_offsets[t_rows], np.int64), t_len, text, store.text_dim
    )
    s_max = max(1, max(len(w) for w in q_windows))
    spans = np.zeros((n_q, s_max, 2), dtype=np.float32)
    span_count = np.zeros(n_q, dtype=np.int64)
    saliency = np.zeros((n_q, l_max), dtype=np.float32)
    q2v = np.zeros(n_q, dtype=np.int64)
    meta: list[dict[str, Any]] = []
    for j, q in enumerate(kept_q):
        vi = vindex[q.vid]
        q2v[j] = vi
        n_clips = int(vlen[vi])
        if q_windows[j]:
            se = np.asarray(q_windows[j], dtype=np.float64) / (n_clips * clip_len)  # (N_j, 2) normalised
            spans[j, : len(se), 0] = se.mean(axis=1)
            spans[j, : len(se), 1] = se[:, 1] - se[:, 0]
            span_count[j] = len(se)
        saliency[j, :n_clips] = _saliency_row(q, q_windows[j], n_clips, clip_len)
        meta.append(
            {
                "qid": q.qid,
                "query": q.query,
                "vid": q.vid,
                "duration": q.duration,
                "clip_len": clip_len,
                "num_clips": n_clips,
            }
        )

    split = ResidentSplit(
        video=video,
        video_mask=video_mask,
        text=text,
        text_mask=text_mask,
        q2v=torch.from_numpy(q2v),
        spans=torch.from_numpy(spans),
        span_count=torch.from_numpy(span_count),
        saliency=torch.from_numpy(saliency),
        event_spans=None,
        event_emb=None,
        event_mask=None,
        caption_emb=None,
        caption_mask=None,
        has_prior=None,
        meta=meta,
        queries=kept_q,
        report=report,
        span_count_cpu=[int(c) for c in span_count],
    )
    if priors is not None:
        _join_priors(
            split, priors, vids, full_len, vlen, clip_len, prior_dim, allow_partial_priors, dtype, name
        )
    _log_report(name, report)
    return split.to(device)


def _join_priors(
    split: ResidentSplit,
    priors: PriorTable,
    vids: list[str],
    full_len: np.ndarray,
    vlen: np.ndarray,
    clip_len: float,
    prior_dim: int | None,
    allow_partial: bool,
    dtype: torch.dtype,
    name: str,
) -> None:
    """Attach per-video prior tensors to ``split`` (see :func:`build_split` for the errors)."""
    report = split.report
    if prior_dim is not None and priors.dim != prior_dim:
        raise ValueError(
            f"{name}: prior embeddings have dim {priors.dim} (encoder {priors.encoder}) but the model "
            f"expects prior_dim {prior_dim}"
        )
    missing = [v for v in vids if v not in priors.index]
    if missing and not allow_partial:
        raise PriorCoverageError(
            f"{name}: {len(missing)} of {len(vids)} videos have no priors (e.g. {', '.join(missing[:5])}); "
            "generate them, train with --no-masra, or set allow_partial_priors=true"
        )
    mismatch = [
        (v, int(priors.num_clips[priors.index[v]]), int(full_len[i]))
        for i, v in enumerate(vids)
        if v in priors.index and int(priors.num_clips[priors.index[v]]) != int(full_len[i])
    ]
    if mismatch:
        ex = ", ".join(f"{v} (priors {p}, features {f})" for v, p, f in mismatch[:5])
        raise ValueError(
            f"{name}: {len(mismatch)} videos have priors for another clip count than their features: {ex}"
        )
    report.videos_without_priors = len(missing)
    report.missing_prior_ids = missing[:20]
    n_v, l_max = len(vids), split.video.shape[1]
    has = np.array([v in priors.index for v in vids], dtype=bool)  # (V,)
    rows = np.array([priors.index.get(v, 0) for v in vids], dtype=np.int64)  # (V,) prior row (0 if none)
    grid = (vlen * clip_len).astype(np.float64)  # (V,) seconds of each (cut) clip grid

    # Captions: the first L clips of each video's prior row; nothing for videos without priors.
    l_p = min(l_max, priors.caption_emb.shape[1])
    clip_ok = np.arange(l_p)[None, :] < vlen[:, None]  # (V, l_p)
    cap_mask = np.zeros((n_v, l_max), dtype=bool)
    cap_mask[:, :l_p] = priors.caption_valid[rows, :l_p] & clip_ok & has[:, None]
    caption_emb = torch.zeros((n_v, l_max, priors.dim), dtype=dtype)
    caption_emb[:, :l_p] = torch.from_numpy(priors.caption_emb[rows, :l_p]).to(dtype)
    caption_emb[~torch.from_numpy(cap_mask)] = 0

    # Events: drop those starting past the cut (or empty), clip the rest, then pack the kept ones first.
    se = priors.event_se[rows].astype(np.float64)  # (V, E, 2) seconds
    real = (np.arange(se.shape[1])[None, :] < priors.event_count[rows][:, None]) & has[:, None]
    keep = real & (se[..., 0] < grid[:, None] - _EPS) & (se[..., 1] > se[..., 0])
    report.events_dropped = int((real & ~keep).sum())
    order = np.argsort(~keep, axis=1, kind="stable")  # kept events first, in their original order
    keep = np.take_along_axis(keep, order, axis=1)
    se = np.take_along_axis(se, order[..., None], axis=1)
    norm = (
        np.stack([np.maximum(se[..., 0], 0.0), np.minimum(se[..., 1], grid[:, None])], -1)
        / grid[:, None, None]
    )
    event_spans = torch.from_numpy(np.where(keep[..., None], norm, 0.0).astype(np.float32))  # (V, E, 2)
    emb = np.take_along_axis(priors.event_emb[rows], order[..., None], axis=1)  # (V, E, Dp)
    event_emb = torch.from_numpy(emb).to(dtype)
    event_mask = torch.from_numpy(keep)
    event_emb[~event_mask] = 0
    caption_mask = torch.from_numpy(cap_mask)
    has_prior = torch.from_numpy(has)
    split.event_spans, split.event_emb, split.event_mask = event_spans, event_emb, event_mask
    split.caption_emb, split.caption_mask, split.has_prior = caption_emb, caption_mask, has_prior


def _log_report(name: str, report: SplitReport) -> None:
    log.info("%s: %s", name, report.summary())
    if report.videos_cut or report.windows_dropped or report.windows_clipped:
        log.warning(
            "%s: %d videos longer than max_clips were cut: %d windows dropped, %d clipped, "
            "%d queries left without windows",
            name,
            report.videos_cut,
            report.windows_dropped,
            report.windows_clipped,
            report.queries_without_windows,
        )
    if report.videos_without_priors:
        log.warning(
            "%s: %d videos train without prior losses (no priors), e.g. %s",
            name,
            report.videos_without_priors,
            ", ".join(report.missing_prior_ids[:5]),
        )
