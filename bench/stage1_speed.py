"""Stage 1 without the model: how many 150-s videos per second the rest of the prior pipeline sustains.

The MLLM is replaced by :class:`CannedEngine`, which answers every request instantly with a valid
JSON answer (events spanning the video, one caption per clip), so what is timed is everything else
of ``masra priors generate``: video decoding and frame sampling (PyAV), request building (prompts,
schemas, per-clip frame stacks), parsing and validation of the answers, and writing the Parquet
shards. It goes through the real :func:`masra.prior_gen.generate.generate_priors` with the same
threads and batching. ``--tiny-model DIR`` swaps in the tiny random Qwen2.5-VL (transformers engine)
instead, which then dominates the time on CPU.

Test videos are rendered once (moving gradients and noise, H.264) into ``--work`` and reused. The
default encoding is x264 ``ultrafast`` (only I and P frames, a keyframe every 250 frames);
``--x264-preset veryfast`` gives the layout of typical downloaded videos (3 B-frames, deblocking).
Phase times are summed over the decoding threads, so they can exceed the wall time.
``cpu_s_per_video`` is the process's CPU time (all threads) per video: on a shared machine it
varies less with other jobs than wall time does, which also rewards using more threads. The decoder's
options (``--strategy``, ``--skip-nonref``, ``--decode-threads``) are passed to
:func:`masra.prior_gen.video.decode_at` for this run only.

Run: ``python -m bench.stage1_speed --videos 6 --json out.json``.
:mod:`bench.stage1_executors` compares the local and the Ray executor on the same videos.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import masra.prior_gen.generator as gen_mod
import masra.prior_gen.sink as sink_mod
from bench.common import env_info, peak_rss_mib, speed_main, speed_parser
from masra.datasets.grid import kept_clips
from masra.prior_gen import prompts
from masra.prior_gen.engines.base import GenRequest, GenResult, SamplingConfig
from masra.prior_gen.generate import GenerateConfig, PriorGenerator, VideoItem, generate_priors
from masra.video_io import STRATEGIES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stage1SpeedConfig:
    """Videos and settings of the run.

    Attributes:
        videos: number of test videos.
        duration: seconds per video (QVHighlights: 150).
        fps / width / height: how the test videos are encoded.
        clip_len / max_clips: the dataset's clip grid (QVHighlights: 2 s, 75 clips).
        caption_mode: ``per_clip`` (one request per clip) or ``dense``.
        batch_videos / decode_workers: the generator's batching and decoding threads.
        x264_preset: how the test videos are encoded (``ultrafast``: I and P frames only).
        keyint: frames between keyframes (x264's ``keyint``; 0: x264's default, 250).
        strategy / skip_nonref / decode_threads: the decoder's options (see
            :func:`masra.video_io.sample_frames`).
    """

    videos: int = 6
    duration: float = 150.0
    fps: int = 30
    width: int = 640
    height: int = 360
    clip_len: float = 2.0
    max_clips: int = 75
    caption_mode: str = "per_clip"
    batch_videos: int = 4
    decode_workers: int = 2
    x264_preset: str = "ultrafast"
    keyint: int = 0
    strategy: str = "auto"
    skip_nonref: bool = False
    decode_threads: int = 0

    def __post_init__(self) -> None:
        if self.videos < 1 or self.duration <= 0 or self.fps < 1:
            raise ValueError("Stage1SpeedConfig: videos, duration and fps must be positive")
        if self.strategy not in STRATEGIES or self.decode_threads < 0 or self.keyint < 0:
            raise ValueError(
                f"Stage1SpeedConfig: strategy must be one of {STRATEGIES}; decode_threads, keyint >= 0"
            )
        if self.width < 32 or self.height < 32 or self.width % 2 or self.height % 2:
            raise ValueError("Stage1SpeedConfig: width and height must be even and >= 32")


class CannedEngine:
    """An engine that answers at once with valid JSON: the stand-in for the MLLM."""

    backend = "canned"
    model_id = "canned-text"
    model_revision = "none"

    def __init__(self, duration: float, events: int = 6) -> None:
        cuts = np.linspace(0.0, duration, events + 1)
        self._events = json.dumps(
            {
                "events": [
                    {
                        "start": round(float(a), 2),
                        "end": round(float(b), 2),
                        "description": f"a person does step {i}",
                    }
                    for i, (a, b) in enumerate(itertools.pairwise(cuts))
                ]
            }
        )

    def generate(self, requests: list[GenRequest], sampling: SamplingConfig) -> list[GenResult]:
        out = []
        for r in requests:
            if r.key[1] == "events":
                text = self._events
            elif r.key[1] == "dense":
                n = int(r.json_schema["properties"]["captions"]["minItems"]) if r.json_schema else 1
                text = json.dumps({"captions": [f"a person in a room, clip {i}" for i in range(n)]})
            else:
                text = json.dumps({"caption": f"a person walks in a room, clip {r.key[2]}"})
            out.append(GenResult(r.key, text, tokens_in=len(r.times) * 64 + 40, tokens_out=len(text) // 4))
        return out

    def close(self) -> None:
        pass


def render_video(path: Path, cfg: Stage1SpeedConfig, seed: int) -> None:
    """Encode a ``cfg.duration``-second H.264 video of moving gradients and noise, frame by frame."""
    import av

    rng = np.random.default_rng(seed)
    h, w = cfg.height, cfg.width
    yy, xx = np.mgrid[0:h, 0 : 2 * w].astype(np.float32)
    texture = (np.sin(xx / 40.0) + np.cos(yy / 30.0 + xx / 90.0)) * 50 + 120  # (H, 2W), cut per frame
    texture = np.clip(texture[..., None] + rng.integers(0, 40, size=(h, 2 * w, 3)), 0, 255).astype(np.uint8)
    tmp = path.with_name(f".{path.name}.tmp.mp4")
    with av.open(str(tmp), mode="w") as container:
        stream = container.add_stream("libx264", rate=cfg.fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        options: dict[str, object] = {"preset": cfg.x264_preset, "crf": "28"}
        if cfg.keyint:
            options["x264-params"] = f"keyint={cfg.keyint}"
        stream.options = options
        for i in range(int(cfg.duration * cfg.fps)):
            off = (3 * i) % w
            frame = np.ascontiguousarray(texture[:, off : off + w])
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    tmp.replace(path)


_LOCK = threading.Lock()


def _timed(fn: Callable[..., Any], store: dict[str, float], key: str) -> Callable[..., Any]:
    """``fn`` that adds its run time to ``store[key]`` (thread-safe: decoding runs in threads)."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            with _LOCK:
                store[key] = store.get(key, 0.0) + time.perf_counter() - t0

    return wrapper


