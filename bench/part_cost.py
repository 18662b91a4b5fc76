"""What each MASRA part adds to a training step: MASRA minus one part at a time, timed side by side.

Every variant is built as ``masra train`` builds it (:func:`bench.op_count.build_variant`) and runs the
trainer's step (``TrainStep`` forward with the criterion, weighted total, backward) on the same random
batch at a card's shapes (:func:`bench.op_count.random_batch`). The variants run in alternating rounds,
so a drift of a shared machine hits all of them alike; each part's cost is the median step of full
MASRA minus that of MASRA without it (``masra-<part>``), and its share of the gap to the baseline.

Variants: ``baseline``; ``masra`` (the defaults); ``masra-esta``, ``-lrca``, ``-sge``, ``-sora``,
``-dai`` (``model.use_<part>`` off); ``masra-video`` (no query-free video encoder layer,
``model.num_video_layers`` 0); ``masra+prior_videos`` (the open world's recipe: a quarter of the batch
again as videos without a query, whose prior losses join the step's); ``masra+replace`` (the video
encoder's layer in place of a clip-encoder layer, ``model.video_layers_replace``); ``masra+esta_sge``
(ESTA reads SGE's prediction, ``model.esta_reads_sge``); ``masra+sora_video`` (SORA once per video on
the query-free features, ``model.sora_placement`` ``video``); ``masra+sge_depthwise`` (SGE's
convolution per channel, ``model.sge_depthwise``); ``masra+video_attn`` (the video encoder's layer
without its FFN, ``model.video_ffn_dim`` 0); ``masra+cheap`` (the first three, :data:`CHEAP`);
``masra+cheap+video_attn`` (those and the attention-only video layer); ``masra+lean`` (those and no
video encoder layer); ``masra+neg50`` / ``masra+neg25`` (the rolled-query pass on half / a quarter of
the batch, ``model.negative_share``) and ``baseline+neg50`` (the baseline with the same cut). Also the ATen ops each variant
dispatches per step (deterministic, so comparable on a busy machine) and, for ``baseline`` and
``masra``, the milliseconds of each model part and loss, forward and backward
(:func:`bench.op_count.time_step_parts`: every op's own wall time, on a CPU where ops are synchronous).

Run: ``python -m bench.part_cost --dataset qvhighlights --rounds 3 --json out.json`` (one torch thread).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

from bench.common import env_info, write_json
from bench.op_count import (
    OpCountConfig,
    Variant,
    build_variant,
    count_step_flops,
    count_step_ops,
    random_batch,
    time_step_parts,
)
from masra.grounding import Batch, VideoBatch

log = logging.getLogger("bench.part_cost")

PARTS = ("esta", "lrca", "sge", "sora", "dai")
# The three candidates that keep the video encoder, together.
CHEAP: dict[str, Any] = {"esta_reads_sge": True, "sora_placement": "video", "sge_depthwise": True}
VARIANTS: dict[str, dict[str, Any]] = {
    "baseline": {},
    "masra": {},
    **{f"masra-{p}": {f"use_{p}": False} for p in PARTS},
    "masra-video": {"num_video_layers": 0},
    "masra+prior_videos": {},
    "masra+replace": {"video_layers_replace": True},
    "masra+esta_sge": {"esta_reads_sge": True},
    "masra+sora_video": {"sora_placement": "video"},
    "masra+sge_depthwise": {"sge_depthwise": True},
    "masra+video_attn": {"video_ffn_dim": 0},
    "masra+cheap": CHEAP,
    "masra+cheap+video_attn": {**CHEAP, "video_ffn_dim": 0},
    "masra+lean": {**CHEAP, "num_video_layers": 0},
    "masra+neg50": {"negative_share": 0.5},
    "masra+neg25": {"negative_share": 0.25},
    "baseline+neg50": {"negative_share": 0.5},  # the same cut in the baseline, for a like-for-like ratio
}
PRIOR_VIDEO_SHARE = 0.25  # of the batch, the open world's prior_video_ratio


def build(name: str, cfg: OpCountConfig, acc: Accelerator) -> tuple[Variant, int, int]:
    """The variant's prepared TrainStep, as ``masra train`` builds it with the variant's overrides."""
    masra = not name.startswith("baseline")
    return build_variant(name, cfg, acc, masra=masra, model=VARIANTS[name])


def with_prior_videos(batch: Batch, share: float) -> Batch:
    """``batch`` plus ``share`` of its size again as prior-only videos (its first videos, reused)."""
    n = max(1, round(share * batch.video.shape[0]))
    assert batch.priors is not None
    priors = batch.priors.rows(torch.arange(n, device=batch.video.device))
    extra = VideoBatch(video=batch.video[:n], video_mask=batch.video_mask[:n], priors=priors)
    return replace(batch, prior_videos=extra)


def time_rounds(runs: list[tuple[Variant, Batch]], rounds: int, steps: int) -> dict[str, list[float]]:
    """Alternating rounds of ``steps`` steps per variant: every step's seconds, per variant."""
    times: dict[str, list[float]] = {v.name: [] for v, _ in runs}
    for _ in range(rounds):
        for v, batch in runs:
            for _ in range(steps):
                t0 = time.perf_counter()
                v.run(batch)
                times[v.name].append(time.perf_counter() - t0)
    return times


