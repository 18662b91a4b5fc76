"""Prior events as training queries: which events of a split's videos become pseudo-queries.

Every event ``{start, end, text}`` of a training video's prior row (``PRIOR_SCHEMA``'s ``events``)
is a candidate: its text the query, its span the target window, saliency 1 inside it. The rules of
:class:`~masra.grounding.config.PseudoQueryConfig` are applied per video to its events in time
order, the first that holds naming the reason (:data:`~masra.grounding.data.report.PSEUDO_DROP_REASONS`):

1. ``too_short``: shorter than ``min_len`` seconds (or empty);
2. ``too_long``: longer than ``max_len_share`` of the video;
3. ``generic``: its text (normalised: :func:`normalise_text`) is in ``generic_texts``, or is found
   in more than ``generic_share`` of the split's videos with priors and in at least
   ``generic_min_videos`` of them;
4. ``same_text``: a kept pseudo-query of the video has the same normalised text: the span becomes
   one more window of that query (joined with a window it overlaps), since a sentence describes
   every moment it fits;
5. ``duplicate_span``: its span overlaps a kept window of the video with IoU above ``dedup_iou``;
6. ``over_max_per_video``: the video already has ``max_per_video`` pseudo-queries.

The rest are kept. :func:`select_pseudo_queries` is pure (events in, queries and counts out);
:func:`load_pseudo_queries` reads a prior run's events, applies it to a split's videos and attaches
the encoded texts (:mod:`~masra.grounding.data.pseudo_cache`). The resident split then holds the
pseudo-queries after its labelled queries (:func:`masra.grounding.data.resident.build_split`).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from masra.datasets.types import Query
from masra.grounding.config.pseudo import PseudoQueryConfig
from masra.grounding.data.pseudo_cache import Encode, EncodedTexts, encoded_event_texts
from masra.grounding.data.report import PseudoQueryReport
from masra.grounding.infer.decode import window_iou
from masra.priors.run import PriorRun
from masra.priors.schema import PRIOR_SCHEMA
from masra.priors.shards import read_shards, shard_paths

log = logging.getLogger(__name__)

__all__ = [
    "PriorEvents",
    "PseudoQuerySet",
    "load_pseudo_queries",
    "normalise_text",
    "pseudo_qid",
    "read_prior_events",
    "select_pseudo_queries",
]

_TRAILING = " .,;:!?"


def normalise_text(text: str) -> str:
    """The form texts are compared in: lower case, single spaces, no final punctuation.

    >>> normalise_text("  A person  opens the door. ")
    'a person opens the door'
    """
    return " ".join(text.lower().split()).rstrip(_TRAILING)


def pseudo_qid(vid: str, k: int) -> str:
    """The query id of the ``k``-th pseudo-query of video ``vid``: ``pseudo:{vid}:{k}``."""
    return f"pseudo:{vid}:{k}"


@dataclass(frozen=True)
class PriorEvents:
    """The events of one video's prior row: (start s, end s, text), in the row's order."""

    vid: str
    duration: float
    events: tuple[tuple[float, float, str], ...]


def read_prior_events(run_dir: Path) -> dict[str, PriorEvents]:
    """The events of every video of the prior run at ``run_dir`` (its ``PRIOR_SCHEMA`` shards).

    Raises:
        FileNotFoundError: the run has no prior shard.
        ValueError: a video has rows in two shards (naming it and the run).
    """
    if not shard_paths(run_dir):
        raise FileNotFoundError(
            f"no prior shards in {run_dir}: pseudo-queries are made from a prior run's events; write them "
            "with `masra priors generate` or `masra priors import`, or choose another run (priors_run / --priors-run)"
        )
    table = read_shards(run_dir, PRIOR_SCHEMA).select(["video_id", "duration", "events"])
    out: dict[str, PriorEvents] = {}
    for row in table.to_pylist():
        vid = str(row["video_id"])
        if vid in out:
            raise ValueError(f"{run_dir}: video {vid!r} has more than one prior row")
        events = tuple(
            (float(e["start"]), float(e["end"]), str(e["text"]))
            for e in row["events"] or []
            if e is not None and e.get("text")
        )
        out[vid] = PriorEvents(vid, float(row["duration"]), events)
    return out


def _generic_texts(videos: Sequence[PriorEvents], cfg: PseudoQueryConfig) -> tuple[set[str], list[str]]:
    """Normalised texts that are generic, and up to 20 of them for the report (most videos first)."""
    generic = {normalise_text(t) for t in cfg.generic_texts}
    found: list[tuple[int, str]] = []
    if cfg.generic_share is not None and videos:
        counts = Counter(t for v in videos for t in {normalise_text(e[2]) for e in v.events})
        limit = cfg.generic_share * len(videos)
        found = sorted(
            ((n, t) for t, n in counts.items() if n > limit and n >= cfg.generic_min_videos),
            key=lambda x: (-x[0], x[1]),
        )
        generic |= {t for _, t in found}
    listed = [t for _, t in found] + sorted(normalise_text(t) for t in cfg.generic_texts)
    return generic, list(dict.fromkeys(listed))[:20]


def select_pseudo_queries(
    videos: Sequence[PriorEvents], cfg: PseudoQueryConfig, report: PseudoQueryReport | None = None
) -> list[Query]:
    """The pseudo-queries of ``videos`` under ``cfg``'s rules (module doc), counted into ``report``.

    Each is a :class:`~masra.datasets.types.Query` with qid :func:`pseudo_qid`, the event's text (as
    written), the prior row's duration and one window per kept span, in video order then time
    order. Generic texts are judged over ``videos`` (the split's videos with priors).
    """
    report = report if report is not None else PseudoQueryReport()
    generic, listed = _generic_texts(videos, cfg)
    report.generic_texts = listed
    out: list[Query] = []
    for video in videos:
        kept: list[tuple[str, str, list[tuple[float, float]]]] = []  # (normalised, text, windows)
        for start, end, text in sorted(video.events, key=lambda e: (e[0], e[1])):
            report.made += 1
            span = (start, end)
            norm = normalise_text(text)
            same = next((k for k in kept if k[0] == norm), None)
            reason = None
            if end - start < cfg.min_len or end <= start:
                reason = "too_short"
            elif end - start > cfg.max_len_share * video.duration:
                reason = "too_long"
            elif norm in generic:
                reason = "generic"
            elif same is not None:
                reason = "same_text"
                windows = same[2]
                hit = next((i for i, w in enumerate(windows) if min(w[1], end) > max(w[0], start)), None)
                if hit is None:
                    windows.append(span)
                else:
                    windows[hit] = (min(windows[hit][0], start), max(windows[hit][1], end))
            elif any(window_iou(span, w) > cfg.dedup_iou for k in kept for w in k[2]):
                reason = "duplicate_span"
            elif cfg.max_per_video is not None and len(kept) >= cfg.max_per_video:
                reason = "over_max_per_video"
            if reason is None:
                kept.append((norm, text, [span]))
            else:
                report.drop(reason)
        for k, (_, text, windows) in enumerate(kept):
            out.append(
                Query(
                    qid=pseudo_qid(video.vid, k),
                    query=text,
                    vid=video.vid,
                    duration=video.duration,
                    windows=tuple(sorted(windows)),
                )
            )
    report.kept = len(out)
    report.windows = sum(len(q.windows) for q in out)
    return out


@dataclass
class PseudoQuerySet:
    """Pseudo-queries ready for :func:`~masra.grounding.data.resident.build_split`.

    Attributes:
        queries: P pseudo-queries (qid ``pseudo:{vid}:{k}``); text_rows: (P,) int64 row of each
            query's text in ``texts``; texts: the encoded event texts; report: what was kept.
    """

    queries: list[Query]
    text_rows: np.ndarray
    texts: EncodedTexts
    report: PseudoQueryReport

    def __len__(self) -> int:
        return len(self.queries)


def load_pseudo_queries(
    run: PriorRun,
    split_videos: Sequence[str],
    cfg: PseudoQueryConfig,
    *,
    encoder: str,
    dim: int,
    events: Mapping[str, PriorEvents] | None = None,
    encode: Encode | None = None,
    report: PseudoQueryReport | None = None,
) -> PseudoQuerySet:
    """The pseudo-queries of the split's videos ``split_videos`` from the prior run ``run``.

    ``events``: the run's events when already read (:func:`read_prior_events`); ``encoder`` / ``dim``:
    the card's query text encoder and query feature width; ``encode``: encodes texts on a cache miss
    (default: the encoder, loaded then). ``report`` may carry counts made before (videos left out).
    """
    events = dict(events) if events is not None else read_prior_events(run.dir)
    report = report if report is not None else PseudoQueryReport()
    in_split = set(split_videos)
    videos = [events[v] for v in dict.fromkeys(split_videos) if v in events]
    report.videos = len(videos)
    report.videos_without_priors = len(in_split) - len(videos)
    # Prior videos left out for want of features (counted before, by the caller) are not counted again.
    report.videos_not_in_split = sum(1 for v in events if v not in in_split) - report.videos_without_features
    queries = select_pseudo_queries(videos, cfg, report)
    all_texts = [e[2] for v in events.values() for e in v.events]
    texts, how = encoded_event_texts(
        run.pseudo_queries_dir(encoder), all_texts, encoder=encoder, dim=dim, encode=encode
    )
    report.cache = f"{how}: {texts.folder}"
    rows = np.array([texts.row(q.query) for q in queries], np.int64)
    log.info("pseudo-queries from prior run %s: %s", run.dir, report.summary())
    if report.generic_texts:
        log.info("pseudo-queries: generic texts dropped, e.g. %s", "; ".join(report.generic_texts[:5]))
    return PseudoQuerySet(queries=queries, text_rows=rows, texts=texts, report=report)
