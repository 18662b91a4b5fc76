"""`make bench-label-efficiency`: do priors pay when labels are few? R1@0.5 against label fraction.

On the open world (``make openworld``, docs/fixture.md), where priors know what the training
annotations do not (every event of a video is described, only some are queries), five settings are
trained at each label fraction with ``masra/configs/openworld.yaml`` through the real training entry point
(:func:`masra.grounding.train.recipe.run_training`):

* ``baseline``: every MASRA part off, no priors read;
* ``masra+true``: MASRA with the world's ``reference`` priors (jittered spans, some wrong captions);
* ``masra+shuffled``: MASRA with another video's priors, refitted to each video (``shuffled``);
* ``masra+noisy``: MASRA with the ``noisy`` priors (more jitter, more wrong captions and events);
* ``masra+ignored``: MASRA with every prior-loss weight 0 (and no prior-only videos): the
  architecture without the priors' gradients.

Every run trains for the same number of optimiser steps (``--steps``), whatever its fraction: a
fraction's epochs are ``ceil(steps / steps_per_epoch)``. The labelled queries are a seeded, nested
choice (``label_fraction``); priors cover every training video at every fraction. Metrics are those
of the single evaluation after the last epoch (no checkpoint selection), on ``--eval-split`` (``test``
by default; choices are made with ``--eval-split val``, never with test).

A run whose folder holds a finished run of the identical configuration is kept, so an interrupted
study resumes. Writes ``bench/results/<host>-<date>-label-efficiency.json`` (and ``.png``): per
setting and fraction one value per seed in seed order, paired differences by seed (true - shuffled,
true - ignored, true - baseline, ignored - baseline) with their standard errors.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import math
import os
import socket
import statistics
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from bench.common import study_stamp
from bench.options import add_candidate_option
from bench.priors import finished_same  # one rule for "this run is done" in both accuracy benches

log = logging.getLogger("bench.label_efficiency")

REPO = Path(__file__).resolve().parents[1]
SETTINGS: dict[str, dict[str, Any]] = {
    "baseline": {"masra": False},
    # The prior settings name ESTA's edge share (the default, ``auto``) so that runs made before it was
    # the default (share 0) are not taken for them (bench.priors.finished_same).
    "masra+true": {"priors_run": "reference", "loss.esta_edge_share": "auto"},
    "masra+shuffled": {"priors_run": "shuffled", "loss.esta_edge_share": "auto"},
    "masra+noisy": {"priors_run": "noisy", "loss.esta_edge_share": "auto"},
    "masra+ignored": {
        "priors_run": "reference",
        "prior_video_ratio": 0.0,
        "loss.w_esta_event": 0.0,
        "loss.w_esta_clip": 0.0,
        "loss.w_sge": 0.0,
        "loss.w_lrca": 0.0,
    },
}
FRACTIONS = (0.1, 0.25, 0.5, 1.0)
STEPS = 500  # optimiser steps of every run, whatever its label fraction
WARMUP_SHARE = 0.05  # of each run's epochs
METRICS = {"R1@0.5": "MR-full-R1@0.5", "R1@0.7": "MR-full-R1@0.7", "mAP": "MR-full-mAP"}
PAIRS = (
    ("masra+true", "masra+shuffled"),
    ("masra+true", "masra+ignored"),
    ("masra+true", "baseline"),
    ("masra+ignored", "baseline"),
)


def paired(a: list[float], b: list[float]) -> dict[str, float | int]:
    """Mean, standard error and count of the seed-paired differences ``a - b``."""
    diffs = [x - y for x, y in zip(a, b, strict=False)]
    n = len(diffs)
    mean = statistics.fmean(diffs) if n else math.nan
    se = statistics.stdev(diffs) / math.sqrt(n) if n > 1 else math.nan
    return {"mean": round(mean, 3), "se": round(se, 3), "n": n, "wins": sum(d > 0 for d in diffs)}


def candidate_setting(overrides: list[str]) -> tuple[str, dict[str, Any]]:
    """``--candidate KEY=VALUE ...``: a setting of masra's defaults with true priors plus these
    overrides, named ``masra+true+cand-<8 hex of the overrides>`` so that two candidates never share
    a run folder."""
    from masra.datasets.card import parse_overrides

    over = parse_overrides(overrides)
    digest = hashlib.sha1(json.dumps(over, sort_keys=True).encode()).hexdigest()[:8]
    return f"masra+true+cand-{digest}", {**SETTINGS["masra+true"], **over}


def guard(
    values: dict[str, dict[str, dict[str, list[float]]]], candidate: str, fractions: list[float]
) -> dict[str, Any]:
    """The accuracy guard: ``candidate - masra+true`` paired by seed, per metric and fraction, and
    whether it holds (the mean difference is not below minus one standard error)."""
    out: dict[str, Any] = {}
    for metric, per in values.items():
        rows = {}
        for f in fractions:
            key = f"{f:g}"
            diff = paired(per[candidate][key], per["masra+true"][key])
            rows[key] = {**diff, "holds": bool(diff["n"] > 1 and diff["mean"] >= -diff["se"])}
        out[metric] = rows
    out["holds"] = all(row["holds"] for m in values for row in out[m].values())
    return out


def with_candidate(
    settings: list[str], known: dict[str, dict[str, Any]], overrides: list[str]
) -> tuple[str | None, list[str]]:
    """``--candidate``'s setting registered in ``known``: its name and the settings to train (its
    reference ``masra+true`` added, each once); ``(None, settings)`` without overrides."""
    if not overrides:
        return None, settings
    cand, known[cand] = candidate_setting(overrides)
    return cand, [*dict.fromkeys([*settings, "masra+true"]), cand]


def record_guard(
    results: dict[str, Any],
    values: dict[str, dict[str, dict[str, list[float]]]],
    candidate: str,
    overrides: list[str],
    fractions: list[float],
    logger: logging.Logger,
) -> None:
    """The candidate and its :func:`guard` into a study's ``results``, and the verdict logged."""
    results["candidate"] = {"name": candidate, "overrides": overrides}
    results["guard"] = guard(values, candidate, fractions)
    verdict = "holds" if results["guard"]["holds"] else "FAILS"
    logger.info("accuracy guard of %s %s: %s", candidate, overrides, verdict)


