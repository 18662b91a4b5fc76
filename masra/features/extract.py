"""Videos in, the card's feature files out; and one video in, the store's per-clip arrays out.

- :func:`load_card_extractors`: the extractors a card's video feature types name (each built once).
- :func:`features_for_video`: one video file -> :class:`VideoFeatures`, whose ``features`` equal what
  :func:`masra.datasets.features.load_video_features` returns for the same video's stored files (per
  type L2-normalised, cut to the shortest type, concatenated in card order, float32, no
  temporal-endpoint dims). Raw-video prediction uses it.
- :func:`extract_videos`: many videos -> ``{dir}/{vid}.npz`` (the card's ``key``) per feature type.
  Resumable: a video whose files all exist and read is skipped. Each file is written to a hidden
  temporary name and renamed into place, so a killed run never leaves a half-written ``.npz``. An
  unreadable video goes to the report's ``failed`` list (with a one-line reason) instead of stopping
  the run.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from masra.datasets.card import DatasetCard, FeatureSource
from masra.datasets.features import l2_normalize, npz_shape, video_path
from masra.features.base import VideoFeatureExtractor, video_duration
from masra.features.registry import extractor_spec, load_extractor
from masra.hub import ModelUnavailableError
from masra.video_io import VideoIOError

log = logging.getLogger(__name__)

__all__ = [
    "ExtractReport",
    "VideoFeatures",
    "extract_videos",
    "features_for_video",
    "load_card_extractors",
    "model_ref",
    "save_npz_atomic",
]


def model_ref(card: DatasetCard, source: FeatureSource) -> str | None:
    """The feature type's ``model`` (else its extractor's default); a relative path that is not in the
    current folder but is under the card's ``root`` is taken from there."""
    ref = source.model or (extractor_spec(source.extractor).default_model if source.extractor else None)
    if ref is None:
        return None
    p = Path(ref).expanduser()
    if not p.is_absolute() and not p.exists() and (card.root / p).exists():
        return str(card.root / p)
    return ref


def load_card_extractors(
    card: DatasetCard,
    types: Sequence[str] | None = None,
    *,
    device: str | None = None,
    batch_size: int | None = None,
) -> dict[str, VideoFeatureExtractor]:
    """``{type: extractor}`` for the card's feature types (``types``: a subset; default all).

    Raises:
        ValueError: a type the card lacks, one without ``extractor``, or an extractor whose width
            differs from the card's ``dim``.
        masra.hub.ModelUnavailableError: weights neither local nor reachable (one-line message).
    """
    by_name = {s.name: s for s in card.video_features}
    wanted = list(types) if types else list(by_name)
    unknown = [t for t in wanted if t not in by_name]
    if unknown:
        raise ValueError(f"card {card.name!r} has no video feature type {unknown}; it has {sorted(by_name)}")
    missing = [t for t in wanted if by_name[t].extractor is None]
    if missing:
        raise ValueError(
            f"card {card.name!r}: video feature type(s) {missing} name no extractor; add "
            f"`extractor: NAME` to them (see masra/features/registry.py)"
        )
    out: dict[str, VideoFeatureExtractor] = {}
    for t in wanted:
        src = by_name[t]
        assert src.extractor is not None
        try:
            ext = load_extractor(
                src.extractor, model=model_ref(card, src), device=device, batch_size=batch_size
            )
        except ModelUnavailableError as e:
            raise ModelUnavailableError(
                f"video feature type {t!r} of card {card.name!r}: {e} (--set video_features.{t}.model=PATH)"
            ) from None
        if ext.dim != src.dim:
            raise ValueError(
                f"card {card.name!r}: extractor {src.extractor!r} of type {t!r} gives {ext.dim}-d features, "
                f"the card says dim {src.dim}"
            )
        out[t] = ext
    return out


@dataclass
class VideoFeatures:
    """One video's features in the card's layout.

    Attributes:
        features: (L, sum of dims) float32 as the store holds them (see the module doc).
        per_type: ``{type: (L_t, dim_t)}`` float32 raw extractor output (what the npz files hold).
        duration: seconds.
    """

    features: np.ndarray
    per_type: dict[str, np.ndarray]
    duration: float


