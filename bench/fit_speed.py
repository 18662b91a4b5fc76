"""A real ``Trainer.fit`` of a few whole epochs at QVHighlights scale, evaluation and checkpoints included.

Where :mod:`bench.train_speed` times single steps and extrapolates, this runs the trainer's own loop
for ``--epochs`` epochs with an evaluation of the val split every ``--eval-every`` epochs (prediction,
post-processing, scoring, best/last checkpoints written), then projects a 200-epoch run from the
measured epoch and evaluation times. The projection is labelled as such; the epochs are measured.

Run: ``python -m bench.fit_speed --data DIR/bench_data.json --epochs 2 --json out.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

from bench.common import (
    DTYPES,
    env_info,
    gpu_peak_mib,
    load_bench_data,
    peak_rss_mib,
    pick_device,
    resolve_precision,
    speed_main,
    speed_parser,
)
from bench.train_speed import open_data
from masra.grounding import TrainConfig, Trainer, build_configs, build_criterion, build_model
from masra.grounding.metrics import evaluate_submission

log = logging.getLogger(__name__)


def run_fit(
    data_path: Path,
    *,
    variant: str,
    epochs: int,
    eval_every: int,
    batch_size: int,
    device_name: str,
    compile_model: bool,
    precision: str = "auto",
) -> dict[str, Any]:
    """Fit ``epochs`` epochs of ``variant`` (``baseline`` or ``masra``); returns timings.

    ``precision``: ``auto`` is bf16 on CUDA and float32 on a CPU, as the trainer picks.
    """
    if epochs < 1 or eval_every < 1:
        raise ValueError("epochs and eval_every must be >= 1")
    data = load_bench_data(data_path)
    device = pick_device(device_name)
    precision = resolve_precision(precision, device)
    acc = Accelerator(mixed_precision=precision, cpu=device.type == "cpu")
    masra = variant == "masra"
    card, train, priors, load_train = open_data(data, device, DTYPES[precision], "train", masra)
    _, val, _, load_val = open_data(data, device, DTYPES[precision], "val", False)
    tcfg = TrainConfig(
        dataset=card.name, epochs=epochs, eval_every=eval_every, batch_size=batch_size, masra=masra,
        best_metric="MR-full-R1@0.5", log_every=10_000, compile=compile_model,
    )  # fmt: skip
    model_cfg, loss_cfg = build_configs(tcfg, card, priors.dim if priors is not None else None)
    model = build_model(model_cfg)
    if compile_model:
        model = torch.compile(model)  # type: ignore[assignment]

    def scorer(rows: list[dict[str, Any]], split: Any) -> dict[str, Any]:
        return evaluate_submission(rows, split.queries, clip_len=card.clip_len)

    with tempfile.TemporaryDirectory(prefix="masra-fit-") as tmp:
        trainer = Trainer(
            tcfg,
            accelerator=acc,
            model=model,
            criterion=build_criterion(loss_cfg, model_cfg),
            train_data=train,
            eval_data=val,
            scorer=scorer,
            run_dir=Path(tmp),
            checkpoint_config={"model": model_cfg.to_dict(), "loss": loss_cfg.to_dict()},
        )
        t0 = time.perf_counter()
        result = trainer.fit()
        if device.type == "cuda":
            torch.cuda.synchronize()
        wall = time.perf_counter() - t0
        evals = [json.loads(x) for x in (Path(tmp) / "metrics.jsonl").read_text().splitlines() if x.strip()]
        t1 = time.perf_counter()
        trainer.evaluate()
        if device.type == "cuda":
            torch.cuda.synchronize()
        eval_s = time.perf_counter() - t1
    n_evals = len(evals)
    train_s = max(wall - n_evals * eval_s, 0.0)
    epoch_s = train_s / epochs
    projected = 200 * epoch_s + (200 // 5) * eval_s
    return {
        "bench": "fit_speed",
        "env": env_info(device),
        "variant": variant + ("+compile" if compile_model else ""),
        "precision": precision,
        "batch_size": batch_size,
        "steps_per_epoch": trainer.steps_per_epoch,
        "epochs": epochs,
        "evaluations": n_evals,
        "fit_wall_s": round(wall, 2),
        "eval_s_each": round(eval_s, 3),
        "train_s_per_epoch": round(epoch_s, 2),
        "projected_200_epochs_eval_every_5_min": round(projected / 60, 2),
        "load_s": {"train": load_train, "val": load_val},
        "final_brief": {k: v for k, v in (evals[-1] if evals else {}).items() if k.startswith("MR-full")},
        "steps": result["steps"],
        "gpu_peak_mib": None if gpu_peak_mib(device) is None else round(gpu_peak_mib(device) or 0.0, 1),
        "peak_rss_mib": round(peak_rss_mib(), 1),
    }


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``main``."""
    p = speed_parser(__doc__)
    p.add_argument("--variant", choices=("baseline", "masra"), default="masra")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--eval-every", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--compile", action="store_true")
    return p


def _run(args: argparse.Namespace, on_partial: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    return run_fit(
        args.data,
        variant=args.variant,
        epochs=args.epochs,
        eval_every=args.eval_every,
        batch_size=args.batch_size,
        device_name=args.device,
        compile_model=args.compile,
        precision=args.precision,
    )


def main(argv: list[str] | None = None) -> None:
    speed_main(build_parser(), _run, argv)


if __name__ == "__main__":
    main()
