"""`make bench-converged`: the label-efficiency settings trained to convergence, and each MASRA part's share.

The label-efficiency study (:mod:`bench.label_efficiency`) trains every run 500 steps. Real recipes
train for tens of thousands, so this study trains each run until its held-out metric stops
improving:

* a share ``--holdout`` (20 %) of the training *videos* is held out (:func:`bench.priors.write_holdout`);
  runs train on the rest (``fit``) and are evaluated on it every ``--eval-steps`` steps;
* a run stops once ``--patience`` evaluations in a row bring no new best held-out
  ``--best-metric`` (the config's ``best_metric`` unless set: ``MR-full-mAP`` for the open world,
  ``MR-full-R1@0.5`` for the fixture; :attr:`TrainConfig.early_stop_patience`), or after
  ``--max-steps``;
* the best held-out checkpoint is then scored once on the report split (the open world's ``test``;
  the fixture has none, so its ``val``). The report split never chooses anything.

Settings are those of the label-efficiency study (``baseline``, ``masra+true``: masra's defaults with
true priors, ``masra+shuffled`` where the world has shuffled priors, ``masra+ignored``),
``masra+true+constant`` (true priors used whole: ESTA's edge share 0 instead of ``auto``) and
``masra+true-<part>`` (the defaults with one MASRA part off) for the paired contribution of each part.
``--candidate KEY=VALUE ...`` is the accuracy guard at convergence: it adds ``masra+true`` and the
defaults with those overrides, and reports ``candidate - masra+true`` paired by seed
(:func:`bench.label_efficiency.guard`: it holds where no mean falls below minus one standard error). The 500-step numbers of the same
settings come from the newest label-efficiency results file of the same world when there is one.

A run whose folder holds a finished run of the identical configuration is kept, so an interrupted
study resumes. Writes ``bench/results/<host>-<date>-converged-<world>.json`` (and ``.png``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from bench.common import study_stamp
from bench.label_efficiency import SETTINGS as LE_SETTINGS
from bench.label_efficiency import _commit, paired, record_guard, save_study, steps_per_epoch, with_candidate
from bench.options import add_candidate_option
from bench.priors import finished_same, write_holdout

log = logging.getLogger("bench.converged")

REPO = Path(__file__).resolve().parents[1]
PARTS = ("esta", "lrca", "sge", "sora", "dai")
WHOLE_SPANS: dict[str, Any] = {"priors_run": "reference", "loss.esta_edge_share": 0.0}
SETTINGS: dict[str, dict[str, Any]] = {
    **{k: v for k, v in LE_SETTINGS.items() if k != "masra+noisy"},
    **{f"masra+true-{p}": {**LE_SETTINGS["masra+true"], f"model.use_{p}": False} for p in PARTS},
    # True priors used whole (ESTA's edge share 0, the default until it became ``auto``).
    "masra+true+constant": WHOLE_SPANS,
    # The candidates below were measured with whole spans (docs/method.md) and keep them.
    # Candidate against the full-label boundary cost: prior-loss weights decayed to 0 over 300 steps.
    "masra+true+decay": {**WHOLE_SPANS, "loss.prior_decay_steps": 300},
    # Candidate: SGE's query-semantic relevance off (its saliency bonus is flat over the priors' spans).
    "masra+true-relevance": {**WHOLE_SPANS, "model.semantic_relevance": False},
    # Candidate: the 300-step decay only for videos with a labelled query; the others keep their priors.
    "masra+true+scoped": {
        **WHOLE_SPANS,
        "loss.prior_decay_steps": 300,
        "loss.prior_decay_scope": "labelled",
    },
    # Candidate: ESTA's clip term (and SGE's supervision) leave the outer 15 % of each prior span out,
    # the open world's jitter of event edges (docs/fixture.md), so labels alone place the edges.
    "masra+true+edge": {"priors_run": "reference", "loss.esta_edge_share": 0.15},
}
# World -> (card, training config, report split, prior runs besides ``reference``).
WORLDS: dict[str, tuple[str, Path, str]] = {
    "openworld": ("openworld", REPO / "masra/configs/openworld.yaml", "test"),
    "fixture": ("fixture", REPO / "masra/configs/fixture.yaml", "val"),
}
FRACTIONS = (0.1, 1.0)
METRICS = {
    "R1@0.5": "MR-full-R1@0.5",
    "R1@0.7": "MR-full-R1@0.7",
    "mAP": "MR-full-mAP",
    "HL-mAP": "HL-min-VeryGood-mAP",
    "HL-Hit1": "HL-min-VeryGood-Hit1",
}
DECODER_METRICS = ("R1@0.5", "R1@0.7", "mAP")  # also scored with the decoder's windows alone
PAIRS = (
    ("masra+true", "masra+shuffled"),
    ("masra+true", "masra+ignored"),
    ("masra+true", "baseline"),
    ("masra+ignored", "baseline"),
    ("masra+true+decay", "masra+true"),
    ("masra+true+decay", "masra+ignored"),
    *((("masra+true", f"masra+true-{p}")) for p in PARTS),
    ("masra+true", "masra+true-relevance"),
    ("masra+true-relevance", "masra+ignored"),
    ("masra+true+scoped", "masra+true"),
    ("masra+true+scoped", "masra+ignored"),
    ("masra+true+scoped", "masra+shuffled"),
    ("masra+true+edge", "masra+true"),
    ("masra+true+edge", "masra+ignored"),
    ("masra+true+edge", "masra+shuffled"),
    ("masra+true", "masra+true+constant"),
    ("masra+true+constant", "masra+ignored"),
    ("masra+true+constant", "baseline"),
    ("masra+true+edge", "masra+true+constant"),
)


def work_name(world: str, best_metric: str) -> str:
    """The default work folder of a world's study: ``converged-<world>``, with the selection metric
    appended when it is not R1@0.5 (``converged-openworld-map``), so studies that select differently
    never share runs."""
    if best_metric == "MR-full-R1@0.5":
        return f"converged-{world}"
    slug = best_metric.removeprefix("MR-full-").lower().replace("@", "-")
    return f"converged-{world}-{slug}"


def run_name(setting: str, fraction: float, seed: int) -> str:
    return f"{setting.replace('+', '_')}-f{fraction:g}-seed{seed}"


def _train_and_score(cfg_dict: dict[str, Any], run: str, store: str, report_split: str) -> tuple[str, float]:
    """Train one run (early stopping on the held-out split), then score its best checkpoint once."""
    import torch

    from masra.datasets.card import load_card
    from masra.datasets.store import FeatureStore
    from masra.grounding import Grounder, TrainConfig, evaluate_checkpoint, run_training

    torch.set_num_threads(1)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("masra").setLevel(logging.WARNING)
    t0 = time.perf_counter()
    cfg = TrainConfig.from_dict(cfg_dict)
    out = Path(run)
    (out / "report.json").unlink(missing_ok=True)
    run_training(cfg, out, store_dir=store, overwrite=True)  # unfinished: redo
    feature_store = FeatureStore.open(Path(store))
    card = load_card(cfg.dataset, cfg.card)
    grounder = Grounder.from_pretrained(out / "best", card=card)
    result = evaluate_checkpoint(grounder, card, report_split, out / "report", store=feature_store)
    # The same checkpoint with the decoder's windows alone (no saliency proposals): where the
    # boundaries come from, for the diagnosis of what priors cost (docs/method.md).
    decoder_only = Grounder.from_pretrained(out / "best", card=card, postprocess={"proposals": False})
    plain = evaluate_checkpoint(decoder_only, card, report_split, out / "report-decoder", store=feature_store)
    summary = json.loads((out / "summary.json").read_text())
    (out / "report.json").write_text(
        json.dumps(
            {
                "split": report_split,
                "brief": (result.metrics or {}).get("brief", {}),
                "brief_decoder_only": (plain.metrics or {}).get("brief", {}),
                "best_step": summary.get("best_step"),
                "steps": summary.get("steps"),
                "stopped_early": summary.get("stopped_early"),
                "heldout_best": summary.get("best_value"),
            }
        )
    )
    return run, time.perf_counter() - t0


def collect(
    work: Path, settings: list[str], fractions: list[float], seeds: list[int]
) -> dict[str, dict[str, dict[str, list[float]]]]:
    """metric (and ``steps``, ``best_step``) -> setting -> fraction -> one value per seed, finished runs."""
    keys = [*METRICS, *(f"{m} decoder-only" for m in DECODER_METRICS), "steps", "best_step"]
    out: dict[str, dict[str, dict[str, list[float]]]] = {m: {} for m in keys}
    for s in settings:
        for m in keys:
            out[m][s] = {}
        for f in fractions:
            for m in keys:
                out[m][s][f"{f:g}"] = []
            for seed in seeds:
                path = work / "runs" / run_name(s, f, seed) / "report.json"
                if not path.is_file():
                    continue
                rep = json.loads(path.read_text())
                for m, key in METRICS.items():
                    if key in rep["brief"]:
                        out[m][s][f"{f:g}"].append(float(rep["brief"][key]))
                for m in DECODER_METRICS:
                    if METRICS[m] in rep.get("brief_decoder_only", {}):
                        out[f"{m} decoder-only"][s][f"{f:g}"].append(
                            float(rep["brief_decoder_only"][METRICS[m]])
                        )
                out["steps"][s][f"{f:g}"].append(float(rep["steps"]))
                out["best_step"][s][f"{f:g}"].append(float(rep["best_step"] or 0))
    return out


def short_run_numbers(world_dir: Path) -> dict[str, Any] | None:
    """The newest label-efficiency results (500 steps) of the same world, if any."""
    found = sorted((REPO / "bench" / "results").glob("*-label-efficiency*.json"))
    for path in reversed(found):
        data = json.loads(path.read_text())
        if str(world_dir.resolve()) in str(data.get("world", "")):
            return {
                "file": path.name,
                "steps": data["steps"],
                "R1@0.5": data["results"],
                **data.get("also", {}),
            }
    return None


def _cell(values: list[float], seeds: int | None = None) -> str:
    """Mean ± std of the seeds' values; ``(n=K)`` where fewer than ``seeds`` runs have finished."""
    if not values:
        return "-"
    short = f" (n={len(values)})" if seeds is not None and len(values) < seeds else ""
    if len(values) == 1:
        return f"{values[0]:.2f}{short}"
    return f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f}{short}"


