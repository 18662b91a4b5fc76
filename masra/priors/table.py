"""Read prior-embedding shards (``EMBED_SCHEMA``) into padded arrays keyed by video id.

Layout (:class:`~masra.priors.run.PriorRun`): ``{card.prior_dir}/{run}/embeddings/{encoder}/*.parquet``
(one row per video), next to the prior shards ``{card.prior_dir}/{run}/*.parquet`` whose ``source``
column says whether the priors are ``reference`` (the fixture's ground truth) or written by an ``mllm``.

Everything is decoded column-wise with pyarrow (no per-video Python beyond one slice copy), so even
QVHighlights' 7,100 videos load in seconds.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from masra.priors.run import PriorRun
from masra.priors.schema import EMBED_SCHEMA
from masra.priors.shards import read_shards, shard_paths

log = logging.getLogger(__name__)

__all__ = ["PriorTable", "embeddings_dir", "prior_source", "read_prior_table", "shard_of"]


def embeddings_dir(prior_dir: Path, run: str, encoder: str) -> Path:
    """``{prior_dir}/{run}/embeddings/{encoder}`` (see :class:`~masra.priors.run.PriorRun`)."""
    return PriorRun(Path(prior_dir), run).embeddings_dir(encoder)


@dataclass
class PriorTable:
    """Prior embeddings of a set of videos, padded (numpy, float16 embeddings).

    Attributes:
        video_ids: V ids, in row order; ``index`` maps an id to its row.
        num_clips: (V,) int clip count each row was written for.
        event_se: (V, E, 2) float32 event (start, end) in seconds; 0 where padded.
        event_emb: (V, E, Dp) float16.
        event_count: (V,) int real events per row.
        caption_emb: (V, Lp, Dp) float16, Lp = max num_clips.
        caption_valid: (V, Lp) bool, True where the clip has a caption.
        dim: Dp. encoder: encoder name. source: provenance of the priors (``reference``, ``mllm``,
            ``mixed`` or ``unknown``). folder: the embeddings folder it was read from.
    """

    video_ids: list[str]
    index: dict[str, int]
    num_clips: np.ndarray
    event_se: np.ndarray
    event_emb: np.ndarray
    event_count: np.ndarray
    caption_emb: np.ndarray
    caption_valid: np.ndarray
    dim: int
    encoder: str
    source: str
    folder: Path | None = None

    def __len__(self) -> int:
        return len(self.video_ids)


def _offsets(arr: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, pa.Array]:
    """Offsets (n + 1,) and flat values of a list column."""
    a = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    offs = np.asarray(a.offsets, dtype=np.int64)
    return offs - offs[0], a.flatten()


def _nested_matrix(col: pa.ChunkedArray, dim: int, what: str, where: str) -> tuple[np.ndarray, np.ndarray]:
    """list<list<float16>> -> (row offsets (V + 1,), values (rows, dim) float16)."""
    outer, inner_list = _offsets(col)
    inner, values = _offsets(inner_list)
    lens = np.diff(inner)
    if len(lens) and (lens != dim).any():
        bad = int(np.flatnonzero(lens != dim)[0])
        raise ValueError(f"{where}: {what} vector {bad} has {int(lens[bad])} values, expected dim {dim}")
    flat = np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float16)
    return outer, flat.reshape(-1, dim)


def prior_source(run_dir: Path) -> str:
    """Provenance of a prior run from the ``source`` column of its prior shards."""
    paths = shard_paths(run_dir)
    if not paths:
        return "unknown"
    counts: Counter[str] = Counter()
    for p in paths:
        try:
            counts.update(str(s) for s in pq.read_table(p, columns=["source"]).column("source").to_pylist())
        except (KeyError, pa.ArrowInvalid):
            continue
    if not counts:
        return "unknown"
    return next(iter(counts)) if len(counts) == 1 else "mixed"


def _check_finite(
    values: np.ndarray, row_offsets: np.ndarray, vids: list[str], what: str, where: str
) -> None:
    """Refuse NaN or Inf in ``values`` (rows, ...), naming the video, the row within it and the column.

    ``row_offsets`` (V + 1,) gives each video's first row, as from :func:`_nested_matrix`.
    """
    bad = ~np.isfinite(values.reshape(len(values), -1))
    if not bad.any():
        return
    row, col = (int(x) for x in np.argwhere(bad)[0])
    video = int(np.searchsorted(row_offsets, row, side="right")) - 1
    shard = shard_of(Path(where), vids[video])
    raise ValueError(
        f"{shard or where}: {what} of video {vids[video]!r} is not finite ({int(bad.sum())} values in the run; "
        f"first at entry {row - int(row_offsets[video])}, index {col}); re-embed the run with `masra priors embed`"
    )


def shard_of(folder: Path, vid: str) -> Path | None:
    """The shard of ``folder`` that holds video ``vid``, or None (it reads every shard's ids: for error
    messages)."""
    for path in shard_paths(folder):
        try:
            if vid in pq.read_table(path, columns=["video_id"]).column("video_id").to_pylist():
                return path
        except (OSError, pa.ArrowException):
            continue
    return None


def read_prior_table(prior_dir: Path, run: str, encoder: str) -> PriorTable:
    """Read all embedding shards of a prior run and pad them into a :class:`PriorTable`.

    Raises:
        FileNotFoundError: no shards under the embeddings folder.
        ValueError: mixed dims, vectors of the wrong width, a caption count differing from
            ``num_clips``, a video id present twice, or NaN / Inf in an embedding or an event time
            (naming the video).
    """
    folder = embeddings_dir(prior_dir, run, encoder)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"no prior embeddings at {folder} (run `masra priors embed`, or choose another run with --priors)"
        )
    table = read_shards(folder, EMBED_SCHEMA)
    where = str(folder)
    vids = [str(v) for v in table.column("video_id").to_pylist()]
    dups = [v for v, n in Counter(vids).items() if n > 1]
    if dups:
        raise ValueError(f"{where}: {len(dups)} video ids appear in more than one row, e.g. {dups[:5]}")
    dims = set(table.column("dim").to_pylist())
    if len(dims) != 1:
        raise ValueError(f"{where}: embeddings of different dims {sorted(dims)} in one run")
    dim = int(dims.pop())
    num_clips = np.asarray(table.column("num_clips").to_numpy(), dtype=np.int64)
    n = len(vids)

    ev_rows, ev_vals = _nested_matrix(table.column("event_emb"), dim, "event_emb", where)
    ev_count = np.diff(ev_rows)
    st_off, st_vals = _offsets(table.column("event_start"))
    _, en_vals = _offsets(table.column("event_end"))
    if not np.array_equal(np.diff(st_off), ev_count):
        raise ValueError(f"{where}: event_start and event_emb differ in length for some video")
    cap_rows, cap_vals = _nested_matrix(table.column("caption_emb"), dim, "caption_emb", where)
    cap_count = np.diff(cap_rows)
    valid_off, valid_vals = _offsets(table.column("caption_valid"))
    bad = np.flatnonzero((cap_count != num_clips) | (np.diff(valid_off) != num_clips))
    if len(bad):
        ids = [vids[i] for i in bad[:5]]
        raise ValueError(
            f"{where}: {len(bad)} videos have a caption count different from num_clips, e.g. {ids}"
        )

    starts = np.asarray(st_vals.to_numpy(zero_copy_only=False), np.float32)
    ends = np.asarray(en_vals.to_numpy(zero_copy_only=False), np.float32)
    _check_finite(ev_vals, ev_rows, vids, "event_emb", where)
    _check_finite(cap_vals, cap_rows, vids, "caption_emb", where)
    _check_finite(np.stack([starts, ends], -1), ev_rows, vids, "event_start/event_end", where)

    e_max = int(ev_count.max(initial=0))
    l_max = int(num_clips.max(initial=0))
    event_se = np.zeros((n, max(e_max, 1), 2), np.float32)
    event_emb = np.zeros((n, max(e_max, 1), dim), np.float16)
    caption_emb = np.zeros((n, max(l_max, 1), dim), np.float16)
    caption_valid = np.zeros((n, max(l_max, 1)), bool)
    valid = np.asarray(valid_vals.to_numpy(zero_copy_only=False), bool)
    for i in range(n):
        a, b = ev_rows[i], ev_rows[i + 1]
        event_se[i, : b - a, 0] = starts[a:b]
        event_se[i, : b - a, 1] = ends[a:b]
        event_emb[i, : b - a] = ev_vals[a:b]
        c, d = cap_rows[i], cap_rows[i + 1]
        caption_emb[i, : d - c] = cap_vals[c:d]
        caption_valid[i, : d - c] = valid[c:d]
    encoders = set(table.column("encoder").to_pylist())
    source = prior_source(PriorRun(Path(prior_dir), run).dir)
    log.info(
        "priors: %d videos from %s (encoder %s, dim %d, source=%s)",
        n,
        folder,
        ",".join(sorted(map(str, encoders))),
        dim,
        source,
    )
    return PriorTable(
        video_ids=vids,
        index={v: i for i, v in enumerate(vids)},
        num_clips=num_clips,
        event_se=event_se,
        event_emb=event_emb,
        event_count=ev_count.astype(np.int64),
        caption_emb=caption_emb,
        caption_valid=caption_valid,
        dim=dim,
        encoder=encoder,
        source=source,
        folder=folder,
    )
