"""Stage-1 orchestration: videos in, validated prior rows out, written as atomic Parquet shards.

A run folder is ``{card.prior_dir}/{dataset}__{model-slug}__{prompt-version}``. Each batch of
videos becomes one shard ``part-{i:03d}of{N:03d}-{seq:05d}.parquet`` (``i/N`` is the ``--shard``),
written atomically; a killed run loses at most its in-flight batch. A rerun reads the ``video_id``
column of all complete shards and skips those videos, so a second complete run writes nothing (it
does not even load the model). Each invocation rewrites ``manifest-{i:03d}of{N:03d}.json`` with
totals over all shards present and appends itself to the manifest's ``invocations`` (see
:func:`write_manifest`). One writer per part: ``lock-{i:03d}of{N:03d}.json`` in the run folder is
held for the whole invocation (:class:`masra.runlock.RunLock`); a second writer of the same part is
refused, a lock left by a dead process on this host is taken over. At start, temporary shard files
(``.part-*.tmp``) of killed writers are removed. Run layout, sharding and the clip grid are in
:mod:`masra.prior_gen.runs`.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from masra.prior_gen import prompts
from masra.prior_gen.engines.base import Engine, GenRequest, GenResult, SamplingConfig
from masra.prior_gen.parsing import (
    FAILED,
    ParseConfig,
    caption_status,
    combine_status,
    parse_caption,
    parse_captions_dense,
    parse_events,
)
from masra.prior_gen.runs import ShardSpec, VideoItem, done_video_ids, next_seq, num_clips_for, reason_kind
from masra.prior_gen.video import (
    Frames,
    VideoConfig,
    VideoDecodeError,
    clip_times,
    decode_at,
    event_times,
)
from masra.priors.schema import PRIOR_SCHEMA, SCHEMA_VERSION, STATUSES
from masra.priors.shards import rows_to_table, shard_paths, write_table_atomic
from masra.runlock import LockHeldError, RunLock, holder_alive, read_holder

log = logging.getLogger(__name__)

CAPTION_MODES = ("per_clip", "dense")
_TMP_PART = re.compile(r"^\.part-(\d+of\d+)-.*\.tmp$")


class RunLockedError(LockHeldError):
    """Another writer holds this part of the run folder."""


def lock_path(run_dir: Path, shard: ShardSpec) -> Path:
    """The lock file of part ``shard`` of ``run_dir``."""
    return Path(run_dir) / f"lock-{shard.tag}.json"


@dataclass(frozen=True)
class GenerateConfig:
    """How priors are generated (everything except the model and the dataset).

    Attributes:
        caption_mode: ``per_clip`` (one request per clip, accurate) or ``dense`` (one request per
            video returning all captions; cheaper, see docs/priors.md).
        max_events: events asked for and kept per video.
        event_max_tokens: output budget of the events request.
        caption_max_tokens: output budget of one per-clip caption request.
        dense_tokens_per_clip: output budget per clip of the dense request.
        batch_videos: videos per engine batch and per shard.
        decode_workers: threads decoding the next batch while the engine runs.
    """

    video: VideoConfig = field(default_factory=VideoConfig)
    parse: ParseConfig = field(default_factory=ParseConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    caption_mode: str = "per_clip"
    max_events: int = 16
    event_max_tokens: int = 1024
    caption_max_tokens: int = 48
    dense_tokens_per_clip: int = 24
    batch_videos: int = 16
    decode_workers: int = 2

    def __post_init__(self) -> None:
        if self.caption_mode not in CAPTION_MODES:
            raise ValueError(f"caption_mode must be one of {CAPTION_MODES}, got {self.caption_mode!r}")
        for name in ("max_events", "event_max_tokens", "caption_max_tokens", "dense_tokens_per_clip"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_videos < 1 or self.decode_workers < 1:
            raise ValueError("batch_videos and decode_workers must be >= 1")

    def provenance(self) -> str:
        """The settings that shape the output, as the ``sampling`` JSON column."""
        keys = (
            "caption_mode",
            "max_events",
            "event_max_tokens",
            "caption_max_tokens",
            "dense_tokens_per_clip",
        )
        out: dict[str, Any] = {k: getattr(self, k) for k in keys}
        out.update(sampling=asdict(self.sampling), video=asdict(self.video))
        return json.dumps(out, sort_keys=True)


@dataclass
class RunSummary:
    """What one invocation did (also its entry in the manifest's `invocations`)."""

    run_dir: str
    shard: str
    videos_total: int = 0
    videos_skipped: int = 0
    videos_done: int = 0
    videos_generated: int = 0  # done videos that reached the model (token means are over these)
    status_counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    failure_reasons: dict[str, int] = field(default_factory=dict)
    tokens_in: int = 0
    tokens_out: int = 0
    wall_s: float = 0.0
    shards_written: list[str] = field(default_factory=list)

    def line(self) -> str:
        n = max(self.videos_generated, 1)
        c = self.status_counts
        return (
            f"{self.videos_done} videos ({self.videos_skipped} already done): ok {c['ok']}, partial "
            f"{c['partial']}, failed {c['failed']}; mean tokens in {self.tokens_in / n:.0f}, out "
            f"{self.tokens_out / n:.0f}; wall {self.wall_s:.1f} s ({self.videos_done / max(self.wall_s, 1e-9):.2f} videos/s)"
        )


@dataclass
class _Prepared:
    """A decoded video and its requests (or the reason it failed)."""

    item: VideoItem
    num_clips: int
    requests: list[GenRequest] = field(default_factory=list)
    frames_sampled: int = 0
    error: str | None = None


class PriorGenerator:
    """Builds requests for videos, runs them through an engine, and turns results into rows."""

    def __init__(
        self, *, family: prompts.PromptFamily, clip_len: float, max_clips: int, cfg: GenerateConfig
    ) -> None:
        self.family = family
        self.prompt_version = prompts.prompt_version(family)
        self.clip_len = clip_len
        self.max_clips = max_clips
        self.cfg = cfg
        self.parse_cfg = replace(cfg.parse, max_events=cfg.max_events)  # keep what was asked for

    def prepare(self, item: VideoItem) -> _Prepared:
        """Decode one video and build its requests; decoding problems become ``error``."""
        vc, n = self.cfg.video, num_clips_for(item.duration, self.clip_len, self.max_clips)
        prep = _Prepared(item, n)
        if item.path is None:
            prep.error = "video file not found"
            return prep
        ev_t = event_times(item.duration, vc)
        cl_t = clip_times(n, self.clip_len, vc) if self.cfg.caption_mode == "per_clip" else np.zeros((0, 2))
        all_t = np.clip(np.concatenate([ev_t, cl_t.reshape(-1)]), 0.0, max(item.duration - 1e-3, 0.0))
        try:
            frames = decode_at(item.path, all_t, vc.max_side, skip_nonref=vc.skip_nonref)
        except VideoDecodeError as e:
            prep.error = str(e)
            return prep
        ev = frames.take(np.arange(len(ev_t)))
        prep.frames_sampled = len(all_t)
        prep.requests.append(self._events_request(item, ev))
        if self.cfg.caption_mode == "dense":
            text = prompts.dense_prompt(self.family, item.duration, n, self.clip_len)
            budget = self.cfg.dense_tokens_per_clip * n + 16
            prep.requests.append(
                GenRequest((item.vid, "dense", 0), text, ev.pixels, ev.times, budget, prompts.dense_schema(n))
            )
        else:
            k = cl_t.shape[1]
            for i in range(n):
                fr = frames.take(len(ev_t) + i * k + np.arange(k))
                text = prompts.clip_prompt(self.family, i * self.clip_len, (i + 1) * self.clip_len)
                req = GenRequest(
                    (item.vid, "clip", i),
                    text,
                    fr.pixels,
                    fr.times,
                    self.cfg.caption_max_tokens,
                    prompts.caption_schema(),
                )
                prep.requests.append(req)
        return prep

    def _events_request(self, item: VideoItem, ev: Frames) -> GenRequest:
        text = prompts.events_prompt(self.family, item.duration, len(ev.times), self.cfg.max_events)
        schema = prompts.events_schema(item.duration, self.cfg.max_events)
        return GenRequest(
            (item.vid, "events", 0), text, ev.pixels, ev.times, self.cfg.event_max_tokens, schema
        )

    def to_row(self, prep: _Prepared, results: list[GenResult], engine: Engine) -> dict[str, Any]:
        """One PRIOR_SCHEMA row from a prepared video and its results (in request order)."""
        item, n = prep.item, prep.num_clips
        notes: list[str] = []
        events: list[Any] = []
        captions = [""] * n
        if prep.error is not None:
            status, notes = FAILED, [prep.error]
        else:
            errs = [f"{r.key[1]}: {r.error}" for r in results if r.error]
            ev_res = results[0]
            parsed = parse_events(ev_res.text, item.duration, self.parse_cfg, truncated=ev_res.truncated)
            events = [{"start": e.start, "end": e.end, "text": e.text} for e in parsed.events]
            notes += [f"events: {x}" for x in parsed.notes]
            if self.cfg.caption_mode == "dense":
                captions, cap_notes = parse_captions_dense(results[1].text, n, prompts.CAPTION_MAX_CHARS)
                notes += [f"captions: {x}" for x in cap_notes]
            else:
                captions = [parse_caption(r.text, prompts.CAPTION_MAX_CHARS) for r in results[1:]]
            cap_status, cap_notes = caption_status(captions)
            notes += [f"captions: {x}" for x in cap_notes if x not in notes] + errs
            status = combine_status(parsed.status, cap_status)
        return {
            "video_id": item.vid,
            "duration": item.duration,
            "clip_len": self.clip_len,
            "num_clips": n,
            "events": events,
            "clip_captions": captions,
            "status": status,
            "error": "; ".join(notes) or None,
            "source": "mllm",
            "model_id": engine.model_id,
            "model_revision": engine.model_revision,
            "backend": engine.backend,
            "prompt_version": self.prompt_version,
            "sampling": self.cfg.provenance(),
            "frames_sampled": prep.frames_sampled,
            "tokens_in": sum(r.tokens_in for r in results),
            "tokens_out": sum(r.tokens_out for r in results),
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "schema_version": SCHEMA_VERSION,
        }


def _batches(items: list[VideoItem], size: int) -> Iterator[list[VideoItem]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


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
) -> RunSummary:
    """Generate priors for this shard's part of ``items`` into ``run_dir``; resumable.

    ``items`` is the whole video list of the split(s); ``limit`` keeps only the first ``limit``
    videos of the part (by id) for this invocation, and the manifest then says the part is not
    complete. The engine is only loaded when some selected video is not yet done. Raises
    :class:`RunLockedError` when another writer holds this part (``break_lock`` takes the lock anyway).
    """
    t0 = time.perf_counter()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = RunLock(lock_path(run_dir, shard), f"prior run {run_dir}, part {shard.tag}")
    try:
        lock.acquire(break_lock=break_lock)
    except LockHeldError as e:
        raise RunLockedError(str(e)) from None
    try:
        _clean_temp_files(run_dir, shard)
        mine = sorted((it for it in items if shard.owns(it.vid)), key=lambda it: it.vid)
        selected = mine if limit is None else mine[: max(limit, 0)]
        done = done_video_ids(run_dir)
        todo = [it for it in selected if it.vid not in done]
        summary = RunSummary(
            str(run_dir), shard.tag, videos_total=len(selected), videos_skipped=len(selected) - len(todo)
        )
        log.info(
            "shard %s: %d videos%s, %d already done, %d to do",
            shard.tag,
            len(mine),
            f" (--limit {limit}: {len(selected)})" if limit is not None else "",
            summary.videos_skipped,
            len(todo),
        )
        engine: Engine | None = None
        error: str | None = None
        try:
            if todo:
                engine = engine_factory()
                _run(todo, generator, engine, run_dir, shard, summary)
        except BaseException as e:
            error = f"{type(e).__name__}: {e}"
            raise
        finally:
            summary.wall_s = time.perf_counter() - t0
            invocation = {
                "started_at": started,
                "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "argv": sys.argv[1:],
                "limit": limit,
                "model_id": engine.model_id if engine else None,
                "model_revision": engine.model_revision if engine else None,
                "backend": engine.backend if engine else None,
                "error": error,
                **asdict(summary),
                "rows_written": summary.videos_done,
            }
            write_manifest(run_dir, shard, [it.vid for it in mine], generator, invocation, manifest_extra)
            if engine is not None:
                engine.close()
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


def _row_totals(run_dir: Path, shard: ShardSpec | None) -> dict[str, Any]:
    """Counts over the rows of the complete shards of ``run_dir`` (of one part, or of all)."""
    cols = ["video_id", "status", "error", "model_id", "model_revision", "backend", "tokens_in", "tokens_out"]
    paths = [p for p in shard_paths(run_dir) if shard is None or p.name.startswith(f"part-{shard.tag}-")]
    status_counts = dict.fromkeys(STATUSES, 0)
    reasons: dict[str, int] = {}
    models: dict[str, int] = {}
    ids: set[str] = set()
    rows = tokens_in = tokens_out = 0
    last: dict[str, Any] = {}
    for p in paths:
        t = pq.read_table(p, columns=[c for c in cols if c in pq.read_schema(p).names])
        for r in t.to_pylist():
            rows += 1
            ids.add(r["video_id"])
            status_counts[r["status"]] = status_counts.get(r["status"], 0) + 1
            if r["status"] == FAILED:
                reason = reason_kind(r.get("error") or "")
                reasons[reason] = reasons.get(reason, 0) + 1
            model = r.get("model_id") or "unknown"
            models[model] = models.get(model, 0) + 1
            tokens_in += r.get("tokens_in") or 0
            tokens_out += r.get("tokens_out") or 0
            last = r
    return {
        "rows": rows,
        "videos": len(ids),
        "ids": ids,
        "status_counts": status_counts,
        "failure_reasons": reasons,
        "model_ids": models,
        "model_id": last.get("model_id"),
        "model_revision": last.get("model_revision"),
        "backend": last.get("backend"),
        "tokens_in": tokens_in,
        "tokens_out": tokens_out,
        "shards": [p.name for p in paths],
    }


def write_manifest(
    run_dir: Path,
    shard: ShardSpec,
    part_ids: list[str],
    generator: PriorGenerator,
    invocation: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Rewrite ``manifest-{part}.json`` from the shards present, appending ``invocation``.

    Totals (``videos_done``, ``status_counts``, ``failure_reasons``, tokens, ``model_id``) are over
    the rows of this part's shards; ``run_totals`` over all shards of the folder. ``complete`` is
    true only when every video of the part (``part_ids``: the part of the whole split list, not of
    a ``--limit``) has a row. ``invocations`` keeps every invocation's arguments, times and rows
    written (older manifests' bodies are kept as their first invocation).
    """
    path = run_dir / f"manifest-{shard.tag}.json"
    previous: list[dict[str, Any]] = []
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
        previous = list(old.get("invocations") or [{k: v for k, v in old.items() if k != "config"}])
    except (OSError, ValueError, AttributeError):
        pass
    part = _row_totals(run_dir, shard)
    run = _row_totals(run_dir, None)
    ids: set[str] = part.pop("ids")
    run.pop("ids")
    missing = [v for v in part_ids if v not in ids]
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "prompt_version": generator.prompt_version,
        "prompt_family": generator.family.name,
        "config": json.loads(generator.cfg.provenance()),
        **(extra or {}),
        "run_dir": str(run_dir),
        "shard": shard.tag,
        "finished_at": invocation.get("finished_at"),
        "videos_total": len(part_ids),
        "videos_done": part["videos"],
        "videos_missing": len(missing),
        "missing_sample": missing[:20],
        "complete": not missing,
        **{k: part[k] for k in ("model_id", "model_revision", "backend", "model_ids")},
        "rows": part["rows"],
        "status_counts": part["status_counts"],
        "failure_reasons": part["failure_reasons"],
        "tokens_in": part["tokens_in"],
        "tokens_out": part["tokens_out"],
        "shards": part["shards"],
        "run_totals": {k: v for k, v in run.items() if k != "shards"} | {"shards": len(run["shards"])},
        "invocations": [*previous, invocation],
    }
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return manifest


def _run(
    todo: list[VideoItem],
    gen: PriorGenerator,
    engine: Engine,
    run_dir: Path,
    shard: ShardSpec,
    summary: RunSummary,
) -> None:
    batches = list(_batches(todo, gen.cfg.batch_videos))
    seq = next_seq(run_dir, shard)
    bar = tqdm(total=len(todo), unit="video", desc=f"priors {shard.tag}", dynamic_ncols=True)
    with bar, ThreadPoolExecutor(gen.cfg.decode_workers) as pool:

        def submit(b: list[VideoItem]) -> list[Future[_Prepared]]:
            return [pool.submit(gen.prepare, it) for it in b]

        pending = submit(batches[0])
        for k in range(len(batches)):
            prepared = [f.result() for f in pending]
            if k + 1 < len(batches):
                pending = submit(batches[k + 1])  # decode the next batch while the engine runs
            requests = [r for p in prepared for r in p.requests]
            results = engine.generate(requests, gen.cfg.sampling)
            rows, pos = [], 0
            for p in prepared:
                rows.append(gen.to_row(p, results[pos : pos + len(p.requests)], engine))
                pos += len(p.requests)
            path = write_table_atomic(
                rows_to_table(rows, PRIOR_SCHEMA), run_dir / f"part-{shard.tag}-{seq:05d}.parquet"
            )
            seq += 1
            summary.shards_written.append(path.name)
            for row in rows:
                summary.videos_done += 1
                summary.status_counts[row["status"]] += 1
                summary.videos_generated += int(row["tokens_in"] > 0)
                summary.tokens_in += row["tokens_in"]
                summary.tokens_out += row["tokens_out"]
                if row["status"] == FAILED:
                    reason = reason_kind(row["error"] or "")
                    summary.failure_reasons[reason] = summary.failure_reasons.get(reason, 0) + 1
            bar.update(len(rows))
            bar.set_postfix(ok=summary.status_counts["ok"], failed=summary.status_counts["failed"])
