"""Stage-1 executors on this machine: the decode-only rate, then the local and the Ray executor.

On the same rendered test videos (:func:`bench.stage1_speed.render_video`, cached in ``--work``) with
the tiny random Qwen2.5-VL (transformers engine, dense captions, small budgets):

1. decode only: ``PriorGenerator.prepare`` (decode, sample, build requests) on one thread, no engine;
2. the local executor (``generate_priors``, decode threads ahead of the engine), engine load included;
3. the Ray executor on a local Ray cluster (``ray.init(num_cpus=--ray-cpus)``, started before the
   clock), actor start and model load included.

Both executors' rows are compared (ids, statuses, caption counts). The machine's load (``uptime``)
before and after is recorded; the result goes to ``bench/results/{host}-{stamp}-priors-speed.json``
and a section is appended to ``bench/results/RUNLOG.md`` (``make bench-priors-speed``).

Run: ``python -m bench.stage1_executors --tiny-model data/generated/tiny_models/qwen2_5_vl``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import logging
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.common import env_info, write_json
from bench.report import publish
from bench.stage1_speed import Stage1SpeedConfig, render_video
from masra.prior_gen import prompts
from masra.prior_gen.generate import GenerateConfig, PriorGenerator, VideoItem, generate_priors

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[1]


def _uptime() -> str:
    """``uptime``'s line (load averages over 1, 5 and 15 minutes), or the load averages alone."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def _rows(run_dir: Path) -> dict[str, tuple[str, int]]:
    from masra.priors.schema import PRIOR_SCHEMA
    from masra.priors.shards import read_shards

    return {
        r["video_id"]: (r["status"], len(r["clip_captions"]))
        for r in read_shards(run_dir, PRIOR_SCHEMA).to_pylist()
    }


def run_executor_speed(
    cfg: Stage1SpeedConfig, work: Path, tiny_model: Path, ray_cpus: int = 2
) -> dict[str, Any]:
    """Decode-only rate, then the local and the Ray executor on the same videos (see the module doc)."""
    from masra.prior_gen.engines import EngineConfig, load_engine
    from masra.prior_gen.executors.ray_executor import RayConfig, RayExecutor
    from masra.prior_gen.video import VideoConfig

    video_dir = work / f"videos-{int(cfg.duration)}s-{cfg.width}x{cfg.height}-{cfg.fps}fps"
    video_dir.mkdir(parents=True, exist_ok=True)
    for i in range(cfg.videos):
        if not (video_dir / f"bench{i:03d}.mp4").is_file():
            render_video(video_dir / f"bench{i:03d}.mp4", cfg, seed=i)
    items = [
        VideoItem(f"bench{i:03d}", cfg.duration, video_dir / f"bench{i:03d}.mp4") for i in range(cfg.videos)
    ]
    gcfg = GenerateConfig(
        video=VideoConfig(fps=1.0, max_frames=8, max_side=112),
        caption_mode="dense",
        event_max_tokens=16,
        dense_tokens_per_clip=1,
        batch_videos=cfg.batch_videos,
        decode_workers=cfg.decode_workers,
    )
    family = prompts.FAMILIES["qwen2_5_vl"]
    gen = PriorGenerator(family=family, clip_len=cfg.clip_len, max_clips=cfg.max_clips, cfg=gcfg)
    factory = functools.partial(
        load_engine, EngineConfig(model=str(tiny_model), backend="transformers", device="cpu", batch_size=8)
    )
    load_before = _uptime()
    out: dict[str, Any] = {}
    t0, c0 = time.perf_counter(), time.process_time()
    for it in items:
        gen.prepare(it)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    out["decode_only"] = {
        "videos_per_s": round(cfg.videos / wall, 3),
        "wall_s": round(wall, 2),
        "cpu_s_per_video": round(cpu / cfg.videos, 3),
        "threads": 1,
    }
    runs: dict[str, Path] = {}
    for name in ("local", "ray"):
        run_dir = work / f"run-{name}"
        shutil.rmtree(run_dir, ignore_errors=True)
        executor: Any = None
        extra: dict[str, Any] = {}
        if name == "ray":
            import ray

            t_init = time.perf_counter()
            ray.init(num_cpus=ray_cpus, include_dashboard=False, log_to_driver=False)
            extra["ray_init_s_untimed"] = round(time.perf_counter() - t_init, 2)
            executor = RayExecutor(RayConfig(replicas=1))
        try:
            t0, c0 = time.perf_counter(), time.process_time()
            generate_priors(items, generator=gen, engine_factory=factory, run_dir=run_dir, executor=executor)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        finally:
            if name == "ray":
                ray.shutdown()
        runs[name] = run_dir
        out[name] = {
            "videos_per_s": round(cfg.videos / wall, 3),
            "wall_s": round(wall, 2),
            "driver_cpu_s": round(cpu, 2),
            **extra,
        }
    load_after = _uptime()
    return {
        "bench": "stage1_executors",
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "env": env_info(__import__("torch").device("cpu")),
        "engine": f"tiny random Qwen2.5-VL {tiny_model} (transformers, CPU)",
        "videos": cfg.videos,
        "duration_s": cfg.duration,
        "video_format": f"{cfg.width}x{cfg.height} {cfg.fps} fps H.264 (x264 {cfg.x264_preset})",
        "settings": json.loads(gen.cfg.provenance())
        | {"batch_videos": cfg.batch_videos, "decode_workers": cfg.decode_workers},
        "ray_cpus": ray_cpus,
        "uptime_before": load_before,
        "uptime_after": load_after,
        "same_rows": _rows(runs["local"]) == _rows(runs["ray"]),
        **out,
    }