def run_stage1_speed(cfg: Stage1SpeedConfig, work: Path, tiny_model: Path | None = None) -> dict[str, Any]:
    """Render (or reuse) the videos, run the generator over them and time it (see the module doc)."""
    video_dir = work / f"videos-{int(cfg.duration)}s-{cfg.width}x{cfg.height}-{cfg.fps}fps"
    if cfg.x264_preset != "ultrafast":
        video_dir = video_dir.with_name(f"{video_dir.name}-{cfg.x264_preset}")
    if cfg.keyint:
        video_dir = video_dir.with_name(f"{video_dir.name}-keyint{cfg.keyint}")
    video_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for i in range(cfg.videos):
        path = video_dir / f"bench{i:03d}.mp4"
        if not path.is_file():
            render_video(path, cfg, seed=i)
    render_s = time.perf_counter() - t0
    items = [
        VideoItem(f"bench{i:03d}", cfg.duration, video_dir / f"bench{i:03d}.mp4") for i in range(cfg.videos)
    ]
    gcfg = GenerateConfig(
        caption_mode=cfg.caption_mode, batch_videos=cfg.batch_videos, decode_workers=cfg.decode_workers
    )
    family = prompts.FAMILIES["qwen2_5_vl"]
    generator = PriorGenerator(family=family, clip_len=cfg.clip_len, max_clips=cfg.max_clips, cfg=gcfg)
    phases: dict[str, float] = {}
    if tiny_model is not None:
        from masra.prior_gen.engines import EngineConfig, load_engine

        engine_cfg = EngineConfig(model=str(tiny_model), backend="transformers", device="cpu")
        t_load = time.perf_counter()
        engine: Any = load_engine(engine_cfg)
        phases["engine_load_s_total"] = time.perf_counter() - t_load
        engine_name = f"tiny model {tiny_model} (transformers)"
    else:
        engine = CannedEngine(cfg.duration)
        engine_name = "canned text (no model)"
    engine.generate = _timed(engine.generate, phases, "engine")
    generator.prepare = _timed(generator.prepare, phases, "prepare (decode + sample + build)")  # type: ignore[method-assign]
    generator.to_row = _timed(generator.to_row, phases, "parse + row")  # type: ignore[method-assign]
    originals = (gen_mod.decode_at, sink_mod.write_table_atomic)
    decode = functools.partial(
        gen_mod.decode_at, strategy=cfg.strategy, skip_nonref=cfg.skip_nonref, threads=cfg.decode_threads
    )
    gen_mod.decode_at = _timed(decode, phases, "decode (inside prepare)")  # type: ignore[assignment]
    sink_mod.write_table_atomic = _timed(sink_mod.write_table_atomic, phases, "write")  # type: ignore[assignment]
    run_dir = work / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    try:
        t1, cpu1 = time.perf_counter(), time.process_time()
        summary = generate_priors(items, generator=generator, engine_factory=lambda: engine, run_dir=run_dir)
        wall, cpu = time.perf_counter() - t1, time.process_time() - cpu1
    finally:
        gen_mod.decode_at, sink_mod.write_table_atomic = originals
    n_clips = kept_clips(cfg.duration, cfg.clip_len, cfg.max_clips)
    n_req = 1 + (n_clips if cfg.caption_mode == "per_clip" else 1)
    return {
        "bench": "stage1_speed",
        "env": env_info(__import__("torch").device("cpu")),
        "engine": engine_name,
        "videos": cfg.videos,
        "duration_s": cfg.duration,
        "video_format": f"{cfg.width}x{cfg.height} {cfg.fps} fps H.264 (x264 {cfg.x264_preset}, "
        f"keyint {cfg.keyint or 250})",
        "decoder": {"strategy": cfg.strategy, "skip_nonref": cfg.skip_nonref, "threads": cfg.decode_threads},
        "caption_mode": cfg.caption_mode,
        "decode_workers": cfg.decode_workers,
        "batch_videos": cfg.batch_videos,
        "requests_per_video": n_req,
        "wall_s": round(wall, 3),
        "cpu_s_per_video": round(cpu / cfg.videos, 3),
        "videos_per_s": round(cfg.videos / wall, 3),
        "phases_s_per_video": {k: round(v / cfg.videos, 4) for k, v in phases.items()},
        "status_counts": summary.status_counts,
        "render_s_untimed": round(render_s, 1),
        "peak_rss_mib": round(peak_rss_mib(), 1),
    }


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``main``."""
    p = speed_parser(__doc__, data=False, torch_options=False)
    p.add_argument("--videos", type=int, default=Stage1SpeedConfig.videos)
    p.add_argument("--duration", type=float, default=Stage1SpeedConfig.duration)
    p.add_argument("--fps", type=int, default=Stage1SpeedConfig.fps)
    p.add_argument("--width", type=int, default=Stage1SpeedConfig.width)
    p.add_argument("--height", type=int, default=Stage1SpeedConfig.height)
    p.add_argument("--caption-mode", default=Stage1SpeedConfig.caption_mode, choices=("per_clip", "dense"))
    p.add_argument("--decode-workers", type=int, default=Stage1SpeedConfig.decode_workers)
    p.add_argument("--x264-preset", default=Stage1SpeedConfig.x264_preset, help="encoding of the test videos")
    p.add_argument("--keyint", type=int, default=0, help="frames between keyframes (0: x264's 250)")
    p.add_argument("--strategy", default=Stage1SpeedConfig.strategy, choices=STRATEGIES)
    p.add_argument("--skip-nonref", action="store_true", help="skip non-reference frames while decoding")
    p.add_argument("--decode-threads", type=int, default=0, help="FFmpeg threads per video (0: its choice)")
    p.add_argument("--tiny-model", type=Path, default=None, help="time the tiny model instead of canned text")
    p.add_argument("--work", type=Path, default=Path("data/generated/bench/stage1"))
    return p


def _run(args: argparse.Namespace, on_partial: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    cfg = Stage1SpeedConfig(
        videos=args.videos,
        duration=args.duration,
        fps=args.fps,
        width=args.width,
        height=args.height,
        caption_mode=args.caption_mode,
        decode_workers=args.decode_workers,
        x264_preset=args.x264_preset,
        keyint=args.keyint,
        strategy=args.strategy,
        skip_nonref=args.skip_nonref,
        decode_threads=args.decode_threads,
    )
    return run_stage1_speed(cfg, args.work, args.tiny_model)


def main(argv: list[str] | None = None) -> None:
    speed_main(build_parser(), _run, argv)


if __name__ == "__main__":
    main()
