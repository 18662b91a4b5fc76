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
            caption_emb (V, L, Dp), caption_mask (V, L), has_prior (V,): one PriorBatch over all videos

Videos longer than ``max_clips`` are cut; windows and events starting after the cut are dropped,
those crossing it are clipped, and both are counted in :class:`SplitReport` and the log.

Pseudo-queries (prior events as queries, :mod:`masra.grounding.data.pseudo`) are rows after the
labelled queries: rows ``[0, num_labelled)`` are the labelled queries as without them, rows
``[num_labelled, N)`` the pseudo-queries, their token features copied from the encoded-text cache
as the labelled ones are from the feature store.

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
from masra.datasets.grid import num_clips as grid_clips
from masra.datasets.lengths import check_lengths, warn_lengths
from masra.datasets.store import FeatureStore
from masra.datasets.types import Query
from masra.grounding.data.batch import Batch, PriorBatch, VideoBatch, host_to_device
from masra.grounding.data.order import epoch_batches, label_subset
from masra.grounding.data.priors import PriorCoverageError, join_priors
from masra.grounding.data.pseudo import PseudoQuerySet
from masra.grounding.data.report import SplitReport
from masra.priors.table import PriorTable

log = logging.getLogger(__name__)

__all__ = [
    "PriorCoverageError",
    "ResidentSplit",
    "SplitReport",
    "build_split",
    "epoch_batches",
    "label_subset",
]

