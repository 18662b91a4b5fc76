"""`make bench-batch-size`: does a larger batch (fewer, larger steps) keep the accuracy of batch 32?

For each world (the open world, ``make openworld``, with ``masra/configs/openworld.yaml``; the fixture,
``make fixture``, with ``masra/configs/fixture.yaml`` at batch 32) and each batch size (32, the standard
recipe, then 128 and 256), ``--seeds`` seeds are trained through the real training entry point
(:func:`masra.grounding.train.recipe.run_training`) for the same number of **epochs** (so a batch of
128 takes a quarter of the steps), with

* the learning rate scaled by the square root of the batch ratio, ``lr * sqrt(B / 32)`` (``--scaling
  linear`` for ``lr * B / 32``), and
* linear warm-up over ``--warmup-share`` of the epochs for the larger batches (at least the config's
  own warm-up), then the config's schedule.

Every run is scored once after its last epoch (no checkpoint selection) on **val**, the split the
choice is made on, and (open world) on **test**, the split that is reported and that no choice saw:
the last checkpoint is scored on test through :func:`masra.grounding.infer.evaluate.evaluate_checkpoint`
(the same path as ``masra eval --checkpoint``). The fixture has no test split: its numbers are val
only and do not take part in the choice.

The pick: the largest batch whose mean val R1@0.5 over the seeds is within one standard error (of the
batch-32 mean) of batch 32's, on the open world. Writes ``bench/results/<host>-<date>-batch-size.json``
and appends a section to ``bench/results/RUNLOG.md``. A run whose folder holds a finished run of the
identical configuration (and its test score) is kept, so an interrupted study resumes.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import socket
import statistics
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from bench.common import study_stamp
from bench.label_efficiency import _commit, last_metrics
from bench.priors import finished_same

log = logging.getLogger("bench.batch_study")

REPO = Path(__file__).resolve().parents[1]
BATCHES = (32, 128, 256)
REFERENCE = 32
METRICS = {"R1@0.5": "MR-full-R1@0.5", "R1@0.7": "MR-full-R1@0.7", "mAP": "MR-full-mAP"}
WORLDS: dict[str, dict[str, Any]] = {
    "openworld": {
        "config": "masra/configs/openworld.yaml",
        "dir": "data/generated/openworld",
        "test": "test",
    },
    "fixture": {"config": "masra/configs/fixture.yaml", "dir": "data/generated/fixture", "test": None},
}


def scaled_lr(lr: float, batch: int, scaling: str) -> float:
    """The learning rate for ``batch``: ``lr * sqrt(batch / 32)`` (``sqrt``) or ``lr * batch / 32``."""
    ratio = batch / REFERENCE
    return lr * (math.sqrt(ratio) if scaling == "sqrt" else ratio)


def mean_se(values: list[float]) -> dict[str, float | int]:
    """Mean, standard error of the mean and count (se NaN below 2 values)."""
    n = len(values)
    mean = statistics.fmean(values) if n else math.nan
    se = statistics.stdev(values) / math.sqrt(n) if n > 1 else math.nan
    return {"mean": round(mean, 3), "se": round(se, 3), "n": n}


def pick_batch(val: dict[str, list[float]]) -> int | None:
    """The largest batch whose mean is at least batch 32's mean minus one standard error of it."""
    ref = mean_se(val.get(str(REFERENCE), []))
    if ref["n"] < 2:
        return None
    floor = float(ref["mean"]) - float(ref["se"])
    ok = [int(b) for b, v in val.items() if v and statistics.fmean(v) >= floor]
    return max(ok) if ok else None


def _train(cfg_dict: dict[str, Any], run: str, store: str, test_split: str | None) -> tuple[str, float]:
    """Train one run in a worker process, then score its last checkpoint on ``test_split``."""
    import torch

    from masra.datasets.card import load_card
    from masra.datasets.store import FeatureStore
    from masra.grounding import Grounder, TrainConfig, evaluate_checkpoint, run_training

    torch.set_num_threads(1)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("masra").setLevel(logging.WARNING)
    t0 = time.perf_counter()
    cfg = TrainConfig.from_dict(cfg_dict)
    if not finished_same(Path(run), cfg_dict):
        run_training(cfg, run, store_dir=store, overwrite=True)
    if test_split is not None:
        card = load_card(cfg.dataset, cfg.card)
        grounder = Grounder.from_pretrained(Path(run) / "last", card=card)
        evaluate_checkpoint(grounder, card, test_split, run, store=FeatureStore.open(store))
    return run, time.perf_counter() - t0


