"""One video in, one prior row out: frame sampling, request building, and parsing of the answers.

:class:`PriorGenerator` is pure per-video work with no run folder, lock or engine of its own, so
every executor (:mod:`masra.prior_gen.executors`) shares it: ``prepare`` decodes a video and builds
its requests (a :class:`Prepared`), an engine answers them, and ``to_row`` turns the answers into a
:data:`~masra.priors.schema.PRIOR_SCHEMA` row. A generator pickles, so Ray ships it to its workers.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

import numpy as np

from masra.datasets.grid import kept_clips
from masra.prior_gen import prompts
from masra.prior_gen.engines.base import GenRequest, GenResult, SamplingConfig
from masra.prior_gen.parsing import (
    FAILED,
    ParseConfig,
    caption_status,
    combine_status,
    parse_caption,
    parse_captions_dense,
    parse_events,
)
from masra.prior_gen.runs import VideoItem
from masra.prior_gen.video import Frames, VideoConfig, VideoDecodeError, clip_times, decode_at, event_times
from masra.priors.schema import SCHEMA_VERSION

__all__ = ["CAPTION_MODES", "EngineInfo", "GenerateConfig", "Prepared", "PriorGenerator"]

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
        decode_workers: threads decoding the next batch while the engine runs (local executor).
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


@dataclass(frozen=True)
class EngineInfo:
    """Who answered: the provenance columns an engine gives its rows."""

    model_id: str
    model_revision: str
    backend: str

    @classmethod
    def of(cls, engine: Any) -> EngineInfo:
        """The identity of a loaded engine (anything with the three attributes)."""
        return cls(engine.model_id, engine.model_revision, engine.backend)


@dataclass
class Prepared:
    """A decoded video and its requests (or the reason it failed)."""

    item: VideoItem
    num_clips: int
    requests: list[GenRequest] = field(default_factory=list)
    frames_sampled: int = 0
    error: str | None = None


class PriorGenerator:
    """Builds requests for videos and turns an engine's results into rows."""

    def __init__(
        self, *, family: prompts.PromptFamily, clip_len: float, max_clips: int, cfg: GenerateConfig
    ) -> None:
        self.family = family
        self.prompt_version = prompts.prompt_version(family)
        self.clip_len = clip_len
        self.max_clips = max_clips
        self.cfg = cfg
        self.parse_cfg = replace(cfg.parse, max_events=cfg.max_events)  # keep what was asked for

    def prepare(self, item: VideoItem) -> Prepared:
        """Decode one video and build its requests; decoding problems become ``error``."""
        vc, n = self.cfg.video, kept_clips(item.duration, self.clip_len, self.max_clips)
        prep = Prepared(item, n)
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
            user = prompts.dense_text(item.duration, n, self.clip_len)
            budget = self.cfg.dense_tokens_per_clip * n + 16
            prep.requests.append(
                GenRequest(
                    (item.vid, "dense", 0),
                    self.family.render(prompts.SYSTEM, user),
                    ev.pixels,
                    ev.times,
                    budget,
                    prompts.dense_schema(n),
                    (prompts.SYSTEM, user),
                )
            )
        else:
            k = cl_t.shape[1]
            for i in range(n):
                fr = frames.take(len(ev_t) + i * k + np.arange(k))
                user = prompts.clip_text(i * self.clip_len, (i + 1) * self.clip_len)
                req = GenRequest(
                    (item.vid, "clip", i),
                    self.family.render(prompts.SYSTEM, user),
                    fr.pixels,
                    fr.times,
                    self.cfg.caption_max_tokens,
                    prompts.caption_schema(),
                    (prompts.SYSTEM, user),
                )
                prep.requests.append(req)
        return prep

    def _events_request(self, item: VideoItem, ev: Frames) -> GenRequest:
        user = prompts.events_text(item.duration, len(ev.times), self.cfg.max_events)
        schema = prompts.events_schema(item.duration, self.cfg.max_events)
        return GenRequest(
            (item.vid, "events", 0),
            self.family.render(prompts.SYSTEM, user),
            ev.pixels,
            ev.times,
            self.cfg.event_max_tokens,
            schema,
            (prompts.SYSTEM, user),
        )

    def to_row(self, prep: Prepared, results: list[GenResult], engine: Any) -> dict[str, Any]:
        """One PRIOR_SCHEMA row from a prepared video and its results (in request order).

        ``engine`` is the engine that answered (or an :class:`EngineInfo`): its ``model_id``,
        ``model_revision`` and ``backend`` go into the row.
        """
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

    def answer(self, prepared: list[Prepared], engine: Any) -> list[dict[str, Any]]:
        """Run every request of ``prepared`` through ``engine`` as one batch; one row per video."""
        requests = [r for p in prepared for r in p.requests]
        results = engine.generate(requests, self.cfg.sampling)
        rows, pos = [], 0
        for p in prepared:
            rows.append(self.to_row(p, results[pos : pos + len(p.requests)], engine))
            pos += len(p.requests)
        return rows
