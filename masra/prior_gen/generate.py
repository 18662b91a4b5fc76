"""Stage-1 orchestration: videos in, validated prior rows out, written as atomic Parquet shards.

A run folder is ``{card.prior_dir}/{dataset}__{model-slug}__{prompt-version}``. Each batch of
videos becomes one shard ``part-{i:03d}of{N:03d}-{seq:05d}.parquet`` (``i/N`` is the ``--shard``),
written atomically (:mod:`masra.prior_gen.sink`); a killed run loses at most its in-flight batches.
A rerun reads the ``video_id`` column of all complete shards and skips those videos, so a second
complete run writes nothing (it does not even load the model). Each invocation rewrites
``manifest-{i:03d}of{N:03d}.json`` with totals over all shards present and appends itself to the
manifest's ``invocations`` (:mod:`masra.prior_gen.manifest`). One writer per part:
``lock-{i:03d}of{N:03d}.json`` in the run folder is held for the whole invocation
(:class:`masra.runlock.RunLock`); a second writer of the same part is refused, a lock left by a dead
process on this host is taken over. A writer of another sharding of the folder (``--shard 0/2``
while ``--shard 0/3`` runs) is refused too (:func:`check_sharding`): its parts overlap this one's.
At start, temporary shard files (``.part-*.tmp``) of killed writers are removed. How the work is
spread (one process, or a Ray cluster) is the executor's business (:mod:`masra.prior_gen.executors`);
per-video work is :mod:`masra.prior_gen.generator`'s; run layout, sharding and the clip grid are in
:mod:`masra.prior_gen.runs`.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from masra.prior_gen.engines.base import Engine
from masra.prior_gen.executors import Executor, LocalExecutor
from masra.prior_gen.generator import CAPTION_MODES, GenerateConfig, Prepared, PriorGenerator
from masra.prior_gen.manifest import RunSummary, write_manifest
from masra.prior_gen.runs import ShardSpec, VideoItem, done_video_ids
from masra.prior_gen.sink import ShardSink
from masra.runlock import LockHeldError, RunLock, describe, holder_alive, read_holder

log = logging.getLogger(__name__)

__all__ = [
    "CAPTION_MODES",
    "GenerateConfig",
    "Prepared",
    "PriorGenerator",
    "RunLockedError",
    "RunSummary",
    "ShardingConflictError",
    "VideoItem",
    "check_sharding",
    "generate_priors",
    "lock_path",
    "write_manifest",
]

_TMP_PART = re.compile(r"^\.part-(\d+of\d+)-.*\.tmp$")
_LOCK = re.compile(r"^lock-(\d+)of(\d+)\.json$")
_PARTIAL_BODY_S = 10.0  # as masra.runlock: an unreadable lock older than this belongs to a dead writer


class RunLockedError(LockHeldError):
    """Another writer holds this part of the run folder."""


class ShardingConflictError(RunLockedError):
    """A live writer of another sharding (``--shard i/M``, M != N) works in the same run folder."""


def lock_path(run_dir: Path, shard: ShardSpec) -> Path:
    """The lock file of part ``shard`` of ``run_dir``."""
    return Path(run_dir) / f"lock-{shard.tag}.json"


def check_sharding(run_dir: Path, shard: ShardSpec, *, break_lock: bool = False) -> None:
    """Refuse to write part ``shard`` while a writer of another sharding of ``run_dir`` is alive.

    Parts of different shardings overlap (video ``v`` is in part ``h(v) mod 2`` and ``h(v) mod 3``),
    and each writer only skips the videos done *before it started*, so two such writers at once
    would both generate the videos they share. Called with this part's lock held: of two writers
    that start together at least one sees the other's lock and stops (both may). Locks of dead
    processes on this host are ignored; locks from other hosts count unless ``break_lock``; a lock
    without a readable body (being written) counts. One sharding after another is fine: a rerun
    with another ``N`` skips every video that has a row in any shard of the folder.
    """
    for path in sorted(Path(run_dir).glob("lock-*of*.json")):
        m = _LOCK.match(path.name)
        if m is None or int(m.group(2)) == shard.count:
            continue
        holder = read_holder(path)
        if holder is None:  # being written, or left half-written by a writer killed long ago
            try:
                alive: bool | None = time.time() - path.stat().st_mtime < _PARTIAL_BODY_S
            except FileNotFoundError:
                continue
        else:
            alive = holder_alive(holder)
        if alive is False or (alive is None and break_lock):
            continue
        who = describe(holder) if holder is not None else "a writer that is starting"
        raise ShardingConflictError(
            f"prior run {run_dir}: part {m.group(1)}of{m.group(2)} of another sharding is being written "
            f"by {who} (lock file {path}); its parts overlap part {shard.tag}, so the two would write "
            f"the same videos. Use the same N for every writer of a run folder (--shard i/{m.group(2)}),"
            " or wait for it to finish"
        )


def generate_priors(
    items: list[VideoItem],
    *,
    generator: PriorGenerator,
    engine_factory: Callable[[], Engine],
    run_dir: Path,
    shard: ShardSpec = ShardSpec(),
    manifest_extra: dict[str, Any] | None = None,
    limit: int | None = None,
    break_lock: bool = False,
    executor: Executor | None = None,
) -> RunSummary:
    """Generate priors for this shard's part of ``items`` into ``run_dir``; resumable.

    ``items`` is the whole video list of the split(s); ``limit`` keeps only the first ``limit``
    videos of the part (by id) for this invocation, and the manifest then says the part is not
    complete. The engine is only loaded when some selected video is not yet done. ``executor``
    spreads the work (default: :class:`~masra.prior_gen.executors.LocalExecutor`); for the Ray
    executor ``engine_factory`` must pickle (e.g. ``functools.partial(load_engine, cfg)``). Raises
    :class:`RunLockedError` when another writer holds this part (``break_lock`` takes the lock
    anyway) and :class:`ShardingConflictError` while a writer of another sharding is alive.
    """
    executor = executor or LocalExecutor()
    t0 = time.perf_counter()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = RunLock(lock_path(run_dir, shard), f"prior run {run_dir}, part {shard.tag}")
    try:
        lock.acquire(break_lock=break_lock)
    except LockHeldError as e:
        raise RunLockedError(str(e)) from None
    try:
        check_sharding(run_dir, shard, break_lock=break_lock)
        _clean_temp_files(run_dir, shard)
        mine = sorted((it for it in items if shard.owns(it.vid)), key=lambda it: it.vid)
        selected = mine if limit is None else mine[: max(limit, 0)]
        done = done_video_ids(run_dir)
        todo = [it for it in selected if it.vid not in done]
        summary = RunSummary(
            str(run_dir), shard.tag, videos_total=len(selected), videos_skipped=len(selected) - len(todo)
        )
        log.info(
            "shard %s: %d videos%s, %d already done, %d to do (executor %s)",
            shard.tag,
            len(mine),
            f" (--limit {limit}: {len(selected)})" if limit is not None else "",
            summary.videos_skipped,
            len(todo),
            executor.name,
        )
        sink = ShardSink(run_dir, shard, summary, done=done, total=len(todo))
        error: str | None = None
        try:
            if todo:
                executor.run(todo, generator, engine_factory, sink)
        except BaseException as e:
            error = f"{type(e).__name__}: {e}"
            raise
        finally:
            sink.close()
            summary.wall_s = time.perf_counter() - t0
            engine = sink.engine
            invocation = {
                "started_at": started,
                "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "argv": sys.argv[1:],
                "limit": limit,
                "executor": executor.describe(),
                "model_id": engine.model_id if engine else None,
                "model_revision": engine.model_revision if engine else None,
                "backend": engine.backend if engine else None,
                "error": error,
                **asdict(summary),
                "rows_written": summary.videos_done,
                "duplicates_dropped": sink.duplicates,
            }
            settings = {
                "prompt_version": generator.prompt_version,
                "prompt_family": generator.family.name,
                "config": json.loads(generator.cfg.provenance()),
            }
            write_manifest(run_dir, shard, [it.vid for it in mine], settings, invocation, manifest_extra)
    finally:
        lock.release()
    log.info("priors %s: %s", run_dir.name, summary.line())
    return summary


def _clean_temp_files(run_dir: Path, shard: ShardSpec) -> None:
    """Remove ``.part-*.tmp`` files of killed writers: this part's, and other parts' with no live lock."""
    removed = 0
    for tmp in run_dir.glob(".part-*.tmp"):
        m = _TMP_PART.match(tmp.name)
        if m is None:
            continue
        if m.group(1) != shard.tag:
            holder = read_holder(run_dir / f"lock-{m.group(1)}.json")
            if (run_dir / f"lock-{m.group(1)}.json").exists() and (
                holder is None or holder_alive(holder) is not False
            ):
                continue  # possibly being written right now
        tmp.unlink(missing_ok=True)
        removed += 1
    if removed:
        log.info("removed %d temporary shard file(s) left by killed runs in %s", removed, run_dir)
