"""`make bench-pseudo`: prior events as training queries on the open world's style-gap variant.

Four settings, trained through the real entry point (:func:`masra.grounding.train.recipe.run_training`)
with ``masra/configs/openworld.yaml``; everything prior-related reads one prior run, ``--priors-run``
(``styled`` by default: the reference priors rewritten in caption style, :mod:`masra.fixture.open_styled`,
so that pseudo-queries do not read like the human test queries):

* ``baseline``: every MASRA part off, no priors read;
* ``baseline+pseudo``: the baseline trained also on the prior run's events as queries
  (``pseudo_queries``), which it reads as texts only;
* ``masra+true``: MASRA with the prior run's priors;
* ``masra+true+pseudo``: MASRA with them, and their events as queries.

At label fractions 0, 10, 25 and 100 % (``label_fraction``; 0: pseudo-queries alone), 3 seeds, at two
lengths, each scored on the test split that no choice sees:

* ``steps``: the label-efficiency study's budget (``--steps``, 500 optimiser steps; one evaluation after
  the last epoch, no checkpoint selection; :func:`bench.common.fixed_steps_overrides`);
* ``converged``: the converged study's (:mod:`bench.converged`): a fifth of train's videos held out,
  early stopping on their R1@0.5, the best held-out checkpoint scored once on test
  (:func:`bench.common.converged_overrides`). At 0 % labels the held-out queries are still human
  labels: they choose the checkpoint (as they do at every fraction), they never train.

Step budgets: with labels an epoch is a pass over the labelled queries (pseudo-queries join each step,
``--pseudo-weight`` of ``batch_size`` of them); at 0 % a pass over the kept pseudo-queries in batches
of ``round(--pseudo-weight-zero * batch_size)``, counted with the trainer's own filter
(:func:`masra.grounding.select_pseudo_queries`) and step rule
(:func:`masra.grounding.steps_per_epoch`). Either way a run takes ``ceil(budget /
steps_per_epoch)`` epochs. Settings without pseudo-queries cannot train without labels: at 0 % they are
absent (``null`` in the results), never zero.

Reported per length: R1@0.5 (R1@0.7, mAP too) per setting and fraction, one value per seed in seed
order, with the seeds; differences paired by seed (mean ± standard error, seeds won) of
``masra+true+pseudo - masra+true``, ``baseline+pseudo - masra+true+pseudo`` (at every fraction),
``baseline+pseudo - baseline`` and ``masra+true - baseline``; the ratio of the best setting at 0 % to
``masra+true`` at 100 % on R1@0.5 (the target: 0.7); and whether ``masra+true+pseudo`` beats
``masra+true`` at 10 % by 2 standard errors and 1 point.

A run whose folder holds a finished run of the identical configuration is kept, so an interrupted study
resumes; ``--jobs`` runs train side by side. Writes ``bench/results/<host>-<date>-pseudo-<world>.json``
(and ``.png``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from bench.common import converged_overrides, fixed_steps_overrides, study_stamp
from bench.converged import _cell, _train_and_score
from bench.converged import build_parser as converged_parser
from bench.label_efficiency import STEPS, _commit, _train, last_metrics, paired, run_name, save_study
from bench.priors import finished_same, write_holdout

log = logging.getLogger("bench.pseudo_study")

REPO = Path(__file__).resolve().parents[1]
SETTINGS: dict[str, dict[str, Any]] = {
    "baseline": {"masra": False},
    "baseline+pseudo": {"masra": False},
    "masra+true": {},
    "masra+true+pseudo": {},
}
PSEUDO = frozenset({"baseline+pseudo", "masra+true+pseudo"})  # the settings that train on prior events
FRACTIONS = (0.0, 0.1, 0.25, 1.0)
LENGTHS = ("steps", "converged")
METRICS = {"R1@0.5": "MR-full-R1@0.5", "R1@0.7": "MR-full-R1@0.7", "mAP": "MR-full-mAP"}
PAIRS = (
    ("masra+true+pseudo", "masra+true"),
    ("baseline+pseudo", "masra+true+pseudo"),
    ("baseline+pseudo", "baseline"),
    ("masra+true", "baseline"),
)
TARGET_RATIO = 0.7  # best at 0 % labels / masra+true at 100 %: the target
GAIN_FRACTION, GAIN_POINTS, GAIN_SE = 0.1, 1.0, 2.0  # masra+true+pseudo - masra+true at 10 %


def trainable(setting: str, fraction: float) -> bool:
    """Whether ``setting`` can train at ``fraction``: without labels only on pseudo-queries."""
    return fraction > 0 or setting in PSEUDO


def setting_overrides(
    setting: str, fraction: float, *, priors_run: str, weight: float, weight_zero: float
) -> dict[str, Any]:
    """TrainConfig overrides of ``setting`` at ``fraction``: its switches, the prior run, and the
    pseudo-query weight (``weight_zero`` without labels, ``weight`` with them)."""
    over: dict[str, Any] = {"priors_run": priors_run, "label_fraction": fraction, **SETTINGS[setting]}
    if setting in PSEUDO:
        over["pseudo_queries.weight"] = weight_zero if fraction == 0 else weight
    return over


def kept_pseudo_queries(card: Any, split: str, priors_run: str, rules: Any) -> int:
    """How many pseudo-queries the trainer keeps from the events of ``priors_run`` on the videos of
    ``split`` under ``rules`` (a :class:`~masra.grounding.config.PseudoQueryConfig`)."""
    from masra.datasets.readers import load_queries
    from masra.grounding import read_prior_events, select_pseudo_queries
    from masra.priors.run import PriorRun

    videos = dict.fromkeys(q.vid for q in load_queries(card, split)[0])
    events = read_prior_events(PriorRun(card.prior_dir, priors_run).dir)
    return len(select_pseudo_queries([events[v] for v in videos if v in events], rules))


def epoch_steps(
    fraction: float, *, num_queries: int, num_pseudo: int, batch_size: int, weight_zero: float
) -> int:
    """Optimiser steps of one epoch at ``fraction``: a pass over ``max(1, round(fraction * n))``
    labelled queries, or, at 0, over the ``num_pseudo`` kept pseudo-queries (the trainer's rule)."""
    from masra.grounding import steps_per_epoch

    labelled = max(1, round(fraction * num_queries)) if fraction > 0 else 0
    return steps_per_epoch(labelled, num_pseudo, batch_size, weight=weight_zero)


@dataclass
class Length:
    """One of the two lengths: its folder (runs, store), overrides and step budget.

    Attributes:
        name: ``steps`` or ``converged``; work: its folder (``runs/``, ``store/``, ``splits/``).
        overrides: the card and split overrides of every run of this length.
        num_queries: the train split's queries; num_pseudo: its kept pseudo-queries.
        budget: steps per epoch -> the epoch overrides (:mod:`bench.common`).
        describe: how runs of this length are scored, for the results file.
        steps_per_epoch: per fraction, filled in when the runs are planned.
    """

    name: str
    work: Path
    overrides: dict[str, Any]
    num_queries: int
    num_pseudo: int
    budget: Callable[[int], dict[str, Any]]
    describe: str
    steps_per_epoch: dict[str, int] = field(default_factory=dict)


def read_run(length: str, run: Path) -> dict[str, Any] | None:
    """A finished run's test metrics (``brief``) and steps, or None."""
    if length == "steps":
        if not (run / "summary.json").is_file():
            return None
        summary = json.loads((run / "summary.json").read_text())
        return {
            "brief": last_metrics(run),
            "steps": summary.get("steps"),
            "seconds": summary["train_seconds"],
        }
    path = run / "report.json"
    if not path.is_file():
        return None
    rep = json.loads(path.read_text())
    seconds = json.loads((run / "summary.json").read_text()).get("train_seconds")
    return {"brief": rep["brief"], "steps": rep["steps"], "best_step": rep["best_step"], "seconds": seconds}


def collect(
    length: str, work: Path, settings: list[str], fractions: list[float], seeds: list[int]
) -> dict[str, Any]:
    """Per metric (and ``steps`` trained): setting -> fraction -> one value per finished seed, in seed
    order, ``null`` where the setting cannot train; the seeds of those values (``seeds``); run seconds."""
    keys = (*METRICS, "steps")
    values: dict[str, dict[str, dict[str, list[float] | None]]] = {m: {s: {} for s in settings} for m in keys}
    done: dict[str, dict[str, list[int] | None]] = {s: {} for s in settings}
    seconds: dict[str, float] = {}
    for s in settings:
        for f in fractions:
            key = f"{f:g}"
            if not trainable(s, f):
                done[s][key] = None
                for m in keys:
                    values[m][s][key] = None
                continue
            found: list[int] = []
            per: dict[str, list[float]] = {m: [] for m in keys}
            for seed in seeds:
                name = run_name(s, f, seed)
                got = read_run(length, work / "runs" / name)
                if got is None or METRICS["R1@0.5"] not in got["brief"]:
                    continue
                found.append(seed)
                for m, k in METRICS.items():
                    per[m].append(float(got["brief"].get(k, math.nan)))
                per["steps"].append(float(got["steps"] or 0))
                if got.get("seconds") is not None:
                    seconds[name] = float(got["seconds"])
            done[s][key] = found
            for m in keys:
                values[m][s][key] = per[m]
    return {"values": values, "seeds": done, "seconds": seconds}


def pair_by_seed(
    a: list[float] | None, a_seeds: list[int] | None, b: list[float] | None, b_seeds: list[int] | None
) -> dict[str, Any] | None:
    """:func:`bench.label_efficiency.paired` of ``a - b`` over the seeds both have; None where either
    setting is absent (cannot train)."""
    if a is None or b is None or a_seeds is None or b_seeds is None:
        return None
    av, bv = dict(zip(a_seeds, a, strict=True)), dict(zip(b_seeds, b, strict=True))
    common = [s for s in a_seeds if s in bv]
    out = paired([av[s] for s in common], [bv[s] for s in common])
    return {**out, "seeds": common}


def zero_label_ratio(
    r1: dict[str, dict[str, list[float] | None]], seeds: dict[str, dict[str, list[int] | None]]
) -> dict[str, Any] | None:
    """The best setting at 0 % labels (highest mean R1@0.5; a tie goes to the first in ``r1``'s order)
    against ``masra+true`` at 100 %: the ratio of the means, and per seed (the seeds both have). None
    without both fractions' runs."""
    at0 = {s: v["0"] for s, v in r1.items() if v.get("0")}
    full = (r1.get("masra+true") or {}).get("1")
    if not at0 or not full:
        return None
    best = max(at0, key=lambda s: statistics.fmean(at0[s] or []))
    num, den = statistics.fmean(at0[best] or []), statistics.fmean(full)
    b_seeds, f_seeds = seeds[best]["0"] or [], seeds["masra+true"]["1"] or []
    fv = dict(zip(f_seeds, full, strict=True))
    per_seed = {
        str(s): round(v / fv[s], 3) for s, v in zip(b_seeds, at0[best] or [], strict=True) if fv.get(s)
    }
    ratio = num / den if den else math.nan
    return {
        "best_at_0": best,
        "best_at_0_mean": round(num, 3),
        "masra+true_at_100_mean": round(den, 3),
        "ratio": round(ratio, 3),
        "per_seed": per_seed,
        "target": TARGET_RATIO,
        "meets": bool(ratio >= TARGET_RATIO),
    }


def summarize_length(
    length: Length, collected: dict[str, Any], settings: list[str], fractions: list[float]
) -> dict[str, Any]:
    """One length's block of the results file (see the module doc)."""
    vals, seeds = collected["values"], collected["seeds"]
    r1 = vals["R1@0.5"]
    pairs = {
        m: {
            f"{a} - {b}": {
                f"{f:g}": pair_by_seed(vals[m][a][f"{f:g}"], seeds[a][f"{f:g}"], vals[m][b][f"{f:g}"], seeds[b][f"{f:g}"])
                for f in fractions
            }
            for a, b in PAIRS
            if a in settings and b in settings
        }
        for m in METRICS
    }  # fmt: skip
    gain = (pairs["R1@0.5"].get("masra+true+pseudo - masra+true") or {}).get(f"{GAIN_FRACTION:g}")
    return {
        "report_on": length.describe,
        "steps_per_epoch": length.steps_per_epoch,
        "labelled_queries": length.num_queries,
        "kept_pseudo_queries": length.num_pseudo,
        "results": r1,
        "seeds_done": seeds,
        "also": {m: vals[m] for m in METRICS if m != "R1@0.5"},
        "steps_trained": vals["steps"],
        "paired": pairs["R1@0.5"],
        "paired_also": {m: pairs[m] for m in METRICS if m != "R1@0.5"},
        "zero_label_ratio": zero_label_ratio(r1, seeds) if "masra+true" in settings else None,
        "pseudo_gain_at_10": None
        if not gain or not gain["n"]
        else {
            **gain,
            "needs": f">= {GAIN_POINTS:g} point and >= {GAIN_SE:g} standard errors",
            "meets": bool(gain["mean"] >= GAIN_POINTS and gain["n"] > 1 and gain["mean"] >= GAIN_SE * gain["se"]),
        },
    }  # fmt: skip


def _value_cell(values: list[float] | None, seeds: int) -> str:
    return "absent" if values is None else _cell(values, seeds)


def render(results: dict[str, Any]) -> str:
    """Markdown: per length, R1@0.5 per setting and fraction, the paired differences and the ratio."""
    fr = [f"{f:g}" for f in results["fractions"]]
    n_seeds = len(results["seeds"])
    lines = [
        f"Pseudo-query study on `{results['world']}`, prior run `{results['priors_run']}`; {n_seeds} seeds; "
        f"{results['machine']}, {results['date']}. `absent`: cannot train without labels.",
        "",
    ]
    for name, block in results["lengths"].items():
        lines += [f"**{name}**: {block['report_on']}", ""]
        lines += ["| R1@0.5 | " + " | ".join(f"{float(f) * 100:g} % labels" for f in fr) + " |"]
        lines.append("|---|" + "---|" * len(fr))
        for s, per in block["results"].items():
            lines.append(f"| {s} | " + " | ".join(_value_cell(per.get(f), n_seeds) for f in fr) + " |")
        lines += ["", "| paired by seed | " + " | ".join(f"{float(f) * 100:g} %" for f in fr) + " |"]
        lines.append("|---|" + "---|" * len(fr))
        for pair, per in block["paired"].items():
            cells = [
                "absent"
                if per[f] is None
                else (f"{per[f]['mean']:+.2f} ± {per[f]['se']:.2f} ({per[f]['wins']}/{per[f]['n']})" if per[f]["n"] else "-")
                for f in fr
            ]  # fmt: skip
            lines.append(f"| {pair} | " + " | ".join(cells) + " |")
        ratio = block["zero_label_ratio"]
        if ratio is not None:
            lines += [
                "",
                f"Best at 0 % ({ratio['best_at_0']}, {ratio['best_at_0_mean']:.2f}) / masra+true at 100 % "
                f"({ratio['masra+true_at_100_mean']:.2f}) = {ratio['ratio']:.3f} (target {ratio['target']:g}: "
                f"{'met' if ratio['meets'] else 'not met'}); per seed {ratio['per_seed']}",
            ]
        gain = block["pseudo_gain_at_10"]
        if gain is not None:
            lines.append(
                f"masra+true+pseudo - masra+true at {GAIN_FRACTION * 100:g} %: {gain['mean']:+.2f} ± {gain['se']:.2f} "
                f"({gain['needs']}: {'met' if gain['meets'] else 'not met'})"
            )
        lines.append("")
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    """R1@0.5 against label fraction per length, one line per setting (seed mean, ± std bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fractions = results["fractions"]
    blocks = results["lengths"]
    fig, axes = plt.subplots(1, len(blocks), figsize=(5.6 * len(blocks), 4.2), dpi=110, squeeze=False)
    for ax, (name, block) in zip(axes[0], blocks.items(), strict=True):
        for s, per in block["results"].items():
            xs = [i for i, f in enumerate(fractions) if per.get(f"{f:g}")]
            vals = [per[f"{fractions[i]:g}"] for i in xs]
            mean = [statistics.fmean(v) for v in vals]
            std = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in vals]
            ax.errorbar(xs, mean, yerr=std, marker="o", capsize=3, label=s)
        ax.set_xticks(range(len(fractions)), [f"{f * 100:g} %" for f in fractions])
        ax.set_xlabel("share of training queries labelled")
        ax.set_ylabel(f"R1@0.5 on {results['eval_split']}")
        ax.set_title(f"{name} (priors: {results['priors_run']})", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.pseudo_study", description=__doc__.split("\n")[0])
    p.add_argument(
        "--world-dir", type=Path, default=REPO / "data/generated/openworld", help="Built open world."
    )
    p.add_argument("--card", default=None, help="Another dataset card (name or path) instead of the world's.")
    p.add_argument(
        "--config", type=Path, default=REPO / "masra/configs/openworld.yaml", help="Training config."
    )
    p.add_argument("--priors-run", default="styled", help="Prior run of the priors and the pseudo-queries.")
    p.add_argument("--work", type=Path, default=None, help="Runs folder (default runs/pseudo-<world>).")
    p.add_argument("--fractions", default=",".join(f"{f:g}" for f in FRACTIONS), help="Label fractions.")
    p.add_argument("--seeds", type=int, default=3, help="Seeds per setting and fraction (seed, seed+1, ...).")
    p.add_argument("--settings", default=",".join(SETTINGS), help=f"Comma list of {', '.join(SETTINGS)}.")
    p.add_argument("--lengths", default=",".join(LENGTHS), help="steps (fixed budget), converged, or both.")
    p.add_argument("--eval-split", default="test", help="Split scored (once per run).")
    p.add_argument("--steps", type=int, default=STEPS, help="Optimiser steps of a fixed-budget run.")
    p.add_argument(
        "--pseudo-weight",
        type=float,
        default=0.5,
        help="pseudo_queries.weight with labels: pseudo-queries per step as a share of batch_size, on top "
        "of the labelled ones (0.5: a third of each step's queries).",
    )
    p.add_argument(
        "--pseudo-weight-zero",
        type=float,
        default=1.0,
        help="pseudo_queries.weight at 0 %% labels: the step size as a share of batch_size (1: batches of "
        "batch_size pseudo-queries, like the labelled runs').",
    )
    conv = converged_parser()  # the converged study's defaults
    for opt, kind, what in (
        ("max_steps", int, "step cap of every run"),
        ("eval_steps", int, "steps between held-out evaluations"),
        ("patience", int, "held-out evaluations without a new best"),
        ("min_steps", int, "no early stop before this many steps"),
        ("holdout", float, "share of the train videos held out"),
    ):
        default = conv.get_default(opt)
        p.add_argument(
            f"--{opt.replace('_', '-')}", type=kind, default=default, help=f"Converged: {what} ({default})."
        )
    p.add_argument("--jobs", type=int, default=2, help="Trainings side by side (one torch thread each).")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help="Override.")
    p.add_argument("--tag", default="", help="Suffix of the result files' names.")
    p.add_argument("--render-only", action="store_true", help="Collect finished runs; train nothing.")
    return p


def _lengths(args: argparse.Namespace, card_name: str, root: dict[str, Any], work: Path) -> list[Length]:
    """The lengths asked for, with their stores built and their step budgets known."""
    from masra.datasets.card import load_card, parse_overrides
    from masra.datasets.readers import load_queries
    from masra.datasets.store_build import build_feature_store
    from masra.grounding import load_train_config

    sets = parse_overrides(args.sets)
    card_over = {f"card.{k}": v for k, v in root.items()}
    pseudo_rules = load_train_config(
        card_name, args.config, {**card_over, **sets, "pseudo_queries.weight": args.pseudo_weight_zero}
    ).pseudo_queries
    out = []
    for name in [x for x in args.lengths.split(",") if x]:
        if name == "steps":
            over = {**card_over, "eval_split": args.eval_split}
            base = load_train_config(card_name, args.config, {**over, **sets})
            card = load_card(card_name, base.card)
            build_feature_store(card, [base.train_split, args.eval_split], work / name / "store")
            budget: Callable[[int], dict[str, Any]] = partial(fixed_steps_overrides, steps=args.steps)
            describe = f"{args.steps} steps per run, scored once on {args.eval_split} after the last epoch"
        elif name == "converged":
            card = load_card(card_name, root)
            fit, held = write_holdout(card.annotation_path("train"), work / name / "splits", args.holdout)
            over = {
                **card_over,
                "card.annotations.fit": str(fit),
                "card.annotations.heldout": str(held),
                "train_split": "fit",
                "eval_split": "heldout",
                "best_metric": "MR-full-R1@0.5",
                "early_stop_patience": args.patience,
            }
            base = load_train_config(card_name, args.config, {**over, **sets})
            card = load_card(card_name, base.card)
            build_feature_store(card, ["fit", "heldout", args.eval_split], work / name / "store")
            budget = partial(
                converged_overrides,
                max_steps=args.max_steps,
                eval_steps=args.eval_steps,
                min_steps=args.min_steps,
            )
            describe = (
                f"best held-out checkpoint (R1@0.5 on {args.holdout:g} of train's videos, every "
                f"{args.eval_steps} steps, patience {args.patience} after {args.min_steps} steps, at most "
                f"{args.max_steps} steps) scored once on {args.eval_split}"
            )
        else:  # pragma: no cover - main checks the names
            raise ValueError(f"unknown length {name!r}")
        out.append(
            Length(
                name=name,
                work=work / name,
                overrides=over,
                num_queries=len(load_queries(card, base.train_split)[0]),
                num_pseudo=kept_pseudo_queries(card, base.train_split, args.priors_run, pseudo_rules),
                budget=budget,
                describe=describe,
            )
        )
    return out


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TQDM_DISABLE", "1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from masra.datasets.card import load_card, parse_overrides
    from masra.grounding import load_train_config
    from masra.priors.run import PriorRun

    world_dir = args.world_dir.resolve()
    if args.card is None:
        marker = world_dir / "fixture.json"
        if '"complete"' not in (marker.read_text() if marker.is_file() else ""):
            raise SystemExit(f"no finished open world at {world_dir}; run `make openworld` first")
    card_name = args.card or "openworld"
    root = {} if args.card is not None else {"root": str(world_dir)}
    card = load_card(card_name, root)
    if not PriorRun(card.prior_dir, args.priors_run).shards():
        raise SystemExit(
            f"no prior run {args.priors_run!r} under {card.prior_dir}; build it with `make openworld-styled`"
        )
    settings = [s for s in args.settings.split(",") if s]
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise SystemExit(f"unknown --settings {unknown}; known: {', '.join(SETTINGS)}")
    fractions = [float(f) for f in args.fractions.split(",")]
    wrong = sorted({x for x in args.lengths.split(",") if x} - set(LENGTHS))
    if wrong:
        raise SystemExit(f"unknown --lengths {wrong}; known: {', '.join(LENGTHS)}")
    world_name = world_dir.name if args.card is None else card.name
    work = (args.work or REPO / "runs" / f"pseudo-{world_name}").resolve()
    lengths = _lengths(args, card_name, root, work)
    sets = parse_overrides(args.sets)
    base = load_train_config(card_name, args.config, {**{f"card.{k}": v for k, v in root.items()}, **sets})
    seeds = [base.seed + k for k in range(args.seeds)]

    jobs: list[tuple[Length, dict[str, Any], Path]] = []
    total = 0
    for length in lengths:  # the fixed budget first (the quicker answer), then converged
        for seed in seeds:  # seed-major: an interrupted study still has whole seeds
            for f in fractions:
                spe = epoch_steps(
                    f, num_queries=length.num_queries, num_pseudo=length.num_pseudo,
                    batch_size=base.batch_size, weight_zero=args.pseudo_weight_zero,
                )  # fmt: skip
                length.steps_per_epoch[f"{f:g}"] = spe
                for s in settings:
                    if not trainable(s, f):
                        continue
                    total += 1
                    over = {
                        **length.overrides,
                        "seed": seed,
                        **length.budget(spe),
                        **sets,
                        **setting_overrides(
                            s, f, priors_run=args.priors_run, weight=args.pseudo_weight,
                            weight_zero=args.pseudo_weight_zero,
                        ),
                    }  # fmt: skip
                    cfg = load_train_config(card_name, args.config, over)
                    run = length.work / "runs" / run_name(s, f, seed)
                    done = finished_same(run, cfg.to_dict())
                    if length.name == "converged":
                        done = done and (run / "report.json").is_file()
                    if not done:
                        jobs.append((length, cfg.to_dict(), run))
    t0 = time.perf_counter()
    commit = _commit()
    if jobs and not args.render_only:
        log.info("%d runs to train (%d kept), %d at a time", len(jobs), total - len(jobs), args.jobs)
        with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
            futures = {
                pool.submit(_train, cfg, str(run), str(length.work / "store"))
                if length.name == "steps"
                else pool.submit(_train_and_score, cfg, str(run), str(length.work / "store"), args.eval_split): length
                for length, cfg, run in jobs
            }  # fmt: skip
            for k, fut in enumerate(as_completed(futures), 1):
                folder, secs = fut.result()
                got = read_run(futures[fut].name, Path(folder)) or {}
                log.info(
                    "[%d/%d] %s/%s in %.0f s: R1@0.5 %s, %s steps", k, len(jobs), futures[fut].name,
                    Path(folder).name, secs, got.get("brief", {}).get(METRICS["R1@0.5"]), got.get("steps"),
                )  # fmt: skip
    blocks, seconds = {}, {}
    for length in lengths:
        collected = collect(length.name, length.work, settings, fractions, seeds)
        blocks[length.name] = summarize_length(length, collected, settings, fractions)
        seconds.update({f"{length.name}/{k}": v for k, v in collected["seconds"].items()})
    head, now = study_stamp(args.jobs, commit)
    stamp = world_dir / "priors_import" / f"{args.priors_run}.json"
    results: dict[str, Any] = {
        **head,
        "world": f"{world_name} at {world_dir}" if args.card is None else str(args.card),
        "priors_run": args.priors_run,
        "priors_run_build": json.loads(stamp.read_text()) if args.card is None and stamp.is_file() else None,
        "metric": "MR-full-R1@0.5",
        "eval_split": args.eval_split,
        "config": str(args.config),
        "overrides": args.sets,
        "settings": settings,
        "fractions": fractions,
        "seeds": seeds,
        "pseudo_queries": {
            "weight": args.pseudo_weight,
            "weight_at_0": args.pseudo_weight_zero,
            "per_step_at_0": max(1, round(args.pseudo_weight_zero * base.batch_size)),
            "rules": {k: v for k, v in base.pseudo_queries.to_dict().items() if k != "weight"},
        },
        "absent": "settings without pseudo-queries cannot train without labels: null at 0 %, not zero",
        "lengths": blocks,
        "run_seconds": seconds,
        "wall_seconds": round(time.perf_counter() - t0, 1),
    }
    save_study(results, REPO / "bench" / "results", now, f"pseudo-{world_name}{args.tag}", plot, render)


if __name__ == "__main__":
    main()
