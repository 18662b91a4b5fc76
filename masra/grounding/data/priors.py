"""The prior table joined to a resident split: one :class:`PriorBatch` row per video, on its clip grid.

Events starting past a video's cut (``max_clips``) or empty are dropped and counted; the rest are
clipped to the grid, normalised like moments and packed first. Captions follow the video's clips.
"""

from __future__ import annotations

import numpy as np
import torch

from masra.grounding.data.batch import PriorBatch
from masra.grounding.data.report import SplitReport
from masra.priors.table import PriorTable, shard_of

__all__ = ["PriorCoverageError", "join_priors"]

_EPS = 1e-6


class PriorCoverageError(ValueError):
    """Training videos without priors while prior losses are on; names the count and a few ids."""


def join_priors(
    priors: PriorTable,
    vids: list[str],
    full_len: np.ndarray,
    vlen: np.ndarray,
    l_max: int,
    clip_len: float,
    *,
    prior_dim: int | None,
    allow_partial: bool,
    dtype: torch.dtype,
    name: str,
    report: SplitReport,
) -> PriorBatch:
    """The priors of the split's videos as one :class:`PriorBatch` of V rows on the CPU.

    Args:
        priors: the prior table read from the run's shards.
        vids: the split's V video ids, in row order.
        full_len: (V,) clips of each video's features; vlen: (V,) clips kept (``<= max_clips``).
        l_max: the split's padded clip count.
        clip_len: seconds per clip.
        prior_dim, allow_partial, dtype, name: as in ``build_split``; ``report`` counts what is cut.

    Raises:
        ValueError: the embeddings have another width than ``prior_dim``, or a video's priors have
            another clip count than its features.
        PriorCoverageError: videos without priors and ``allow_partial`` false.
    """
    if prior_dim is not None and priors.dim != prior_dim:
        raise ValueError(
            f"{name}: prior embeddings have dim {priors.dim} (encoder {priors.encoder}) but the model "
            f"expects prior_dim {prior_dim}"
        )
    missing = [v for v in vids if v not in priors.index]
    if missing and not allow_partial:
        extra = sorted(set(priors.index) - set(vids))
        held = ""
        if priors.folder is not None:
            where = (shard_of(priors.folder, extra[0]) if extra else None) or priors.folder
            held = f"; {where} holds {len(extra)} video ids not in this split" + (
                f" (e.g. {', '.join(extra[:3])})" if extra else ""
            )
        raise PriorCoverageError(
            f"{name}: {len(missing)} of {len(vids)} videos have no priors (e.g. {', '.join(missing[:5])})"
            f"{held}; "
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
    n_v = len(vids)
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
    return PriorBatch(
        event_spans=event_spans,
        event_emb=event_emb,
        event_mask=event_mask,
        caption_emb=caption_emb,
        caption_mask=torch.from_numpy(cap_mask),
        has_prior=torch.from_numpy(has),
    )
