"""Training throughput of the baseline and of full MASRA on the same resident data, in one process.

Both variants are built exactly as ``masra train`` builds them (``build_configs`` -> ``build_model`` /
``build_criterion`` -> :class:`~masra.grounding.train.trainer.Trainer`, which prepares them with
Accelerate), and each timed step is the trainer's own step: gather the batch from the resident split,
forward + criterion, weighted total, backward, clip, optimizer and scheduler step. The variants run
in alternating blocks (baseline, MASRA, baseline, MASRA, ...) so drifts of a shared machine hit both
alike; the MASRA / baseline step-time ratio comes from the medians.

Reported per variant: step time (mean / median / p90), queries/s, the host time spent gathering
batches ("data wait": data are resident, so this is an index gather and nothing else), seconds per
epoch (measured steps x steps per epoch: *extrapolated* unless a whole epoch was timed), and a phase
breakdown (data, forward, matcher, loss, backward, optimizer) from a separate, synchronised pass.

Run: ``python -m bench.train_speed --data DIR/bench_data.json --steps 20 --json out.json``.
"""

from __future__ import annotations

import argparse
import gc
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from torch import nn

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
from bench.options import add_masra_set_option
from masra.datasets.card import DatasetCard, load_card, parse_overrides
from masra.datasets.readers import load_queries
from masra.datasets.store import FeatureStore
from masra.grounding import (
    ResidentSplit,
    TrainConfig,
    Trainer,
    build_configs,
    build_criterion,
    build_model,
    build_split,
    epoch_batches,
    weighted_total,
)
from masra.priors.table import PriorTable, read_prior_table

log = logging.getLogger(__name__)

VARIANTS = ("baseline", "masra")