def run_part_cost(
    cfg: OpCountConfig, names: list[str], rounds: int, steps: int, profile_steps: int = 0
) -> dict[str, Any]:
    """Time (and count the ops of) every variant; a JSON-able dict. ``profile_steps`` > 0 also
    profiles ``baseline`` and ``masra`` by part (:func:`bench.op_count.time_step_parts`)."""
    acc = Accelerator(cpu=True)
    runs: list[tuple[Variant, Batch]] = []
    batch: Batch | None = None
    for name in names:
        variant, vdim, tdim = build(name, cfg, acc)
        if batch is None:
            batch = random_batch(cfg, vdim, tdim, torch.device("cpu"), torch.float32)
        b = with_prior_videos(batch, PRIOR_VIDEO_SHARE) if name == "masra+prior_videos" else batch
        if name.startswith("baseline"):
            b = replace(b, priors=None)
        variant.run(b)  # warm-up
        runs.append((variant, b))
    ops = {v.name: count_step_ops(v, b)["ops"] for v, b in runs}
    flops = {v.name: count_step_flops(v, b) for v, b in runs}
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    times = time_rounds(runs, rounds, steps)
    median = {k: statistics.median(t) for k, t in times.items()}
    out: dict[str, Any] = {
        "bench": "part_cost",
        "env": env_info(torch.device("cpu")),
        "threads": torch.get_num_threads(),
        "config": {
            "dataset": cfg.dataset,
            "batch_size": cfg.batch_size,
            "clips": cfg.num_clips,
            "text_len": cfg.text_len,
            "model": cfg.model,
            "rounds": rounds,
            "steps": steps,
        },
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "wall_s": round(time.perf_counter() - t0, 1),
        "median_s": {k: round(v, 4) for k, v in median.items()},
        "min_s": {k: round(min(t), 4) for k, t in times.items()},
        "ops": ops,
        "flops": flops,
    }
    if profile_steps:
        out["profile_ms"] = {
            v.name: time_step_parts(v, b, profile_steps) for v, b in runs if v.name in ("baseline", "masra")
        }
    if "baseline" in median and "masra" in median:
        base, full = median["baseline"], median["masra"]
        out["masra_over_baseline"] = round(full / base, 3)
        gap = full - base
        out["part_s"] = {}
        for name in names:
            if name.startswith("masra-"):
                cost = full - median[name]
                out["part_s"][name.removeprefix("masra-")] = {
                    "seconds": round(cost, 4),
                    "share_of_gap": round(cost / gap, 3) if gap > 0 else None,
                }
        if "masra+prior_videos" in median:
            extra = median["masra+prior_videos"] - full
            out["part_s"]["prior_videos"] = {"seconds": round(extra, 4), "over_masra": round(extra / full, 3)}
    return out


def format_table(result: dict[str, Any]) -> str:
    """Markdown: median step, ratio to the baseline and ops per variant; each part's cost."""
    med, ops, flops = result["median_s"], result["ops"], result.get("flops", {})
    base, base_flops = med.get("baseline"), flops.get("baseline")
    lines = [
        "| variant | median step (ms) | / baseline | ATen ops | GFLOP | FLOPs / baseline |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in med.items():
        ratio = f"{s / base:.3f}" if base else "-"
        n = flops.get(name)
        gflop = "-" if n is None else f"{n / 1e9:.1f}"
        flop_ratio = f"{n / base_flops:.3f}" if n is not None and base_flops else "-"
        lines.append(f"| {name} | {s * 1000:.0f} | {ratio} | {ops[name]} | {gflop} | {flop_ratio} |")
    if result.get("part_s"):
        lines += ["", "| part | step time it adds (ms) | share of MASRA's extra time |", "|---|---|---|"]
        for part, row in result["part_s"].items():
            share = row.get("share_of_gap", row.get("over_masra"))
            lines.append(f"| {part} | {row['seconds'] * 1000:.0f} | {share if share is not None else '-'} |")
    profile = result.get("profile_ms")
    if profile:
        names = list(profile)
        lines += ["", "| region (ms per step) | " + " | ".join(f"{n} fwd / bwd" for n in names) + " |"]
        lines.append("|---|" + "---|" * len(names))
        regions = sorted(
            {r for n in names for r in profile[n]},
            key=lambda r: -max(profile[n].get(r, {"total": 0.0})["total"] for n in names),
        )
        for region in regions:
            cells = [
                "-"
                if (row := profile[n].get(region)) is None
                else f"{row['forward']:.0f} / {row['backward']:.0f}"
                for n in names
            ]
            lines.append(f"| {region} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        f"{result['config']['rounds']} alternating rounds of {result['config']['steps']} steps, "
        f"{result['threads']} torch thread(s); load average before {result['loadavg_before']}, "
        f"after {result['loadavg_after']}"
    )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.part_cost", description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="qvhighlights", help="Card whose feature sizes shape the batch.")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--clips", type=int, default=75)
    p.add_argument("--text-len", type=int, default=32)
    p.add_argument("--rounds", type=int, default=3, help="Alternating rounds.")
    p.add_argument("--steps", type=int, default=3, help="Steps per variant per round.")
    p.add_argument("--variants", default=",".join(VARIANTS), help="Comma list.")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads.")
    p.add_argument(
        "--profile-steps", type=int, default=2, help="Steps of the by-part time profile (0: none)."
    )
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="ModelConfig override of every variant (e.g. hidden_dim=64).",
    )
    p.add_argument("--json", type=Path, default=None, help="Also write the result here.")
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    names = [n for n in args.variants.split(",") if n]
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"unknown --variants {unknown}; known: {', '.join(VARIANTS)}")
    model = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.sets)}
    cfg = OpCountConfig(
        dataset=args.dataset,
        batch_size=args.batch_size,
        num_clips=args.clips,
        text_len=args.text_len,
        model=model,
    )
    result = run_part_cost(cfg, names, args.rounds, args.steps, args.profile_steps)
    print(format_table(result))
    if args.json is not None:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