def steps_per_epoch(num_queries: int, fraction: float, batch: int) -> int:
    """Optimiser steps of one epoch over ``round(fraction * n)`` (at least 1) labelled queries."""
    return -(-max(1, round(fraction * num_queries)) // batch)


def run_name(setting: str, fraction: float, seed: int) -> str:
    return f"{setting.replace('+', '_')}-f{fraction:g}-seed{seed}"


def last_metrics(run: Path) -> dict[str, Any]:
    """The last evaluation line of a finished run."""
    return dict(json.loads((run / "metrics.jsonl").read_text().splitlines()[-1]))


def _train(cfg_dict: dict[str, Any], run: str, store: str) -> tuple[str, float]:
    """One training run in a worker process; returns (run folder, seconds)."""
    import torch

    from masra.grounding import TrainConfig, run_training

    torch.set_num_threads(1)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("masra").setLevel(logging.WARNING)
    t0 = time.perf_counter()
    run_training(TrainConfig.from_dict(cfg_dict), run, store_dir=store, overwrite=True)  # unfinished: redo
    return run, time.perf_counter() - t0


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        )
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True)
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except OSError:
        return "unknown"


def collect(
    work: Path, settings: list[str], fractions: list[float], seeds: list[int]
) -> tuple[dict[str, dict[str, dict[str, list[float]]]], dict[str, float]]:
    """metric -> setting -> fraction -> one value per seed (finished runs only), and run seconds."""
    out: dict[str, dict[str, dict[str, list[float]]]] = {m: {} for m in METRICS}
    seconds: dict[str, float] = {}
    for metric, key in METRICS.items():
        for s in settings:
            per: dict[str, list[float]] = {}
            for f in fractions:
                vals = []
                for seed in seeds:
                    run = work / "runs" / run_name(s, f, seed)
                    if not (run / "summary.json").is_file():
                        continue
                    vals.append(float(last_metrics(run)[key]))
                    seconds[run.name] = json.loads((run / "summary.json").read_text())["train_seconds"]
                per[f"{f:g}"] = vals
            out[metric][s] = per
    return out, seconds