def _done(run: Path, cfg: dict[str, Any], test_split: str | None) -> bool:
    return finished_same(run, cfg) and (test_split is None or (run / f"metrics_{test_split}.json").is_file())


def collect(work: Path, worlds: list[str], batches: list[int], seeds: list[int]) -> dict[str, Any]:
    """world -> split -> metric -> batch -> one value per seed (finished runs only); and run seconds."""
    out: dict[str, Any] = {}
    for w in worlds:
        test = WORLDS[w]["test"]
        per_split: dict[str, Any] = {}
        for split in ["val"] + ([test] if test else []):
            per_metric: dict[str, Any] = {}
            for name, key in METRICS.items():
                per_batch: dict[str, list[float]] = {}
                for b in batches:
                    vals = []
                    for seed in seeds:
                        run = work / w / f"b{b}-seed{seed}"
                        path = run / f"metrics_{split}.json"
                        if split == "val" and (run / "summary.json").is_file():
                            vals.append(float(last_metrics(run)[key]))
                        elif split != "val" and path.is_file():
                            vals.append(float(json.loads(path.read_text())["brief"][key]))
                    per_batch[str(b)] = vals
                per_metric[name] = per_batch
            per_split[split] = per_metric
        seconds = {}
        for b in batches:
            for seed in seeds:
                summary = work / w / f"b{b}-seed{seed}" / "summary.json"
                if summary.is_file():
                    seconds[f"b{b}-seed{seed}"] = json.loads(summary.read_text())["train_seconds"]
        out[w] = {"values": per_split, "train_seconds": seconds}
    return out


