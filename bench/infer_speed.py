"""Inference speed of the baseline and of MASRA, and the end-to-end evaluation of the val split.

Measured per variant (random weights: speed does not depend on them):

* **batched**: the trainer's evaluation path (``Trainer.predict``'s loop): resident val batches of
  ``eval_batch_size`` queries through the model in eval mode, outputs copied to the host; queries/s.
* **single query**: :class:`~masra.grounding.infer.grounder.Grounder` ``predict`` of one (video, query)
  pair from host arrays, as an application would call it; median / p90 latency.
* **end to end**: val split from the feature store to a metrics JSON file: open the store and
  annotations, build the resident split, predict, post-process (``predictions_from_outputs``), score
  (``evaluate_submission``) and write the JSON; total seconds and each phase.

Priors never reach the model: its forward takes clip and query features only, and evaluation gathers
batches with ``with_priors=False``. Any difference between the variants therefore comes from the
architecture parts that MASRA adds to the forward pass (SGE, SORA, DAI, and the ESTA/LRCA heads),
never from priors. Peak process RSS and the GPU's max allocated memory are reported per run.

Run: ``python -m bench.infer_speed --data DIR/bench_data.json --json out.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.common import (
    DTYPES,
    BenchData,
    Clock,
    env_info,
    gpu_peak_mib,
    load_bench_data,
    peak_rss_mib,
    pick_device,
    resolve_precision,
    speed_main,
    speed_parser,
    summarize,
)
from bench.train_speed import VARIANTS, open_data
from masra.datasets.store import FeatureStore
from masra.grounding import (
    Grounder,
    GrounderConfig,
    ModelConfig,
    PostprocessConfig,
    ResidentSplit,
    TrainConfig,
    build_configs,
    build_model,
    epoch_batches,
    foreground_prob,
    predictions_from_outputs,
)
from masra.grounding.metrics import evaluate_submission

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InferSpeedConfig:
    """What to time.

    Attributes:
        eval_batch_size: queries per forward pass in the batched path (the trainer's default 256).
        repeats: timed passes over the split in the batched path (the best is reported).
        single_queries: queries timed one by one through the Grounder (after 3 warm-up calls).
        device / precision: as in :class:`bench.train_speed.TrainSpeedConfig`.
        prior_dim: prior embedding size the MASRA heads are built for (None: the bench data's).
        part_costs: also time the baseline with each MASRA part alone (:func:`part_costs`).
    """

    eval_batch_size: int = 256
    repeats: int = 2
    single_queries: int = 30
    device: str = "auto"
    precision: str = "auto"
    prior_dim: int | None = None
    variants: tuple[str, ...] = VARIANTS
    seed: int = 0
    part_costs: bool = True

    def __post_init__(self) -> None:
        if self.prior_dim is not None and self.prior_dim < 1:
            raise ValueError(f"InferSpeedConfig.prior_dim must be >= 1, got {self.prior_dim}")
        for name in ("eval_batch_size", "repeats", "single_queries"):
            if getattr(self, name) < 1:
                raise ValueError(f"InferSpeedConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not self.variants or set(self.variants) - set(VARIANTS):
            raise ValueError(f"InferSpeedConfig.variants must be a non-empty subset of {VARIANTS}")


def _model_config(name: str, card: Any, prior_dim: int) -> ModelConfig:
    tcfg = TrainConfig(dataset=card.name, masra=name == "masra")
    model_cfg, _ = build_configs(tcfg, card, prior_dim if name == "masra" else None)
    return model_cfg


@torch.no_grad()
def predict_split(
    model: torch.nn.Module,
    split: ResidentSplit,
    batch_size: int,
    precision: str,
    max_batches: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Foreground probs (N, Q), spans (N, Q, 2) and saliency (N, L) of every query (or of the first
    ``max_batches`` batches), on the host."""
    device = split.device
    probs, spans, sals = [], [], []
    use_amp = precision in ("bf16", "fp16")
    for idx in epoch_batches(len(split), batch_size, seed=0, epoch=0, shuffle=False)[:max_batches]:
        b = split.batch(idx, with_priors=False)
        with torch.autocast(device_type=device.type, dtype=DTYPES[precision], enabled=use_amp):
            out = model(b.video, b.video_mask, b.text, b.text_mask)
        probs.append(foreground_prob(out["pred_logits"]).float().cpu())
        spans.append(out["pred_spans"].float().cpu())
        sals.append(out["saliency"].float().cpu())
    return torch.cat(probs), torch.cat(spans), torch.cat(sals)


def _single_latency(
    model: torch.nn.Module, card: Any, store: FeatureStore, split: ResidentSplit, n: int, clock: Clock
) -> dict[str, float]:
    """Grounder.predict of one (video, query) pair at a time, from the store's host arrays.

    ``n`` calls are timed after 3 warm-up calls, going round the split again when it is smaller.
    """
    g = Grounder(
        model,
        GrounderConfig(
            clip_len=card.clip_len,
            max_clips=card.max_clips,
            video_dim=store.video_dim,
            text_dim=store.text_dim,
            temporal_endpoint=card.temporal_endpoint,
        ),
        device=split.device,
    )
    queries = [split.queries[i % len(split.queries)] for i in range(n + 3)]  # 3 warm-up calls, then n
    times = []
    for i, q in enumerate(queries):
        video = np.asarray(store.video(q.vid), np.float32)
        text = np.asarray(store.text(q.qid), np.float32)
        t0 = clock.now()
        g.predict(video, query_features=text, duration=q.duration)
        if i >= 3:
            times.append(clock.now() - t0)
    return summarize(times)


PARTS = ("sge", "sora", "dai", "esta", "lrca")


def part_costs(
    card: Any, split: ResidentSplit, prior_dim: int, precision: str, clock: Clock, queries: int = 64
) -> dict[str, float]:
    """Forward time (ms per query, best of 3, eval mode) of the baseline and of the baseline + one part.

    Says which MASRA part makes inference dearer than the baseline's (priors play no part in it).
    """
    idx = torch.arange(min(queries, len(split)))
    b = split.batch(idx, with_priors=False)
    use_amp = precision in ("bf16", "fp16")
    out: dict[str, float] = {}
    for name in ("baseline", *PARTS):
        model_cfg = _model_config("masra", card, prior_dim)
        switches = {f"use_{p}": p == name for p in PARTS}
        model_cfg = ModelConfig.from_dict({**model_cfg.to_dict(), **switches})
        torch.manual_seed(0)
        model = build_model(model_cfg).to(split.device).eval()
        best = float("inf")
        with torch.no_grad(), torch.autocast(split.device.type, dtype=DTYPES[precision], enabled=use_amp):
            for _ in range(3):
                t0 = clock.now()
                model(b.video, b.video_mask, b.text, b.text_mask)
                best = min(best, clock.now() - t0)
        out[name if name == "baseline" else f"baseline+{name}"] = round(1000 * best / len(idx), 3)
    return out


def run_infer_speed(
    data: BenchData, cfg: InferSpeedConfig, on_partial: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    """Time every variant (see the module doc) and return the results as a JSON-able dict.

    ``on_partial`` receives the result so far after each variant (before the part costs).
    """
    device = pick_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    clock = Clock(device)
    t_start = clock.now()
    card, split, _, load_times = open_data(data, device, DTYPES[precision], "val", with_priors=False)
    t_loaded = clock.now()
    store = FeatureStore.open(data.store_path)
    prior_dim = cfg.prior_dim or data.prior_dim
    results: dict[str, Any] = {}
    for k, name in enumerate(v for v in VARIANTS if v in cfg.variants):
        torch.manual_seed(cfg.seed)
        model = build_model(_model_config(name, card, prior_dim)).to(device).eval()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        predict_split(model, split, cfg.eval_batch_size, precision, max_batches=1)  # warm-up
        passes = []
        for _ in range(cfg.repeats):
            t0 = clock.now()
            prob, span, sal = predict_split(model, split, cfg.eval_batch_size, precision)
            passes.append(clock.now() - t0)
        best = min(passes)
        phases: dict[str, float] = {"predict_s": round(best, 4)}
        t0 = clock.now()
        rows = predictions_from_outputs(prob, span, sal, split.meta, PostprocessConfig(top_k=10))
        t1 = clock.now()
        metrics = evaluate_submission(rows, split.queries, clip_len=card.clip_len)
        t2 = clock.now()
        with tempfile.TemporaryDirectory(prefix="masra-bench-") as tmp:
            (Path(tmp) / "metrics_val.json").write_text(json.dumps(metrics), encoding="utf-8")
        t3 = clock.now()
        phases.update(
            postprocess_s=round(t1 - t0, 4), score_s=round(t2 - t1, 4), write_json_s=round(t3 - t2, 4)
        )
        # The load phase is shared by the variants; it is counted in the first one's end-to-end time.
        load_s = (t_loaded - t_start) if k == 0 else 0.0
        single = _single_latency(model, card, store, split, cfg.single_queries, clock)
        results[name] = {
            "batched_queries_per_s": round(len(split) / best, 1),
            "batched_passes_s": [round(p, 4) for p in passes],
            "single_query_latency": single,
            "e2e_eval_s": round(load_s + sum(phases.values()), 3),
            "e2e_phases_s": {"load_s": round(load_s, 3), **phases},
            "gpu_peak_mib": None if gpu_peak_mib(device) is None else round(gpu_peak_mib(device) or 0.0, 1),
            "params": sum(p.numel() for p in model.parameters()),
        }
        del model
        if on_partial is not None:
            on_partial(_result(data, cfg, device, precision, split, load_times, results, None))
    costs = part_costs(card, split, prior_dim, precision, clock) if cfg.part_costs else None
    return _result(data, cfg, device, precision, split, load_times, results, costs)


def _result(
    data: BenchData,
    cfg: InferSpeedConfig,
    device: torch.device,
    precision: str,
    split: ResidentSplit,
    load_times: dict[str, float],
    results: dict[str, Any],
    costs: dict[str, float] | None,
) -> dict[str, Any]:
    """The JSON result from the variants timed so far (ratios once both are there)."""
    ratios = {}
    if "baseline" in results and "masra" in results:
        b, m = results["baseline"], results["masra"]
        ratios["batched_time_masra_over_baseline"] = round(
            b["batched_queries_per_s"] / m["batched_queries_per_s"], 3
        )
        ratios["single_latency_masra_over_baseline"] = round(
            m["single_query_latency"]["median_s"] / b["single_query_latency"]["median_s"], 3
        )
    return {
        "bench": "infer_speed",
        "part_costs_ms_per_query": costs,
        "env": env_info(device),
        "precision": precision,
        "data": data.description,
        "window_source": data.window_source,
        "val_queries": len(split),
        "eval_batch_size": cfg.eval_batch_size,
        "load_s": load_times,
        "variants": dict(results),  # a snapshot: the caller keeps adding to results
        "ratios": ratios,
        "peak_rss_mib": round(peak_rss_mib(), 1),
    }


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``main``."""
    p = speed_parser(__doc__)
    p.add_argument("--eval-batch-size", type=int, default=InferSpeedConfig.eval_batch_size)
    p.add_argument("--repeats", type=int, default=InferSpeedConfig.repeats)
    p.add_argument("--single-queries", type=int, default=InferSpeedConfig.single_queries)
    p.add_argument("--prior-dim", type=int, default=None, help="default: the bench data's")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--no-part-costs", action="store_true", help="skip the per-part forward costs")
    return p


def _run(args: argparse.Namespace, on_partial: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    cfg = InferSpeedConfig(
        eval_batch_size=args.eval_batch_size,
        repeats=args.repeats,
        single_queries=args.single_queries,
        device=args.device,
        precision=args.precision,
        prior_dim=args.prior_dim,
        variants=tuple(v for v in args.variants.split(",") if v),
        part_costs=not args.no_part_costs,
    )
    return run_infer_speed(load_bench_data(args.data), cfg, on_partial=on_partial)


def main(argv: list[str] | None = None) -> None:
    speed_main(build_parser(), _run, argv)


if __name__ == "__main__":
    main()