def render(results: dict[str, Any]) -> str:
    """A markdown table of mean ± std R1@0.5 per setting and fraction, then the paired differences."""
    fr = [f"{f:g}" for f in results["fractions"]]
    lines = [
        f"R1@0.5 on `{results['eval_on']}` ({results['world']}), {len(results['seeds'])} seeds, "
        f"{results['steps']} steps per run, last evaluation; {results['machine']}, {results['date']}:",
        "",
        "| setting | " + " | ".join(f"{int(float(f) * 100)} % labels" for f in fr) + " |",
        "|---|" + "---|" * len(fr),
    ]
    for s, per in results["results"].items():
        cells = []
        for f in fr:
            v = per.get(f, [])
            cells.append(f"{statistics.fmean(v):.2f} ± {statistics.stdev(v):.2f}" if len(v) > 1 else "-")
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    lines += ["", "Paired by seed (mean ± standard error, seeds where the first is higher):", ""]
    lines.append("| difference | " + " | ".join(f"{int(float(f) * 100)} %" for f in fr) + " |")
    lines.append("|---|" + "---|" * len(fr))
    for name, per in results["paired"].items():
        cells = [f"{per[f]['mean']:+.2f} ± {per[f]['se']:.2f} ({per[f]['wins']}/{per[f]['n']})" for f in fr]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    """R1@0.5 against label fraction, one line per setting (mean), the seed range shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for s, per in results["results"].items():
        xs = [f for f in results["fractions"] if per.get(f"{f:g}")]
        vals = [per[f"{f:g}"] for f in xs]
        mean = [statistics.fmean(v) for v in vals]
        (line,) = ax.plot(xs, mean, marker="o", label=s)
        ax.fill_between(
            xs, [min(v) for v in vals], [max(v) for v in vals], color=line.get_color(), alpha=0.15
        )
    ax.set_xscale("log")
    ax.set_xticks(results["fractions"], [f"{int(f * 100)} %" for f in results["fractions"]])
    ax.set_xlabel("share of training queries labelled (priors on every training video)")
    ax.set_ylabel(f"R1@0.5 on {results['eval_split']}")
    ax.set_title(f"Label efficiency on the open world ({len(results['seeds'])} seeds, range shaded)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.label_efficiency", description=__doc__.split("\n")[0])
    p.add_argument(
        "--world-dir", type=Path, default=REPO / "data/generated/openworld", help="Built open world."
    )
    p.add_argument(
        "--config", type=Path, default=REPO / "masra/configs/openworld.yaml", help="Training config."
    )
    p.add_argument("--work", type=Path, default=REPO / "runs/label-efficiency", help="Runs and store folder.")
    p.add_argument("--fractions", default=",".join(f"{f:g}" for f in FRACTIONS), help="Label fractions.")
    p.add_argument("--seeds", type=int, default=3, help="Seeds per setting and fraction (seed, seed+1, ...).")
    p.add_argument("--settings", default=",".join(SETTINGS), help=f"Comma list of {', '.join(SETTINGS)}.")
    p.add_argument("--steps", type=int, default=STEPS, help="Optimiser steps of every run.")
    p.add_argument(
        "--eval-split", default="test", help="Split scored after the last epoch (val to make choices)."
    )
    p.add_argument("--jobs", type=int, default=2, help="Trainings run side by side (one torch thread each).")
    p.add_argument(
        "--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help="Config override."
    )
    add_candidate_option(p)
    p.add_argument("--tag", default="", help="Suffix of the result files' names.")
    p.add_argument("--render-only", action="store_true", help="Collect finished runs; train nothing.")
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TQDM_DISABLE", "1")  # no progress bars from the worker processes
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from masra.datasets.card import load_card, parse_overrides
    from masra.datasets.readers import load_queries
    from masra.datasets.store_build import build_feature_store
    from masra.grounding import load_train_config

    marker = args.world_dir / "fixture.json"
    if '"complete"' not in (marker.read_text() if marker.is_file() else ""):
        raise SystemExit(f"no finished open world at {args.world_dir}; run `make openworld` first")
    settings = [s for s in args.settings.split(",") if s]
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise SystemExit(f"unknown --settings {unknown}; known: {', '.join(SETTINGS)}")
    known = dict(SETTINGS)
    cand, settings = with_candidate(settings, known, args.candidate)
    fractions = [float(f) for f in args.fractions.split(",")]
    root = str(args.world_dir.resolve())
    base = load_train_config("openworld", args.config, {"card.root": root, **parse_overrides(args.sets)})
    steps = args.steps
    card = load_card("openworld", {"root": root})
    n_train = len(load_queries(card, base.train_split)[0])
    work = args.work / f"eval-{args.eval_split}"
    store = work / "store"
    build_feature_store(card, [base.train_split, args.eval_split], store)
    seeds = [base.seed + k for k in range(args.seeds)]

    jobs: list[tuple[dict[str, Any], Path]] = []
    for seed in seeds:  # seed-major: an interrupted study still has whole seeds
        for f in fractions:
            epochs = -(-steps // steps_per_epoch(n_train, f, base.batch_size))
            for s in settings:
                over = {
                    "card.root": root,
                    "seed": seed,
                    "label_fraction": f,
                    "epochs": epochs,
                    "eval_every": epochs,
                    "eval_split": args.eval_split,
                    "warmup_epochs": round(WARMUP_SHARE * epochs, 3),
                    **parse_overrides(args.sets),
                    **known[s],
                }
                cfg = load_train_config("openworld", args.config, over)
                run = work / "runs" / run_name(s, f, seed)
                if not finished_same(run, cfg.to_dict()):
                    jobs.append((cfg.to_dict(), run))
    t0 = time.perf_counter()
    commit = _commit()  # the code the runs train with, read before they start
    if jobs and not args.render_only:
        log.info(
            "%d runs to train (%d kept), %d at a time",
            len(jobs),
            len(seeds) * len(fractions) * len(settings) - len(jobs),
            args.jobs,
        )
        with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(_train, cfg, str(run), str(store)) for cfg, run in jobs]
            for k, fut in enumerate(as_completed(futures), 1):
                run, secs = fut.result()
                log.info(
                    "[%d/%d] %s in %.0f s: %s", k, len(jobs), Path(run).name, secs, last_metrics(Path(run))
                )
    values, seconds = collect(work, settings, fractions, seeds)
    head, now = study_stamp(args.jobs, commit)
    world = json.loads(marker.read_text())
    results: dict[str, Any] = {
        **head,
        "world": f"open world seed {world.get('seed', world.get('config', {}).get('seed'))} at {args.world_dir}",
        "metric": "MR-full-R1@0.5",
        "eval_on": f"{args.eval_split} split (scored once after the last epoch)",
        "eval_split": args.eval_split,
        "steps": steps,
        "config": str(args.config),
        "overrides": args.sets,
        "fractions": fractions,
        "seeds": seeds,
        "results": values["R1@0.5"],
        "also": {"R1@0.7": values["R1@0.7"], "mAP": values["mAP"]},
        "paired": {
            f"{a} - {b}": {
                f"{f:g}": paired(values["R1@0.5"][a][f"{f:g}"], values["R1@0.5"][b][f"{f:g}"])
                for f in fractions
            }
            for a, b in (*PAIRS, *([(cand, "masra+true")] if cand else []))
            if a in settings and b in settings
        },
        "run_seconds": seconds,
        "wall_seconds": round(time.perf_counter() - t0, 1),
    }
    if cand is not None:
        record_guard(results, values, cand, args.candidate, fractions, log)
    save_study(results, REPO / "bench" / "results", now, f"label-efficiency{args.tag}", plot, render)


def save_study(
    results: dict[str, Any],
    folder: Path,
    now: dt.datetime,
    name: str,
    draw: Callable[[dict[str, Any], Path], None],
    table: Callable[[dict[str, Any]], str],
) -> Path:
    """Write ``{folder}/<host>-<date>-<name>.json`` and its plot (``draw``), print ``table``; returns
    the JSON's path. One shape of results file for the accuracy studies."""
    stem = folder / f"{socket.gethostname()}-{now.strftime('%Y%m%d-%H%M%S')}-{name}"
    stem.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    draw(results, stem.with_suffix(".png"))
    print(table(results))
    print(f"\nwrote {stem.with_suffix('.json')} and {stem.with_suffix('.png')}")
    return stem.with_suffix(".json")


if __name__ == "__main__":
    main()