def render(results: dict[str, Any]) -> str:
    """Markdown: per world and split, mean ± standard error per batch for each metric."""
    lines = [
        f"Batch-size study, {results['machine']}, {results['date']}, commit {results['commit']}; lr "
        f"scaling {results['scaling']}, warm-up {results['warmup_share']:g} of the epochs for B > 32; "
        f"reduced: {results['reduced'] or 'no'}.",
        "",
    ]
    for w, data in results["worlds"].items():
        batches = list(next(iter(next(iter(data["values"].values())).values())))
        for split, metrics in data["values"].items():
            lines.append(f"{w}, {split} (mean ± standard error over seeds; seeds n):")
            lines.append("")
            lines.append("| metric | " + " | ".join(f"B={b}" for b in batches) + " |")
            lines.append("|---|" + "---|" * len(batches))
            for name, per in metrics.items():
                cells = []
                for b in batches:
                    s = mean_se(per[b])
                    cells.append(f"{s['mean']:.2f} ± {s['se']:.2f} (n={s['n']})" if s["n"] else "-")
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
            lines.append("")
        lines.append(f"{w}: pick on val R1@0.5 = B={data['pick']}")
        lines.append("")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.batch_study", description=__doc__.split("\n")[0])
    p.add_argument("--worlds", default=",".join(WORLDS), help=f"Comma list of {', '.join(WORLDS)}.")
    p.add_argument("--batches", default=",".join(map(str, BATCHES)), help="Batch sizes (32 first).")
    p.add_argument("--seeds", type=int, default=3, help="Seeds per world and batch (seed, seed+1, ...).")
    p.add_argument("--scaling", choices=("sqrt", "linear"), default="sqrt", help="Learning-rate scaling.")
    p.add_argument("--warmup-share", type=float, default=0.1, help="Warm-up share of epochs for B > 32.")
    p.add_argument("--epochs", type=int, default=0, help="Epochs of every run (0: the config's).")
    p.add_argument("--work", type=Path, default=REPO / "runs/batch-size", help="Runs and stores.")
    p.add_argument("--jobs", type=int, default=2, help="Trainings side by side (one torch thread each).")
    p.add_argument("--reduced", default="", help="What was cut from the full study, for the record.")
    p.add_argument("--render-only", action="store_true", help="Collect finished runs; train nothing.")
    p.add_argument("--no-docs", action="store_true", help="Do not append to bench/results/RUNLOG.md.")
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TQDM_DISABLE", "1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from masra.datasets.card import load_card
    from masra.datasets.store_build import build_feature_store
    from masra.grounding import load_train_config

    worlds = [w for w in args.worlds.split(",") if w]
    batches = [int(b) for b in args.batches.split(",")]
    if batches[0] != REFERENCE or sorted(set(worlds) - set(WORLDS)):
        raise SystemExit(f"--batches must start with {REFERENCE}; --worlds from {', '.join(WORLDS)}")
    commit = _commit()  # the code the runs train with, read before they start
    jobs: list[tuple[dict[str, Any], Path, str, str | None]] = []
    seeds: list[int] = []
    for w in worlds:
        spec = WORLDS[w]
        root = str((REPO / spec["dir"]).resolve())
        if '"complete"' not in (
            (Path(root) / "fixture.json").read_text() if (Path(root) / "fixture.json").is_file() else ""
        ):
            raise SystemExit(f"no finished {w} at {root}; run `make {w}` first")
        config = REPO / spec["config"]
        base = load_train_config(w, config, {"card.root": root})
        card = load_card(w, {"root": root})
        store = args.work / w / "store"
        build_feature_store(card, ["train", "val"] + ([spec["test"]] if spec["test"] else []), store)
        seeds = [base.seed + k for k in range(args.seeds)]
        epochs = args.epochs or base.epochs
        for seed in seeds:  # seed-major: an interrupted study still has whole seeds
            for b in batches:
                warmup = (
                    base.warmup_epochs
                    if b == REFERENCE
                    else max(base.warmup_epochs, args.warmup_share * epochs)
                )
                over = {
                    "card.root": root,
                    "seed": seed,
                    "batch_size": b,
                    "lr": scaled_lr(base.lr, b, args.scaling),
                    "epochs": epochs,
                    "eval_every": epochs,
                    "eval_split": "val",
                    "warmup_epochs": round(min(warmup, epochs - 1), 3),
                }
                cfg = load_train_config(w, config, over)
                run = args.work / w / f"b{b}-seed{seed}"
                if not _done(run, cfg.to_dict(), spec["test"]):
                    jobs.append((cfg.to_dict(), run, str(store), spec["test"]))
    t0 = time.perf_counter()
    if jobs and not args.render_only:
        log.info("%d runs to train, %d at a time", len(jobs), args.jobs)
        with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(_train, cfg, str(run), store, test) for cfg, run, store, test in jobs]
            for k, fut in enumerate(as_completed(futures), 1):
                run, secs = fut.result()
                log.info("[%d/%d] %s in %.0f s", k, len(jobs), run, secs)
    found = collect(args.work, worlds, batches, seeds)
    for data in found.values():
        data["pick"] = pick_batch(data["values"]["val"]["R1@0.5"])
    head, now = study_stamp(args.jobs, commit)
    results: dict[str, Any] = {
        "bench": "batch_size",
        **head,
        "scaling": args.scaling,
        "warmup_share": args.warmup_share,
        "epochs": args.epochs or "config",
        "seeds": seeds,
        "batches": batches,
        "reduced": args.reduced,
        "choice": "largest batch with mean val R1@0.5 >= batch 32's mean - one standard error; open world",
        "worlds": found,
        "wall_seconds": round(time.perf_counter() - t0, 1),
    }
    stamp = now.strftime("%Y%m%d-%H%M%S")
    path = REPO / "bench" / "results" / f"{socket.gethostname()}-{stamp}-batch-size.json"
    path.write_text(json.dumps(results, indent=1) + "\n")
    table = render(results)
    print(table)
    print(f"\nwrote {path}")
    if not args.no_docs:
        with open(REPO / "bench" / "results" / "RUNLOG.md", "a", encoding="utf-8") as f:
            f.write(f"\n## Batch-size study, {results['date']} (`{path.name}`)\n\n{table}\n")


if __name__ == "__main__":
    main()
