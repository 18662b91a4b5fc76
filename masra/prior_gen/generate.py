"""Stage-1 orchestration: videos in, validated prior rows out, written as atomic Parquet shards.

A run folder is ``{card.prior_dir}/{dataset}__{model-slug}__{prompt-version}``. Each batch of
videos becomes one shard ``part-{i:03d}of{N:03d}-{seq:05d}.parquet`` (``i/N`` is the ``--shard``),
written atomically; a killed run loses at most its in-flight batch. A rerun reads the ``video_id``
column of all complete shards and skips those videos, so a second complete run writes nothing (it
does not even load the model). Each invocation writes ``manifest-{i:03d}of{N:03d}.json``.
Run layout, sharding and the clip grid are in :mod:`masra.prior_gen.runs`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
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
from masra.priors.shards import rows_to_table, write_table_atomic

log = logging.getLogger(__name__)

CAPTION_MODES = ("per_clip", "dense")


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
    """What one invocation did (also the body of its manifest)."""

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
) -> RunSummary:
    """Generate priors for this shard's part of ``items`` into ``run_dir``; resumable.

    The engine is only loaded when some video of the shard is not yet done.
    """
    t0 = time.perf_counter()
    run_dir.mkdir(parents=True, exist_ok=True)
    mine = sorted((it for it in items if shard.owns(it.vid)), key=lambda it: it.vid)
    done = done_video_ids(run_dir)
    todo = [it for it in mine if it.vid not in done]
    summary = RunSummary(
        str(run_dir), shard.tag, videos_total=len(mine), videos_skipped=len(mine) - len(todo)
    )
    log.info(
        "shard %s: %d videos, %d already done, %d to do",
        shard.tag,
        len(mine),
        summary.videos_skipped,
        len(todo),
    )
    engine: Engine | None = None
    try:
        if todo:
            engine = engine_factory()
            _run(todo, generator, engine, run_dir, shard, summary)
    finally:
        summary.wall_s = time.perf_counter() - t0
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "prompt_version": generator.prompt_version,
            "prompt_family": generator.family.name,
            "config": json.loads(generator.cfg.provenance()),
            "model_id": engine.model_id if engine else None,
            "model_revision": engine.model_revision if engine else None,
            "backend": engine.backend if engine else None,
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "complete": summary.videos_skipped + summary.videos_done == summary.videos_total,
            **(manifest_extra or {}),
            **asdict(summary),
        }
        path = run_dir / f"manifest-{shard.tag}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)
        if engine is not None:
            engine.close()
    log.info("priors %s: %s", run_dir.name, summary.line())
    return summary


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