def render_executor_speed(r: dict[str, Any]) -> str:
    """The RUNLOG.md section of :func:`run_executor_speed`'s result."""
    lines = [
        f"## Stage-1 executors, {r['date']} ({r['env']['host']}, {r['env']['cpus']} CPUs)",
        "",
        f"{r['videos']} videos of {r['duration_s']:.0f} s ({r['video_format']}), {r['engine']}, dense captions, "
        f"Ray with {r['ray_cpus']} CPUs. Load before: `{r['uptime_before']}`; after: `{r['uptime_after']}`.",
        "",
        "| what | videos/s | wall s |",
        "|---|---|---|",
        f"| decode only (1 thread, no engine) | {r['decode_only']['videos_per_s']:.3f} | {r['decode_only']['wall_s']:.1f} |",
        f"| local executor (engine start included) | {r['local']['videos_per_s']:.3f} | {r['local']['wall_s']:.1f} |",
        f"| ray executor (actor start included) | {r['ray']['videos_per_s']:.3f} | {r['ray']['wall_s']:.1f} |",
        "",
        f"Same rows (ids, statuses, caption counts) from both executors: {r['same_rows']}.",
        "",
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``main``."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--tiny-model", type=Path, required=True, help="the tiny Qwen2.5-VL folder (make tiny-models)"
    )
    p.add_argument("--videos", type=int, default=12)
    p.add_argument("--duration", type=float, default=60.0, help="seconds per test video")
    p.add_argument("--ray-cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    p.add_argument("--work", type=Path, default=Path("data/generated/bench/stage1"))
    p.add_argument("--json", type=Path, default=None, help="[bench/results/{host}-{stamp}-priors-speed.json]")
    p.add_argument("--results-dir", type=Path, default=REPO / "bench" / "results")
    p.add_argument("--docs", type=Path, default=REPO / "bench" / "results" / "RUNLOG.md")
    p.add_argument("--no-docs", action="store_true", help="do not append to RUNLOG.md")
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cfg = Stage1SpeedConfig(videos=args.videos, duration=args.duration, batch_videos=2)
    result = run_executor_speed(cfg, args.work, args.tiny_model, args.ray_cpus)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    path = args.json or args.results_dir / f"{socket.gethostname()}-{stamp}-priors-speed.json"
    write_json(path, result)
    publish(render_executor_speed(result), path, None if args.no_docs else args.docs)


if __name__ == "__main__":
    main()