def render(results: dict[str, Any]) -> str:
    """Markdown: per metric a table of settings x fractions (converged, and 500 steps where known)."""
    fr = [f"{f:g}" for f in results["fractions"]]
    short = results.get("short_runs") or {}
    lines = [
        f"Converged study on `{results['world']}`: {results['report_on']}; {len(results['seeds'])} seeds; "
        f"{results['machine']}, {results['date']}.",
        "",
    ]
    head = " | ".join(f"{int(float(f) * 100)} % converged | {int(float(f) * 100)} % 500 steps" for f in fr)
    for metric in [*METRICS, *(f"{m} decoder-only" for m in DECODER_METRICS)]:
        if metric not in results["results"]:
            continue
        lines += [f"**{metric}**", "", f"| setting | {head} |", "|---|" + "---|---|" * len(fr)]
        for s, per in results["results"][metric].items():
            cells = []
            for f in fr:
                cells.append(_cell(per.get(f, []), len(results["seeds"])))
                cells.append(_cell((short.get(metric) or {}).get(s, {}).get(f, [])))
            lines.append(f"| {s} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["Steps trained (best held-out step), mean over seeds:", ""]
    lines += [
        "| setting | " + " | ".join(f"{int(float(f) * 100)} %" for f in fr) + " |",
        "|---|" + "---|" * len(fr),
    ]
    for s in results["results"]["steps"]:
        cells = []
        for f in fr:
            st, best = (
                results["results"]["steps"][s].get(f, []),
                results["results"]["best_step"][s].get(f, []),
            )
            cells.append(f"{statistics.fmean(st):.0f} ({statistics.fmean(best):.0f})" if st else "-")
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    lines += ["", "Paired by seed, converged (mean ± standard error, seeds where the first is higher):", ""]
    if "guard" in results:  # the candidate's accuracy guard (bench.label_efficiency.guard)
        cand = results["candidate"]
        lines += [
            f"Accuracy guard of `{' '.join(cand['overrides'])}` ({cand['name']} - masra+true): "
            + ("holds" if results["guard"]["holds"] else "**fails**"),
            "",
            "| metric | " + " | ".join(f"{int(float(f) * 100)} %" for f in fr) + " |",
            "|---|" + "---|" * len(fr),
        ]
        for metric in DECODER_METRICS:
            row = results["guard"][metric]
            cells = [
                f"{row[f]['mean']:+.2f} ± {row[f]['se']:.2f} ({row[f]['wins']}/{row[f]['n']})" for f in fr
            ]
            lines.append(f"| {metric} | " + " | ".join(cells) + " |")
        lines.append("")
    for metric in ("R1@0.5", "R1@0.7", "mAP"):
        lines += [f"| {metric} | " + " | ".join(f"{int(float(f) * 100)} %" for f in fr) + " |"]
        lines.append("|---|" + "---|" * len(fr))
        for name, per in results["paired"][metric].items():
            cells = [
                f"{per[f]['mean']:+.2f} ± {per[f]['se']:.2f} ({per[f]['wins']}/{per[f]['n']})"
                if per[f]["n"]
                else "-"
                for f in fr
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    """R1@0.5 per setting at each fraction: converged (filled) beside 500 steps (hollow), seed means."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = list(results["results"]["R1@0.5"])
    short = (results.get("short_runs") or {}).get("R1@0.5") or {}
    fig, axes = plt.subplots(
        1, len(results["fractions"]), figsize=(5.2 * len(results["fractions"]), 4.2), dpi=110
    )
    axes = list(axes) if len(results["fractions"]) > 1 else [axes]
    for ax, f in zip(axes, results["fractions"], strict=True):
        key = f"{f:g}"
        conv = [results["results"]["R1@0.5"][s].get(key, []) for s in settings]
        ys = range(len(settings))
        ax.barh(
            ys,
            [statistics.fmean(v) if v else 0 for v in conv],
            color="tab:blue",
            alpha=0.7,
            label="converged",
        )
        ax.scatter([statistics.fmean(short[s][key]) if short.get(s, {}).get(key) else float("nan") for s in settings],
                   ys, marker="o", facecolors="none", edgecolors="k", label="500 steps")  # fmt: skip
        ax.set_yticks(list(ys), settings, fontsize=7)
        ax.set_xlabel(f"R1@0.5 on {results['report_split']}")
        ax.set_title(f"{int(f * 100)} % labels")
        ax.grid(axis="x", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.converged", description=__doc__.split("\n")[0])
    p.add_argument("--world", choices=sorted(WORLDS), default="openworld", help="Which generated world.")
    p.add_argument(
        "--world-dir", type=Path, default=None, help="The built world (default data/generated/<world>)."
    )
    p.add_argument("--card", default=None, help="Another dataset card (name or path) instead of --world's.")
    p.add_argument("--config", type=Path, default=None, help="Training config (default: the world's).")
    p.add_argument("--report-split", default=None, help="Split scored once (default: the world's).")
    p.add_argument(
        "--work", type=Path, default=None, help="Runs and store folder (default runs/converged-<world>)."
    )
    p.add_argument("--fractions", default=",".join(f"{f:g}" for f in FRACTIONS), help="Label fractions.")
    p.add_argument("--seeds", type=int, default=3, help="Seeds per setting and fraction.")
    p.add_argument(
        "--settings",
        default="baseline,masra+true,masra+true+constant,masra+shuffled,masra+ignored",
        help="Comma list.",
    )
    p.add_argument("--parts", action="store_true", help="Add masra+true-<part> for every MASRA part.")
    p.add_argument("--max-steps", type=int, default=3000, help="Step cap of every run.")
    p.add_argument("--eval-steps", type=int, default=100, help="Steps between held-out evaluations.")
    p.add_argument("--patience", type=int, default=8, help="Held-out evaluations without a new best.")
    p.add_argument("--min-steps", type=int, default=1000, help="No early stop before this many steps.")
    p.add_argument("--holdout", type=float, default=0.2, help="Share of the train videos held out.")
    p.add_argument(
        "--best-metric",
        default=None,
        help="Held-out metric that picks the checkpoint and stops the run (default: the config's "
        "best_metric; MR-full-mAP weighs the boundaries too: it averages IoU 0.5 to 0.95).",
    )
    p.add_argument("--jobs", type=int, default=2, help="Trainings side by side (one torch thread each).")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help="Override.")
    add_candidate_option(p)
    p.add_argument("--tag", default="", help="Suffix of the result files' names.")
    p.add_argument("--render-only", action="store_true", help="Collect finished runs; train nothing.")
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TQDM_DISABLE", "1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from masra.datasets.card import load_card, parse_overrides
    from masra.datasets.readers import load_queries
    from masra.datasets.store_build import build_feature_store
    from masra.grounding import load_train_config

    card_name, config, report_split = WORLDS[args.world]
    config, report_split = args.config or config, args.report_split or report_split
    world_dir = (args.world_dir or REPO / "data" / "generated" / args.world).resolve()
    if args.card is not None:
        card_name = args.card
    else:
        marker = world_dir / "fixture.json"
        if '"complete"' not in (marker.read_text() if marker.is_file() else ""):
            raise SystemExit(f"no finished {args.world} world at {world_dir}; run `make {args.world}` first")
    settings = [s for s in args.settings.split(",") if s] + (
        [f"masra+true-{p}" for p in PARTS] if args.parts else []
    )
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise SystemExit(f"unknown --settings {unknown}; known: {', '.join(SETTINGS)}")
    known = dict(SETTINGS)
    cand, settings = with_candidate(settings, known, args.candidate)
    root = {} if args.card is not None else {"root": str(world_dir)}
    card = load_card(card_name, root)
    if "masra+shuffled" in settings and not (card.prior_dir / "shuffled").is_dir():
        log.warning("%s has no shuffled prior run: masra+shuffled left out", card.prior_dir)
        settings.remove("masra+shuffled")
    fractions = [float(f) for f in args.fractions.split(",")]
    best_metric = args.best_metric or load_train_config(card_name, config, {}).best_metric
    work = (args.work or REPO / "runs" / work_name(args.world, best_metric)).resolve()
    fit, held = write_holdout(card.annotation_path("train"), work / "splits", args.holdout)
    split_over = {
        **{f"card.{k}": v for k, v in root.items()},
        "card.annotations.fit": str(fit),
        "card.annotations.heldout": str(held),
        "train_split": "fit",
        "eval_split": "heldout",
        "best_metric": best_metric,
        "early_stop_patience": args.patience,
    }
    base = load_train_config(card_name, config, {**split_over, **parse_overrides(args.sets)})
    split_card = load_card(card_name, base.card)
    n_fit = len(load_queries(split_card, "fit")[0])
    store = work / "store"
    build_feature_store(split_card, ["fit", "heldout", report_split], store)
    seeds = [base.seed + k for k in range(args.seeds)]

    jobs: list[tuple[dict[str, Any], Path]] = []
    for seed in seeds:  # seed-major: an interrupted study still has whole seeds
        for f in fractions:
            spe = steps_per_epoch(n_fit, f, base.batch_size)
            epochs = -(-args.max_steps // spe)
            for s in settings:
                over = {
                    **split_over,
                    "seed": seed,
                    "label_fraction": f,
                    "epochs": epochs,
                    "eval_every": max(1, round(args.eval_steps / spe)),
                    "early_stop_min_epochs": -(-args.min_steps // spe),
                    "warmup_epochs": round(0.05 * min(epochs, -(-500 // spe)), 3),
                    **parse_overrides(args.sets),
                    **known[s],
                }
                cfg = load_train_config(card_name, config, over)
                run = work / "runs" / run_name(s, f, seed)
                if not (finished_same(run, cfg.to_dict()) and (run / "report.json").is_file()):
                    jobs.append((cfg.to_dict(), run))
    t0 = time.perf_counter()
    commit = _commit()
    if jobs and not args.render_only:
        total = len(seeds) * len(fractions) * len(settings)
        log.info("%d runs to train (%d kept), %d at a time", len(jobs), total - len(jobs), args.jobs)
        with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
            futures = [
                pool.submit(_train_and_score, cfg, str(run), str(store), report_split) for cfg, run in jobs
            ]
            for k, fut in enumerate(as_completed(futures), 1):
                run, secs = fut.result()
                rep = json.loads((Path(run) / "report.json").read_text())
                log.info("[%d/%d] %s in %.0f s: %s", k, len(jobs), Path(run).name, secs, rep)
    values = collect(work, settings, fractions, seeds)
    head, now = study_stamp(args.jobs, commit)
    results: dict[str, Any] = {
        **head,
        "world": f"{args.world} at {world_dir}" if args.card is None else str(args.card),
        "report_split": report_split,
        "report_on": f"best held-out checkpoint ({best_metric} on {args.holdout:g} of train's videos, every "
        f"{args.eval_steps} steps, patience {args.patience} after {args.min_steps} steps, at most "
        f"{args.max_steps} steps) scored once on "
        f"{report_split}",
        "config": str(config),
        "overrides": args.sets,
        "fractions": fractions,
        "seeds": seeds,
        "results": values,
        "paired": {
            m: {
                f"{a} - {b}": {
                    f"{f:g}": paired(values[m][a][f"{f:g}"], values[m][b][f"{f:g}"]) for f in fractions
                }
                for a, b in PAIRS
                if a in settings and b in settings
            }
            for m in ("R1@0.5", "R1@0.7", "mAP")
        },
        "short_runs": short_run_numbers(world_dir) if args.card is None else None,
        "wall_seconds": round(time.perf_counter() - t0, 1),
    }
    if cand is not None:
        record_guard(results, {m: values[m] for m in DECODER_METRICS}, cand, args.candidate, fractions, log)
    save_study(results, REPO / "bench" / "results", now, f"converged-{args.world}{args.tag}", plot, render)


if __name__ == "__main__":
    main()