def features_for_video(
    path: str | os.PathLike[str],
    card: DatasetCard,
    extractors: Mapping[str, VideoFeatureExtractor] | None = None,
    *,
    device: str | None = None,
) -> VideoFeatures:
    """Extract every video feature type of ``card`` from one video file (see the module doc).

    ``extractors`` (from :func:`load_card_extractors`) are loaded when not given; pass them to reuse
    loaded models over many calls. Raises :class:`~masra.video_io.VideoIOError` for unreadable files.
    """
    path = Path(path)
    extractors = extractors if extractors is not None else load_card_extractors(card, device=device)
    per_type = {s.name: extractors[s.name].extract(path, card.clip_len) for s in card.video_features}
    parts = [l2_normalize(per_type[s.name].astype(np.float32, copy=False)) for s in card.video_features]
    length = min(p.shape[0] for p in parts)
    feats = np.ascontiguousarray(np.concatenate([p[:length] for p in parts], axis=1), dtype=np.float32)
    return VideoFeatures(feats, per_type, video_duration(path))


def save_npz_atomic(path: Path, **arrays: np.ndarray) -> Path:
    """``np.savez`` into a hidden sibling, then rename onto ``path`` (readers never see a partial file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _finished(source: FeatureSource, vid: str) -> bool:
    """The type's file for ``vid`` exists and its header reads as (L, dim)."""
    p = video_path(source, vid)
    if not p.is_file():
        return False
    try:
        shape = npz_shape(p, source.key)
    except (ValueError, KeyError, OSError):
        return False
    return len(shape) == 2 and shape[0] > 0 and shape[1] == source.dim


@dataclass
class ExtractReport:
    """What :func:`extract_videos` did. ``failed``: ``(vid, path, reason)`` of videos it could not read."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, object]:
        rate = len(self.done) / self.seconds if self.seconds > 0 else 0.0
        return {
            "extracted": len(self.done),
            "skipped_finished": len(self.skipped),
            "failed": [{"vid": v, "path": p, "reason": r} for v, p, r in self.failed],
            "seconds": round(self.seconds, 2),
            "videos_per_s": round(rate, 3),
        }


def _extract_one(
    path: Path,
    todo: list[str],
    extractors: Mapping[str, VideoFeatureExtractor],
    dims: dict[str, int],
    clip_len: float,
) -> dict[str, np.ndarray] | str:
    """``{type: (L, dim)}`` of one video, or the one-line reason it could not be read."""
    try:
        feats = {t: extractors[t].extract(path, clip_len) for t in todo}
        for t, arr in feats.items():
            if arr.ndim != 2 or arr.shape[1] != dims[t] or not np.isfinite(arr).all():
                raise ValueError(f"extractor of {t!r} returned {arr.shape} or non-finite values")
    except (VideoIOError, ValueError, OSError) as e:
        return " ".join(str(e).split())
    return feats


def extract_videos(
    card: DatasetCard,
    videos: Iterable[str | os.PathLike[str]],
    extractors: Mapping[str, VideoFeatureExtractor],
    *,
    overwrite: bool = False,
    workers: int = 1,
    progress: bool = True,
) -> ExtractReport:
    """Write the feature files of ``extractors``' types for each video (vid = the file's stem).

    ``workers`` > 1 extracts that many videos at once in threads (decoding overlaps the model's
    forward passes; the models are shared); files are still written in input order by this thread.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    sources = {s.name: s for s in card.video_features if s.name in extractors}
    dims = {t: src.dim for t, src in sources.items()}
    report = ExtractReport()
    t0 = time.perf_counter()
    jobs: list[tuple[Path, list[str]]] = []
    for path in (Path(v) for v in videos):
        todo = [t for t, src in sources.items() if overwrite or not _finished(src, path.stem)]
        if todo:
            jobs.append((path, todo))
        else:
            report.skipped.append(path.stem)

    def work(job: tuple[Path, list[str]]) -> dict[str, np.ndarray] | str:
        return _extract_one(job[0], job[1], extractors, dims, card.clip_len)

    pool = ThreadPoolExecutor(workers) if workers > 1 else None
    results = pool.map(work, jobs) if pool is not None else map(work, jobs)
    bar = tqdm(total=len(jobs), desc="features", unit="video", disable=not progress)
    try:
        for (path, _), result in zip(jobs, results, strict=True):
            vid = path.stem
            if isinstance(result, str):
                log.warning("skipping %s: %s", path, result)
                report.failed.append((vid, str(path), result))
            else:
                for t, arr in result.items():
                    src = sources[t]
                    save_npz_atomic(video_path(src, vid), **{src.key: arr.astype(np.float32, copy=False)})
                report.done.append(vid)
            bar.update()
            elapsed = time.perf_counter() - t0
            rate = f"{len(report.done) / max(elapsed, 1e-9):.2f}"
            bar.set_postfix(videos_per_s=rate, failed=len(report.failed))
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    report.seconds = time.perf_counter() - t0
    return report