@dataclass(frozen=True)
class TrainSpeedConfig:
    """What to time.

    Attributes:
        steps: timed steps per variant per round (s/epoch is extrapolated from them).
        warmup: untimed steps per variant before the first round (allocator, autotuning, compile).
        rounds: alternating blocks per variant.
        batch_size: global batch size (the trainer's default is 32).
        device / precision: ``auto`` picks cuda + bf16 when a GPU is there, else cpu + float32.
        compile: ``no``; ``also``: time ``torch.compile``'d models too (variants ``<name>+compile``);
            ``only``: time only the compiled ones. Compilation happens in the warm-up steps, whose
            seconds are reported (``warmup_s``) with dynamo's graph and graph-break counts.
        compile_backend: ``torch.compile`` backend (``inductor``; ``aot_eager`` traces and runs the
            same graphs without generating kernels: a quick check of tracing on a CPU).
        profile_steps: steps of the synchronised phase breakdown per variant (0 skips it).
        variants: which of ``baseline`` and ``masra`` to time.
        model: ModelConfig overrides (e.g. a small ``hidden_dim`` for smoke tests); empty = the defaults
            ``masra train`` uses for a dataset without a config of its own.
        masra_model: ModelConfig overrides of the ``masra`` variant only (a candidate for a cheaper
            MASRA step, timed against the unchanged baseline).
    """

    steps: int = 20
    warmup: int = 3
    rounds: int = 2
    batch_size: int = 32
    device: str = "auto"
    precision: str = "auto"
    compile: str = "no"
    compile_backend: str = "inductor"
    profile_steps: int = 5
    variants: tuple[str, ...] = VARIANTS
    seed: int = 0
    model: dict[str, Any] = field(default_factory=dict)
    masra_model: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("steps", "rounds", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainSpeedConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.warmup < 0 or self.profile_steps < 0:
            raise ValueError("TrainSpeedConfig.warmup and profile_steps must be >= 0")
        if self.compile not in ("no", "also", "only"):
            raise ValueError(f"TrainSpeedConfig.compile must be no, also or only, got {self.compile!r}")
        unknown = set(self.variants) - set(VARIANTS)
        if unknown or not self.variants:
            raise ValueError(f"TrainSpeedConfig.variants must be a non-empty subset of {VARIANTS}")


@dataclass
class _Run:
    """One variant under test: its trainer and the timings collected so far."""

    name: str
    trainer: Trainer
    with_priors: bool
    step_s: list[float] = field(default_factory=list)
    data_s: list[float] = field(default_factory=list)
    cursor: int = 0
    gpu_peak_mib: float | None = None
    warmup_s: float | None = None


def open_data(
    data: BenchData, device: torch.device, dtype: torch.dtype, split: str, with_priors: bool
) -> tuple[DatasetCard, ResidentSplit, PriorTable | None, dict[str, float]]:
    """Card, resident split (with priors when asked and available) and load timings in seconds."""
    clock = Clock(device)
    t0 = clock.now()
    card = load_card(data.card, data.card_overrides)
    store = FeatureStore.open(data.store_path)
    queries, _ = load_queries(card, split)
    t1 = clock.now()
    priors = None
    if with_priors and data.prior_run is not None and data.prior_encoder is not None:
        priors = read_prior_table(card.prior_dir, data.prior_run, data.prior_encoder)
    t2 = clock.now()
    resident = build_split(
        card,
        queries,
        store,
        max_clips=card.max_clips,
        max_text_len=32,
        priors=priors,
        prior_dim=priors.dim if priors is not None else None,
        drop_unlabelled=split == "train",
        dtype=dtype,
        device=device,
        name=split,
    )
    t3 = clock.now()
    times = {
        "open_s": round(t1 - t0, 3),
        "read_priors_s": round(t2 - t1, 3),
        "build_split_s": round(t3 - t2, 3),
    }
    return card, resident, priors, times


def variant_model(cfg: TrainSpeedConfig, masra: bool) -> dict[str, Any]:
    """The ModelConfig overrides of one variant: ``cfg.model``, then ``cfg.masra_model`` for MASRA."""
    return {**cfg.model, **(cfg.masra_model if masra else {})}


def build_trainer(
    name: str,
    card: DatasetCard,
    split: ResidentSplit,
    priors: PriorTable | None,
    cfg: TrainSpeedConfig,
    acc: Accelerator,
    run_dir: Path,
    compile_model: bool,
    backend: str = "inductor",
) -> Trainer:
    """A Trainer for ``baseline`` or ``masra`` built the way ``masra train`` builds it."""
    masra = name == "masra"
    if masra and priors is None:
        raise ValueError("the masra variant needs prior embeddings; the bench data has none")
    tcfg = TrainConfig(
        dataset=card.name,
        batch_size=cfg.batch_size,
        masra=masra,
        seed=cfg.seed,
        epochs=200,
        model=variant_model(cfg, masra),
    )
    model_cfg, loss_cfg = build_configs(tcfg, card, priors.dim if masra and priors is not None else None)
    torch.manual_seed(cfg.seed)
    model: nn.Module = build_model(model_cfg)
    if compile_model:
        model = torch.compile(model, backend=backend)  # type: ignore[assignment]
    criterion = build_criterion(loss_cfg, model_cfg)
    return Trainer(
        tcfg,
        accelerator=acc,
        model=model,
        criterion=criterion,
        train_data=split,
        eval_data=None,
        scorer=lambda rows, data: {"brief": {}},
        run_dir=run_dir,
        checkpoint_config={},
    )


def _batches(split: ResidentSplit, cfg: TrainSpeedConfig, acc: Accelerator) -> list[torch.Tensor]:
    return epoch_batches(len(split), cfg.batch_size, seed=cfg.seed, epoch=0, world=acc.num_processes)


def train_steps(run: _Run, batches: list[torch.Tensor], n: int, clock: Clock, record: bool) -> None:
    """``n`` trainer steps (the body of ``Trainer._train_epoch``), timed per step when ``record``."""
    tr = run.trainer
    module = tr.step_module
    module.train()
    for _ in range(n):
        idx = batches[run.cursor % len(batches)]
        run.cursor += 1
        t0 = clock.now()
        batch = tr.train_data.batch(idx, with_priors=run.with_priors)
        t1 = clock.now(sync=False)
        _, losses = module(batch)
        total = weighted_total(losses, tr.weights)
        tr.acc.backward(total)
        if tr.cfg.grad_clip > 0:
            tr.acc.clip_grad_norm_(module.parameters(), tr.cfg.grad_clip)
        tr.optimizer.step()
        tr.scheduler.step()
        tr.optimizer.zero_grad(set_to_none=True)
        t2 = clock.now()
        if record:
            run.step_s.append(t2 - t0)
            run.data_s.append(t1 - t0)


def profile_phases(run: _Run, batches: list[torch.Tensor], n: int, clock: Clock) -> dict[str, float]:
    """Mean seconds per step of each phase, every phase boundary synchronised (slower than real steps).

    Forward, criterion and matcher are timed with forward hooks on the model, the criterion and its
    matcher; ``loss`` is the criterion's time minus the matcher's.
    """
    tr = run.trainer
    step_module = tr.acc.unwrap_model(tr.step_module)
    marks: dict[str, float] = {}
    totals = dict.fromkeys(("data", "forward", "matcher", "loss", "backward", "optimizer"), 0.0)

    def pre(key: str):  # type: ignore[no-untyped-def]
        def hook(*_: Any, **__: Any) -> None:
            marks[key] = clock.now()

        return hook

    def post(key: str, phase: str):  # type: ignore[no-untyped-def]
        def hook(*_: Any, **__: Any) -> None:
            totals[phase] += clock.now() - marks[key]

        return hook

    matcher_total = [0.0]

    def matcher_post(*_: Any, **__: Any) -> None:
        matcher_total[0] += clock.now() - marks["matcher"]

    handles = [
        step_module.model.register_forward_pre_hook(pre("forward")),
        step_module.model.register_forward_hook(post("forward", "forward")),
        step_module.criterion.register_forward_pre_hook(pre("criterion")),
        step_module.criterion.register_forward_hook(post("criterion", "loss")),
        step_module.criterion.matcher.register_forward_pre_hook(pre("matcher")),
        step_module.criterion.matcher.register_forward_hook(matcher_post),
    ]
    module = tr.step_module
    module.train()
    try:
        for _ in range(n):
            idx = batches[run.cursor % len(batches)]
            run.cursor += 1
            t0 = clock.now()
            batch = tr.train_data.batch(idx, with_priors=run.with_priors)
            totals["data"] += clock.now() - t0
            _, losses = module(batch)
            total = weighted_total(losses, tr.weights)
            t1 = clock.now()
            tr.acc.backward(total)
            t2 = clock.now()
            totals["backward"] += t2 - t1
            if tr.cfg.grad_clip > 0:
                tr.acc.clip_grad_norm_(module.parameters(), tr.cfg.grad_clip)
            tr.optimizer.step()
            tr.scheduler.step()
            tr.optimizer.zero_grad(set_to_none=True)
            totals["optimizer"] += clock.now() - t2
    finally:
        for h in handles:
            h.remove()
    totals["matcher"] = matcher_total[0]
    totals["loss"] -= matcher_total[0]
    return {k: round(v / max(n, 1), 6) for k, v in totals.items()}


def run_train_speed(
    data: BenchData, cfg: TrainSpeedConfig, on_partial: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    """Time every variant (see the module doc) and return the results as a JSON-able dict.

    ``on_partial`` receives the result so far after each variant's warm-up (``warmup_s``, no timed
    variants yet) and once the timed rounds are done, before the phase profile.
    """
    device = pick_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    clock = Clock(device)
    acc = Accelerator(mixed_precision=precision, cpu=device.type == "cpu")
    need_priors = "masra" in cfg.variants
    card, split, priors, load_times = open_data(data, device, DTYPES[precision], "train", need_priors)
    batches = _batches(split, cfg, acc)
    names = [v for v in VARIANTS if v in cfg.variants]
    if cfg.compile == "also":
        names += [f"{v}+compile" for v in names]
    elif cfg.compile == "only":
        names = [f"{v}+compile" for v in names]
    runs: list[_Run] = []
    with tempfile.TemporaryDirectory(prefix="masra-bench-") as tmp:
        for name in names:
            base = name.split("+")[0]
            trainer = build_trainer(
                base,
                card,
                split,
                priors,
                cfg,
                acc,
                Path(tmp),
                compile_model=name.endswith("+compile"),
                backend=cfg.compile_backend,
            )
            runs.append(_Run(name, trainer, with_priors=base == "masra"))
        for run in runs:
            t0 = clock.now()
            train_steps(run, batches, cfg.warmup, clock, record=False)
            run.warmup_s = round(clock.now() - t0, 3)
            log.info("%s: %d warm-up steps in %.1f s", run.name, cfg.warmup, run.warmup_s)
            if on_partial is not None:  # e.g. the compile time, should the timed steps be cut short
                on_partial(_assemble(data, cfg, device, precision, runs, {}, batches, load_times))
        for r in range(cfg.rounds):
            for run in runs:
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                train_steps(run, batches, cfg.steps, clock, record=True)
                peak = gpu_peak_mib(device)
                if peak is not None:
                    run.gpu_peak_mib = max(run.gpu_peak_mib or 0.0, peak)
                log.info(
                    "round %d %s: median step %.4f s", r + 1, run.name, summarize(run.step_s)["median_s"]
                )
        partial = _assemble(data, cfg, device, precision, runs, {}, batches, load_times)
        if on_partial is not None:
            on_partial(partial)  # the timed rounds are safe even if the profile is cut short
        profiles = (
            {run.name: profile_phases(run, batches, cfg.profile_steps, clock) for run in runs}
            if (cfg.profile_steps)
            else {}
        )
        result = _assemble(data, cfg, device, precision, runs, profiles, batches, load_times)
    del runs, split
    gc.collect()
    return result


def _assemble(
    data: BenchData,
    cfg: TrainSpeedConfig,
    device: torch.device,
    precision: str,
    runs: list[_Run],
    profiles: dict[str, dict[str, float]],
    batches: list[torch.Tensor],
    load_times: dict[str, float],
) -> dict[str, Any]:
    """The JSON result from the timings collected so far (``variants``: those with timed steps)."""
    steps_per_epoch = len(batches)
    timed_steps = cfg.steps * cfg.rounds
    variants: dict[str, Any] = {}
    for run in (r for r in runs if r.step_s):
        st = summarize(run.step_s)
        mean = st["mean_s"]
        variants[run.name] = {
            "step": st,
            "queries_per_s": round(cfg.batch_size / mean, 1),
            "data_wait_s_per_step": round(sum(run.data_s) / len(run.data_s), 6),
            "data_wait_share": round(sum(run.data_s) / sum(run.step_s), 4),
            "s_per_epoch": round(mean * steps_per_epoch, 2),
            "s_per_epoch_extrapolated": timed_steps < steps_per_epoch,
            "gpu_peak_mib": None if run.gpu_peak_mib is None else round(run.gpu_peak_mib, 1),
            "phases_s_per_step": profiles.get(run.name),
            "params": sum(p.numel() for p in run.trainer.model.parameters()),
            "warmup_s": run.warmup_s,
        }
    ratios = {}
    for suffix in ("", "+compile"):
        b, m = variants.get(f"baseline{suffix}"), variants.get(f"masra{suffix}")
        if b and m:
            ratios[f"masra_over_baseline{suffix}"] = round(m["step"]["median_s"] / b["step"]["median_s"], 3)
    return {
        "bench": "train_speed",
        "env": env_info(device),
        "precision": precision,
        "data": data.description,
        "window_source": data.window_source,
        "train_queries": int(sum(len(b) for b in batches)),
        "batch_size": cfg.batch_size,
        "steps_per_epoch": steps_per_epoch,
        "timed_steps_per_variant": timed_steps,
        "warmup_steps": cfg.warmup,
        "warmup_s": {run.name: run.warmup_s for run in runs},
        "load_s": load_times,
        "compile": _compile_stats(cfg) if cfg.compile != "no" else None,
        "model_overrides": dict(cfg.model),
        "masra_model_overrides": dict(cfg.masra_model),
        "variants": variants,
        "ratios": ratios,
        "peak_rss_mib": round(peak_rss_mib(), 1),
    }


def _compile_stats(cfg: TrainSpeedConfig) -> dict[str, Any]:
    """Backend and dynamo's counters of this process: graphs compiled, graph breaks (by reason).

    The counters are torch internals: if they cannot be read, the error is reported instead, so that
    the timings measured before are still written.
    """
    try:
        from torch._dynamo.utils import counters  # imported only when something was compiled

        breaks = dict(counters["graph_break"])
        return {
            "backend": cfg.compile_backend,
            "unique_graphs": int(counters["stats"].get("unique_graphs", 0)),
            "graph_breaks": int(sum(breaks.values())),
            "graph_break_reasons": {
                str(k)[:200]: int(v) for k, v in sorted(breaks.items(), key=lambda kv: -kv[1])[:10]
            },
        }
    except Exception as err:  # never lose the timings to a changed torch internal
        log.warning("dynamo counters unreadable: %s", err)
        return {"backend": cfg.compile_backend, "counters_error": repr(err)}


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``main``."""
    p = speed_parser(__doc__)
    p.add_argument("--steps", type=int, default=TrainSpeedConfig.steps)
    p.add_argument("--warmup", type=int, default=TrainSpeedConfig.warmup)
    p.add_argument("--rounds", type=int, default=TrainSpeedConfig.rounds)
    p.add_argument("--batch-size", type=int, default=TrainSpeedConfig.batch_size)
    p.add_argument(
        "--compile", default="no", choices=("no", "also", "only"), help="time torch.compile'd models"
    )
    p.add_argument(
        "--compile-backend",
        default=TrainSpeedConfig.compile_backend,
        help="inductor (default), aot_eager, ...",
    )
    p.add_argument("--profile-steps", type=int, default=TrainSpeedConfig.profile_steps)
    p.add_argument("--variants", default=",".join(VARIANTS))
    add_masra_set_option(
        p, "ModelConfig override of the masra variant only (YAML value), e.g. negative_share=0.5."
    )
    return p


def _run(args: argparse.Namespace, on_partial: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    cfg = TrainSpeedConfig(
        steps=args.steps,
        warmup=args.warmup,
        rounds=args.rounds,
        batch_size=args.batch_size,
        device=args.device,
        precision=args.precision,
        compile=args.compile,
        compile_backend=args.compile_backend,
        profile_steps=args.profile_steps,
        variants=tuple(v for v in args.variants.split(",") if v),
        masra_model=parse_overrides(args.masra_sets),
    )
    return run_train_speed(load_bench_data(args.data), cfg, on_partial=on_partial)


def main(argv: list[str] | None = None) -> None:
    speed_main(build_parser(), _run, argv)


if __name__ == "__main__":
    main()
