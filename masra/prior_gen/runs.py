"""Run folders, sharding, resume and the video list of a prior run (no model, no decoding).

A run folder is ``{card.prior_dir}/{dataset}__{model-slug}__{prompt-version}``; its shards are
``part-{i:03d}of{N:03d}-{seq:05d}.parquet`` (``i/N`` is the ``--shard``). A video belongs to part
``sha1(video_id) mod N``, so parts are disjoint, their union is the whole list, and the assignment
does not depend on list order.

Clip grid: a run describes ``masra.datasets.grid.kept_clips(duration, clip_len, card.max_clips)``
clips of a video (``ceil(duration / clip_len)`` cut at ``max_clips``: 150 s / 2 s = 75 QVHighlights
clips). Clip ``i`` covers ``[i * clip_len, (i + 1) * clip_len)``; stage 2 aligns caption ``i`` with
feature clip ``i`` and fits a clip or two of difference at the end in time.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from masra.datasets.card import DatasetCard
from masra.prior_gen.video import VIDEO_EXTENSIONS, find_video
from masra.priors.run import PriorRun
from masra.priors.schema import PRIOR_SCHEMA, check_schema
from masra.priors.shards import shard_paths

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardSpec:
    """Part ``index`` of ``count`` disjoint parts of the video list (0-based)."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard must be i/N with 0 <= i < N, got {self.index}/{self.count}")

    def owns(self, vid: str) -> bool:
        """Stable assignment by a hash of the id: independent of list order and of other ids."""
        return int(hashlib.sha1(vid.encode()).hexdigest()[:8], 16) % self.count == self.index

    @property
    def tag(self) -> str:
        return f"{self.index:03d}of{self.count:03d}"


@dataclass(frozen=True)
class VideoItem:
    """One video to annotate: its id, duration (s) and file (None when missing)."""

    vid: str
    duration: float
    path: Path | None


def model_slug(model: str) -> str:
    """``Qwen/Qwen2.5-VL-7B-Instruct`` -> ``qwen2.5-vl-7b-instruct``."""
    return re.sub(r"[^0-9a-z.]+", "-", Path(model.rstrip("/")).name.lower()).strip("-") or "model"


def run_dir_for(prior_dir: Path, dataset: str, model: str, prompt_version: str) -> Path:
    return PriorRun(Path(prior_dir), f"{dataset}__{model_slug(model)}__{prompt_version}").dir


def done_video_ids(run_dir: Path) -> set[str]:
    """Ids already written to complete shards of ``run_dir`` (any shard part).

    Raises:
        BadShardError: a shard that does not read as Parquet, or whose schema is not the prior schema,
            naming the file (its videos would otherwise count as done, or crash the summary later).
    """
    done: set[str] = set()
    for p in shard_paths(run_dir):
        try:
            shard = pq.ParquetFile(p)  # one footer read, for the schema and then the ids
            check_schema(shard.schema_arrow, PRIOR_SCHEMA, str(p))
            done.update(shard.read(columns=["video_id"]).column("video_id").to_pylist())
        except (OSError, pa.ArrowException) as e:  # before ValueError: ArrowInvalid is one
            raise BadShardError(
                f"{p}: not a readable prior shard ({type(e).__name__}: {str(e).splitlines()[0]}); "
                "move it out of the run folder and rerun to regenerate its videos"
            ) from None
        except ValueError as e:  # check_schema: another schema, named
            raise BadShardError(
                f"{e}; move it out of the run folder and rerun to regenerate its videos"
            ) from None
    return done


class BadShardError(ValueError):
    """A shard of a run folder that cannot be read as a prior shard; the message names the file."""


def next_seq(run_dir: Path, shard: ShardSpec) -> int:
    seqs = [int(p.stem.rsplit("-", 1)[-1]) for p in run_dir.glob(f"part-{shard.tag}-*.parquet")]
    return max(seqs, default=-1) + 1


def reason_kind(error: str) -> str:
    """The first note of an error without its specifics (file names, numbers), for counting."""
    first = error.split(";")[0]
    return re.sub(r"\s+", " ", re.sub(r"\S+\.(mp4|mkv|webm|avi|mov|m4v)|\d+(\.\d+)?", "#", first)).strip()


def videos_from_card(card: DatasetCard, splits: list[str]) -> list[VideoItem]:
    """The card's videos of ``splits`` (deduplicated by id, sorted) with durations and files."""
    from masra.datasets.readers import load_queries

    durations: dict[str, float] = {}
    for split in splits:
        queries, _ = load_queries(card, split)
        for q in queries:
            prev = durations.get(q.vid)
            if prev is not None and abs(prev - q.duration) > 1e-3:
                log.warning(
                    "video %s has durations %.3f and %.3f in the annotations; using the larger",
                    q.vid,
                    prev,
                    q.duration,
                )
            durations[q.vid] = max(q.duration, prev or 0.0)
    return [VideoItem(v, d, find_video(card.video_dir, v)) for v, d in sorted(durations.items())]


def videos_from_folder(video_dir: Path) -> list[VideoItem]:
    """Every video file of ``video_dir`` (the extensions of ``VIDEO_EXTENSIONS``; vid = file stem,
    sorted), with the duration its container states: the videos of a card without annotation files.
    Files that do not open, or whose stem is not a usable video id, are left out with a warning.

    Raises FileNotFoundError when the folder holds no video file.
    """
    from masra.datasets.ids import id_problem
    from masra.video_io import VideoIOError, probe_duration

    files = sorted(
        p for p in Path(video_dir).glob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file()
    )
    if not files:
        raise FileNotFoundError(
            f"no video files ({', '.join(VIDEO_EXTENSIONS)}) in {video_dir}, the card's video_dir; the card "
            "has no annotation files to list its videos"
        )
    items: dict[str, VideoItem] = {}
    for path in files:
        problem = id_problem(path.stem)
        if problem is not None or path.stem in items:
            log.warning("%s: left out (%s)", path, problem or "another file has the same name")
            continue
        try:
            duration = probe_duration(path)
        except VideoIOError as e:
            log.warning("%s: left out, it does not open (%s)", path, " ".join(str(e).split()))
            continue
        if duration <= 0:
            log.warning("%s: left out, its container states no duration", path)
            continue
        items[path.stem] = VideoItem(path.stem, duration, path)
    return list(items.values())