_EPS = 1e-6


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
    priors: PriorBatch | None
    meta: list[dict[str, Any]]
    queries: list[Query]
    report: SplitReport
    span_count_cpu: list[int] = field(default_factory=list)
    num_labelled: int = -1

    def __post_init__(self) -> None:
        if self.num_labelled < 0:  # no pseudo-queries: every row is a labelled query
            self.num_labelled = len(self.meta)

    def __len__(self) -> int:
        return len(self.meta)

    @property
    def num_pseudo(self) -> int:
        """Pseudo-query rows, after the labelled ones."""
        return len(self.meta) - self.num_labelled

    @property
    def has_priors(self) -> bool:
        return self.priors is not None

    @property
    def device(self) -> torch.device:
        return self.video.device

    def to(self, device: torch.device | str) -> ResidentSplit:
        """Move every tensor (in place) and return self."""
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Tensor | PriorBatch):
                setattr(self, f.name, value.to(device))
        return self

    def batch(self, idx: Tensor, with_priors: bool = True) -> Batch:
        """Gather the queries ``idx`` ((B,) int64, on the CPU) into a Batch on this split's device."""
        rows = idx.tolist()
        i = host_to_device(idx, self.device)
        v = self.q2v[i]  # (B,)
        sp = self.spans[i]  # (B, S, 2)
        priors = self._priors(v) if with_priors else None
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
        v = host_to_device(rows, self.device)
        priors = self._priors(v)
        if priors is None:
            raise ValueError("video_batch needs a split built with priors")
        return VideoBatch(video=self.video[v], video_mask=self.video_mask[v], priors=priors)

    def _priors(self, v: Tensor) -> PriorBatch | None:
        """The priors of video rows ``v`` ((B,) on this split's device), None without priors."""
        return None if self.priors is None else self.priors.rows(v)

    @property
    def num_videos(self) -> int:
        return int(self.video.shape[0])


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
    pad_to_max: bool = False,
    pseudo: PseudoQuerySet | None = None,
) -> ResidentSplit:
    """Copy ``queries`` (their videos, texts, targets and, if given, priors) into a :class:`ResidentSplit`.

    Args:
        priors: prior table joined by video id; None trains/evaluates without priors.
        prior_dim: expected prior embedding size (the model's); a different table dim is an error.
        allow_partial_priors: videos missing from ``priors`` get ``has_prior`` False instead of an error.
        drop_unlabelled: drop queries left without any window after the cut (for training).
        dtype: precision of the resident features (targets stay float32).
        pad_to_max: pad the clip axis to ``max_clips`` and the token axis to ``max_text_len`` instead
            of to the longest video / query of the split, so that every split of a dataset (and so
            every batch) has one shape (for ``torch.compile`` with CUDA graphs). The padding is
            masked out, so the numbers stay those of the tighter padding up to float rounding.
        pseudo: pseudo-queries of the split's videos, appended after the labelled queries (their
            windows cut like labelled ones; a pseudo-query left without a window is dropped and
            counted as ``past_cut`` in ``pseudo.report``, which becomes ``report.pseudo``).

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
    n_labelled = len(kept_q)
    p_rows: list[int] = []  # row of each kept pseudo-query's text in pseudo.texts
    if pseudo is not None:
        report.pseudo = pseudo.report
        scratch = SplitReport()  # pseudo windows are not counted with the labelled ones
        for q, text_row in zip(pseudo.queries, pseudo.text_rows.tolist(), strict=True):
            row = store.video_row(q.vid)
            kept = _windows_on_grid(
                q.windows, min(int(store.video_lengths[row]), max_clips) * clip_len, scratch
            )
            if not kept:
                pseudo.report.kept -= 1
                pseudo.report.drop("past_cut")
                continue
            kept_q.append(q)
            q_windows.append(kept)
            p_rows.append(int(text_row))
            vid_rows.setdefault(q.vid, row)
        pseudo.report.windows = sum(len(w) for w in q_windows[n_labelled:])
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
    report.queries, report.videos = n_labelled, len(vids)
    report.videos_cut = int((full_len > max_clips).sum())
    grid_len = np.array([grid_clips(durations[v], clip_len) for v in vids], np.int64)  # (V,) the grid's
    off_grid = [v for v, n, g in zip(vids, full_len, grid_len, strict=True) if n != g]
    report.features_off_grid, report.off_grid_ids = len(off_grid), off_grid[:20]
    n_v, n_q, l_max = len(vids), len(kept_q), max_clips if pad_to_max else int(vlen.max())
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

    t_rows = np.array([store.text_row(q.qid) for q in kept_q[:n_labelled]], np.int64)
    t_len = np.asarray(store.text_lengths[t_rows], np.int64)
    report.texts_cut = int((t_len > max_text_len).sum())
    if pseudo is not None:  # pseudo-query texts from the encoded-text cache, after the labelled ones
        p_len = np.asarray(pseudo.texts.lengths[p_rows], np.int64)
        pseudo.report.texts_cut = int((p_len > max_text_len).sum())
        t_len = np.concatenate([t_len, p_len])
    t_len = np.minimum(t_len, max_text_len)
    t_max = max_text_len if pad_to_max else int(t_len.max())
    text = torch.zeros((n_q, t_max, store.text_dim), dtype=dtype)
    text_mask = torch.arange(t_max)[None, :] < torch.from_numpy(t_len)[:, None]  # (N, T)
    _gather_rows(
        store.text_data,
        np.asarray(store.text_offsets[t_rows], np.int64),
        t_len[:n_labelled],
        text[:n_labelled],
        store.text_dim,
    )
    if pseudo is not None:
        if pseudo.texts.dim != store.text_dim:
            raise ValueError(
                f"{name}: pseudo-query texts are {pseudo.texts.dim}-d ({pseudo.texts.folder}); the query "
                f"features are {store.text_dim}-d"
            )
        _gather_rows(
            pseudo.texts.data,
            np.asarray(pseudo.texts.offsets[p_rows], np.int64),
            t_len[n_labelled:],
            text[n_labelled:],
            store.text_dim,
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
        priors=None,
        meta=meta,
        queries=kept_q,
        report=report,
        span_count_cpu=[int(c) for c in span_count],
        num_labelled=n_labelled,
    )
    if priors is not None:
        split.priors = join_priors(
            priors,
            vids,
            full_len,
            vlen,
            grid_len,
            split.video.shape[1],
            clip_len,
            max_clips=max_clips,
            prior_dim=prior_dim,
            allow_partial=allow_partial_priors,
            dtype=dtype,
            name=name,
            report=report,
        )
        # ESTA's event-clip membership depends on the video alone: derived here once, not every step.
        split.priors = split.priors.with_member(video_mask)
    _log_report(name, report)
    return split.to(device)


def _log_report(name: str, report: SplitReport) -> None:
    log.info("%s: %s", name, report.summary())
    if report.pseudo is not None:
        log.info("%s: %s", name, report.pseudo.summary())
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
    if report.features_off_grid or report.prior_clips_fitted:
        log.info(
            "%s: %d videos have features a clip or more off the clip grid of their duration (trained on "
            "their own clips), e.g. %s; %d videos had priors a clip or two off their features, fitted in "
            "time, e.g. %s",
            name,
            report.features_off_grid,
            ", ".join(report.off_grid_ids[:3]) or "-",
            report.prior_clips_fitted,
            ", ".join(report.prior_fitted_ids[:3]) or "-",
        )
    if report.videos_without_priors:
        log.warning(
            "%s: %d videos train without prior losses (no priors), e.g. %s",
            name,
            report.videos_without_priors,
            ", ".join(report.missing_prior_ids[:5]),
        )
