"""`make bench-priors`: are the priors used? Baseline vs MASRA with reference, shuffled and noisy priors.

On the fixture (``make fixture``), four settings are trained with ``masra/configs/fixture.yaml`` through
the real training entry point (:func:`masra.grounding.train.recipe.run_training`), each with ``--seeds``
seeds:

* ``baseline``: every MASRA part off, no priors read;
* ``masra+reference``: MASRA with the fixture's reference priors;
* ``masra+shuffled``: MASRA where every video carries *another* video's priors (a derangement; the
  donor's captions and events are stretched onto the receiving video's clip grid);
* ``masra+ignored``: MASRA with the reference priors but every prior-loss weight 0 (ESTA, SGE's
  supervision, LRCA): the architecture parts without the priors' gradients, a control for how much
  of MASRA's gain comes from the priors at all;
* ``masra+noisy``: the reference priors with event spans jittered (start and end moved by a normal
  of ``--jitter`` x the event length) and a share ``--replace`` of clip captions replaced by the
  caption of a random clip of a random video.

Diagnostics, not run by default (name them in ``--settings``): ``masra+ref-no-esta``,
``masra+ref-no-sge`` and ``masra+ref-no-lrca`` train MASRA on the reference priors with one prior
loss switched off. ``--holdout F`` trains on the videos of train but a share ``F`` and evaluates on
that held-out share instead of val (runs under ``{work}/holdout-F``), so settings such as loss
weights can be compared without looking at val.

All three prior runs are written by the same code into ``{work}/priors/{reference,shuffled,noisy}``
(embedding shards, EMBED_SCHEMA) and read through the card's ``prior_dir``. Reported: mean ± std over
seeds of val R1@0.5, R1@0.7 and mAP, at the last evaluation (no selection on val) and at the best
evaluation by R1@0.5 (what ``masra train`` keeps). Every setting trains with :data:`PROTOCOL` on top of
the config. A run whose folder already holds a finished run of the identical configuration is kept,
so an interrupted benchmark resumes where it stopped. The table is printed, appended to
``bench/results/RUNLOG.md`` with verdicts stated plainly, and saved as JSON in ``bench/results``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import socket
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from bench.report import publish
from masra.grounding import TrainConfig
from masra.priors.run import PriorRun
from masra.priors.schema import EMBED_SCHEMA, SCHEMA_VERSION
from masra.priors.shards import write_table_atomic
from masra.priors.table import PriorTable, read_prior_table

log = logging.getLogger("bench.priors")

REPO = Path(__file__).resolve().parents[1]
SETTINGS = ("baseline", "masra+reference", "masra+shuffled", "masra+noisy", "masra+ignored")
# masra+ignored: the MASRA model and the reference priors, every prior-loss weight 0, so the priors
# reach no gradient: what MASRA's architecture (SGE, SORA, DAI) gives without them.
IGNORED_PRIOR_WEIGHTS = {
    "loss.w_esta_event": 0.0,
    "loss.w_esta_clip": 0.0,
    "loss.w_sge": 0.0,
    "loss.w_lrca": 0.0,
}
# The comparison's training schedule on top of masra/configs/fixture.yaml (whose 20 constant-LR epochs are
# sized for a quick `make train`): with them every setting was still climbing at the last evaluation
# and the seed spread swamped the differences. 40 epochs with a cosine decay let the baseline level off
# (val R1@0.5 56 -> 61 over its last 16 epochs, seed 0). The same schedule is used for every setting;
# `--set` overrides it.
PROTOCOL = {"epochs": 40, "scheduler": "cosine", "eval_every": 4}
# Diagnostic settings (not run by default; name them in --settings): MASRA with the reference priors
# and one prior loss switched off, to find which prior loss helps or costs accuracy.
DROPS = {
    "masra+ref-no-esta": {"loss.w_esta_event": 0.0, "loss.w_esta_clip": 0.0},
    "masra+ref-no-sge": {"loss.w_sge": 0.0},
    "masra+ref-no-lrca": {"loss.w_lrca": 0.0},
}
ALL_SETTINGS = SETTINGS + tuple(DROPS)
METRICS = ("MR-full-R1@0.5", "MR-full-R1@0.7", "MR-full-mAP")


@dataclass(frozen=True)
class PriorVariant:
    """Per-video prior arrays of one run (lists indexed like ``vids``)."""

    vids: list[str]
    num_clips: list[int]
    event_se: list[np.ndarray]  # (E_i, 2) seconds
    event_emb: list[np.ndarray]  # (E_i, Dp)
    caption_emb: list[np.ndarray]  # (L_i, Dp)
    caption_valid: list[np.ndarray]  # (L_i,) bool


def from_table(t: PriorTable) -> PriorVariant:
    """Unpad a :class:`PriorTable`."""
    rows = range(len(t.video_ids))
    n = [int(t.num_clips[i]) for i in rows]
    e = [int(t.event_count[i]) for i in rows]
    return PriorVariant(
        vids=list(t.video_ids),
        num_clips=n,
        event_se=[t.event_se[i, : e[i]].copy() for i in rows],
        event_emb=[t.event_emb[i, : e[i]].astype(np.float16) for i in rows],
        caption_emb=[t.caption_emb[i, : n[i]].astype(np.float16) for i in rows],
        caption_valid=[t.caption_valid[i, : n[i]].copy() for i in rows],
    )


def derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A permutation of ``range(n)`` without fixed points (n >= 2)."""
    if n < 2:
        raise ValueError("shuffling priors needs at least 2 videos")
    while True:
        p = rng.permutation(n)
        if not (p == np.arange(n)).any():
            return p


def shuffled(ref: PriorVariant, clip_len: float, rng: np.random.Generator) -> PriorVariant:
    """Every video gets another video's priors, stretched onto its own clip grid."""
    donor = derangement(len(ref.vids), rng)
    ev_se, ev_emb, cap, valid = [], [], [], []
    for i, d in enumerate(donor):
        li, ld = ref.num_clips[i], ref.num_clips[d]
        idx = np.minimum(((np.arange(li) + 0.5) * ld / li).astype(int), ld - 1)
        cap.append(ref.caption_emb[d][idx])
        valid.append(ref.caption_valid[d][idx])
        ev_se.append(np.clip(ref.event_se[d] * (li / ld), 0.0, li * clip_len).astype(np.float32))
        ev_emb.append(ref.event_emb[d])
    return PriorVariant(ref.vids, ref.num_clips, ev_se, ev_emb, cap, valid)


def noisy(
    ref: PriorVariant, clip_len: float, rng: np.random.Generator, jitter: float, replace: float
) -> PriorVariant:
    """Event spans jittered by N(0, jitter x length); a share ``replace`` of captions swapped at random."""
    ev_se = []
    for i, se in enumerate(ref.event_se):
        grid = ref.num_clips[i] * clip_len
        length = np.maximum(se[:, 1] - se[:, 0], clip_len)[:, None]  # (E, 1)
        moved = se + rng.normal(0.0, jitter, size=se.shape) * length
        moved = np.clip(moved, 0.0, grid)
        moved[:, 1] = np.maximum(moved[:, 1], np.minimum(moved[:, 0] + 0.25 * clip_len, grid))
        moved[:, 0] = np.minimum(moved[:, 0], moved[:, 1] - 1e-3)
        ev_se.append(moved.astype(np.float32))
    pool = [(i, j) for i, n in enumerate(ref.num_clips) for j in range(n)]
    cap = []
    for c in ref.caption_emb:
        c = c.copy()
        for j in np.flatnonzero(rng.random(len(c)) < replace):
            a, b = pool[int(rng.integers(len(pool)))]
            c[j] = ref.caption_emb[a][b]
        cap.append(c)
    return PriorVariant(ref.vids, ref.num_clips, ev_se, ref.event_emb, cap, ref.caption_valid)


def _lists(parts: list[np.ndarray], value_type: pa.DataType) -> pa.Array:
    lengths = np.array([len(p) for p in parts], np.int64)
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    flat = np.concatenate(parts) if parts else np.zeros(0)
    return pa.ListArray.from_arrays(offsets, pa.array(flat, type=value_type))


def _nested(parts: list[np.ndarray], dim: int) -> pa.Array:
    """list<list<float16>>: per video, its (n_i, dim) rows."""
    mats = [p.reshape(-1, dim).astype(np.float16) for p in parts]
    rows = np.concatenate(mats) if mats else np.zeros((0, dim), np.float16)
    inner = pa.ListArray.from_arrays(
        pa.array(np.arange(len(rows) + 1, dtype=np.int32) * dim),
        pa.array(rows.reshape(-1), type=pa.float16()),
    )
    lengths = np.array([len(m) for m in mats], np.int64)
    return pa.ListArray.from_arrays(
        pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)), inner
    )


def write_variant(v: PriorVariant, folder: Path, encoder: str) -> Path:
    """Write one EMBED_SCHEMA shard of ``v`` into ``folder``."""
    dim = int(v.caption_emb[0].shape[1])
    table = pa.table(
        {
            "video_id": pa.array(v.vids, pa.string()),
            "encoder": pa.array([encoder] * len(v.vids), pa.string()),
            "dim": pa.array(np.full(len(v.vids), dim, np.int32)),
            "num_clips": pa.array(np.array(v.num_clips, np.int32)),
            "event_start": _lists([se[:, 0].astype(np.float32) for se in v.event_se], pa.float32()),
            "event_end": _lists([se[:, 1].astype(np.float32) for se in v.event_se], pa.float32()),
            "event_emb": _nested(v.event_emb, dim),
            "caption_emb": _nested(v.caption_emb, dim),
            "caption_valid": _lists(v.caption_valid, pa.bool_()),
            "schema_version": pa.array(np.full(len(v.vids), SCHEMA_VERSION, np.int32)),
        },
        schema=EMBED_SCHEMA,
    )
    return write_table_atomic(table, folder / "shard-00000.parquet")


def write_prior_runs(
    ref_dir: Path, out: Path, clip_len: float, encoder: str, seed: int, jitter: float, replace: float
) -> dict[str, str]:
    """Write the reference, shuffled and noisy runs under ``out``; returns run name -> folder."""
    ref = from_table(read_prior_table(ref_dir, "reference", encoder))
    rng = np.random.default_rng(seed)
    runs = {
        "reference": ref,
        "shuffled": shuffled(ref, clip_len, rng),
        "noisy": noisy(ref, clip_len, rng, jitter, replace),
    }
    paths = {}
    for name, variant in runs.items():
        paths[name] = str(write_variant(variant, PriorRun(out, name).embeddings_dir(encoder), encoder).parent)
    return paths


def write_holdout(train_path: Path, out: Path, frac: float, seed: int = 0) -> tuple[Path, Path]:
    """Split a QVHighlights-format train file by video: ``fit.jsonl`` (1 - ``frac``), ``heldout.jsonl``.

    All queries of a video land on the same side, so the held-out part shares no video with the part
    trained on; it is the place to compare settings without looking at val.
    """
    if not 0.0 < frac < 1.0:
        raise ValueError(f"--holdout must be in (0, 1), got {frac}")
    lines = [x for x in train_path.read_text(encoding="utf-8").splitlines() if x.strip()]
    vids = sorted({json.loads(x)["vid"] for x in lines})
    rng = np.random.default_rng(seed)
    n_held = max(1, round(frac * len(vids)))
    held = set(rng.permutation(vids)[:n_held].tolist())
    if n_held >= len(vids):
        raise ValueError(f"--holdout {frac} leaves no training video out of {len(vids)}")
    out.mkdir(parents=True, exist_ok=True)
    fit_path, held_path = out / "fit.jsonl", out / "heldout.jsonl"
    _write_if_changed(fit_path, "".join(x + "\n" for x in lines if json.loads(x)["vid"] not in held))
    _write_if_changed(held_path, "".join(x + "\n" for x in lines if json.loads(x)["vid"] in held))
    return fit_path, held_path


def _write_if_changed(path: Path, text: str) -> None:
    """Write ``text`` unless ``path`` holds it already: an unchanged split keeps its modification
    time, so the feature store built from it is not rebuilt (its fingerprint reads the time)."""
    if not (path.is_file() and path.read_text(encoding="utf-8") == text):
        path.write_text(text, encoding="utf-8")


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _last_eval(run_dir: Path) -> dict[str, Any]:
    lines = (run_dir / "metrics.jsonl").read_text().strip().splitlines()
    last: dict[str, Any] = json.loads(lines[-1])
    return last


def _run_dir(work: Path, setting: str, seed: int) -> Path:
    return work / "runs" / f"{setting.replace('+', '_')}-seed{seed}"


def finished_same(run: Path, train_cfg: dict[str, Any]) -> bool:
    """True when ``run`` holds a finished run (summary.json) trained with exactly ``train_cfg``."""
    config = run / "last" / "config.json"
    if not (run / "summary.json").is_file() or not config.is_file():
        return False
    resolved = json.loads(config.read_text())
    saved = resolved.get("train")
    if not isinstance(saved, dict):
        return False
    # A run saved before a field was added trained with that field's default: fill it in. What is
    # not a whole training config is compared as saved.
    with contextlib.suppress(TypeError, ValueError):
        saved = TrainConfig.from_dict(saved).to_dict()
    # A model or loss key the new config names but the saved run left to its default: the run's
    # resolved section says what that default was (a default may have changed since).
    for section in ("model", "loss"):
        named, kept = train_cfg.get(section), saved.get(section)
        used = resolved.get(section)
        if isinstance(named, dict) and isinstance(kept, dict) and isinstance(used, dict):
            saved[section] = {**{k: used[k] for k in named if k not in kept and k in used}, **kept}
    return bool(json.loads(json.dumps(saved)) == json.loads(json.dumps(train_cfg)))


LOSSES = ("span_l1", "span_giou", "label", "saliency_rank", "esta_event", "esta_clip", "sge", "lrca")


def collect_runs(work: Path, settings: list[str], seeds: int) -> tuple[dict[str, Any], float | None]:
    """Metrics (last and best evaluation) and final-epoch training losses of every finished run."""
    per: dict[str, Any] = {}
    position_r1 = None
    for name in settings:
        entry: dict[str, Any] = {
            "last": {k: [] for k in METRICS},
            "best": {k: [] for k in METRICS},
            "last_plain": {k: [] for k in METRICS},
            "final_losses": {k: [] for k in LOSSES},
            "seconds": [],
        }
        for k in range(seeds):
            run = _run_dir(work, name, k)
            if not (run / "summary.json").is_file():
                continue
            summary = json.loads((run / "summary.json").read_text())
            last = _last_eval(run)
            plain = last.get("without_saliency_rescore") or {}
            for key in METRICS:
                entry["last"][key].append(float(last[key]))
                entry["best"][key].append(float(summary["best_metrics"][key]))
                if key in plain:
                    entry["last_plain"][key].append(float(plain[key]))
            ends = [
                json.loads(x)
                for x in (run / "train_log.jsonl").read_text().splitlines()
                if '"epoch_end"' in x
            ]
            for key in LOSSES:
                if ends and f"loss_{key}" in ends[-1]:
                    entry["final_losses"][key].append(float(ends[-1][f"loss_{key}"]))
            entry["seconds"].append(summary["wall_seconds"])
            if summary.get("position_baseline"):
                position_r1 = summary["position_baseline"]["best_brief"].get("MR-full-R1@0.5")
        if entry["seconds"]:
            per[name] = entry
    return per, position_r1


def render(results: dict[str, Any]) -> str:
    """Markdown: machine line, both tables, and the verdicts."""
    per = results["settings"]
    lines = [
        f"### Prior sensitivity · {results['date']} · host `{results['host']}` · {results['machine']}",
        "",
        f"Fixture at {results['fixture']}, config {results['config']} ({results['overrides'] or 'no overrides'}), "
        f"evaluated on {results.get('eval_on', 'val')}, "
        f"seeds {results['seeds']}; noisy priors: jitter {results['jitter']} x event length, "
        f"{100 * results['replace']:.0f} % of captions replaced. Position-only baseline R1@0.5: "
        f"{results.get('position_r1', '-')}.",
        "",
    ]
    for which, title in (
        ("last", "at the last evaluation (no selection on val)"),
        ("best", "at the best epoch by val R1@0.5"),
        ("last_plain", "at the last evaluation, decoder ranking alone (no saliency rescoring)"),
    ):
        rows = []
        for name in ALL_SETTINGS:
            if name not in per or not all(per[name].get(which, {}).get(k) for k in METRICS):
                continue
            cells = [f"{m:.2f} ± {s:.2f}" for m, s in (_mean_std(per[name][which][k]) for k in METRICS)]
            rows.append(f"| {name} | " + " | ".join(cells) + " |")
        if not rows:  # e.g. no saliency rescoring configured: the plain ranking is the one above
            continue
        where = "Val" if results.get("eval_on", "val") == "val" else "Held-out"
        lines += [f"{where} metrics {title.replace('val ', where.lower() + ' ')}, mean ± std over seeds:", ""]
        lines += ["| setting | " + " | ".join(METRICS) + " |", "|---|" + "---|" * len(METRICS), *rows, ""]
    lines += [
        "Training losses at the last epoch (unweighted, mean over seeds): the prior losses show whether the "
        "model can fit the priors it is given (shuffled priors should stay higher than reference ones).",
        "",
        "| setting | " + " | ".join(LOSSES) + " |",
        "|---|" + "---|" * len(LOSSES),
    ]
    for name in ALL_SETTINGS:
        if name in per:
            fl = per[name].get("final_losses", {})
            cells = [f"{statistics.fmean(fl[k]):.3f}" if fl.get(k) else "-" for k in LOSSES]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "**Verdicts** (last evaluation, R1@0.5 and mAP; a difference counts when it exceeds the sum of the stds):",
        "",
    ]
    lines += [f"- {v}" for v in results["verdicts"]]
    return "\n".join(lines) + "\n"


def verdicts(per: dict[str, Any]) -> list[str]:
    """Plain statements comparing reference with baseline, shuffled and noisy."""
    out = []

    def cmp(a: str, b: str, key: str) -> tuple[float, float, bool]:
        ma, sa = _mean_std(per[a]["last"][key])
        mb, sb = _mean_std(per[b]["last"][key])
        return ma, mb, abs(ma - mb) > sa + sb

    for key in ("MR-full-R1@0.5", "MR-full-mAP"):
        if "baseline" in per and "masra+reference" in per:
            r, b, sig = cmp("masra+reference", "baseline", key)
            if r > b and sig:
                out.append(f"{key}: MASRA with reference priors beats the baseline ({r:.2f} vs {b:.2f}).")
            elif r > b:
                out.append(
                    f"{key}: MASRA with reference priors is above the baseline ({r:.2f} vs {b:.2f}) but within seed noise."
                )
            else:
                out.append(
                    f"{key}: MASRA with reference priors does NOT beat the baseline ({r:.2f} vs {b:.2f})."
                )
        for other in ("masra+shuffled", "masra+noisy", "masra+ignored"):
            if other in per and "masra+reference" in per:
                r, o, sig = cmp("masra+reference", other, key)
                kind = other.split("+")[1] + (" (prior-loss weights 0)" if other == "masra+ignored" else "")
                if r > o and sig:
                    out.append(f"{key}: reference priors beat {kind} priors ({r:.2f} vs {o:.2f}).")
                elif o > r and sig:
                    out.append(
                        f"{key}: {kind} priors do BETTER than reference ones ({o:.2f} vs {r:.2f}): "
                        "the reference priors' content does not help here."
                    )
                else:
                    out.append(
                        f"{key}: {kind} priors do as well as reference ones ({o:.2f} vs {r:.2f}): "
                        "the priors' content is not what helps here."
                    )
        for drop in DROPS:
            if drop in per and "masra+reference" in per:
                r, d, sig = cmp("masra+reference", drop, key)
                loss = drop.rsplit("-", 1)[1].upper()
                if d > r and sig:
                    out.append(
                        f"{key}: switching {loss} off IMPROVES on all prior losses ({d:.2f} vs {r:.2f})."
                    )
                elif r > d and sig:
                    out.append(f"{key}: switching {loss} off costs accuracy ({d:.2f} vs {r:.2f}).")
                else:
                    out.append(
                        f"{key}: switching {loss} off changes nothing beyond seed noise ({d:.2f} vs {r:.2f})."
                    )
    return out


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``main``."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fixture-dir", type=Path, default=REPO / "data" / "generated" / "fixture")
    p.add_argument("--work", type=Path, default=REPO / "data" / "generated" / "bench" / "priors")
    p.add_argument("--config", type=Path, default=REPO / "masra" / "configs" / "fixture.yaml")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--settings", default=",".join(SETTINGS))
    p.add_argument("--set", dest="sets", action="append", default=[], help="config override KEY=VALUE")
    p.add_argument("--jitter", type=float, default=0.5)
    p.add_argument("--replace", type=float, default=0.5)
    p.add_argument(
        "--holdout",
        type=float,
        default=None,
        metavar="F",
        help="train on the videos of train but a share F, evaluate on that held-out share (not val); "
        "for choosing settings without looking at val. Runs go to {work}/holdout-F",
    )
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--results-dir", type=Path, default=REPO / "bench" / "results")
    p.add_argument("--docs", type=Path, default=REPO / "bench" / "results" / "RUNLOG.md")
    p.add_argument("--no-docs", action="store_true")
    p.add_argument("--render-only", action="store_true", help="only collect and report finished runs")
    p.add_argument(
        "--train-seeds",
        default=None,
        help="comma list of seed indices to train here (default all); "
        "lets several processes share one --work folder, then --render-only collects them",
    )
    return p


def main(argv: list[str] | None = None) -> None:
    p = build_parser()
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    import torch

    from masra.datasets.card import load_card, parse_overrides
    from masra.grounding import load_train_config, run_training

    torch.set_num_threads(args.threads)
    if not (args.fixture_dir / "fixture.json").is_file():
        raise SystemExit(
            f"no fixture at {args.fixture_dir}; run `make fixture` first (or pass --fixture-dir)"
        )
    fixture = str(args.fixture_dir.resolve())
    card = load_card("fixture", {"root": fixture})
    base = load_train_config("fixture", args.config, None)
    prior_root = (args.work / "prior_runs").resolve()
    if not args.render_only:
        runs = write_prior_runs(
            card.prior_dir, prior_root, card.clip_len, base.priors_encoder, 0, args.jitter, args.replace
        )
        log.info("prior runs: %s", runs)
    overrides = {**PROTOCOL, **parse_overrides(args.sets)}
    runs_root, eval_on = args.work, "val"
    if args.holdout is not None:
        runs_root = args.work / f"holdout-{args.holdout:g}"
        fit, held = write_holdout(card.annotation_path("train"), runs_root / "splits", args.holdout)
        overrides.update(
            {"card.annotations.fit": str(fit), "card.annotations.heldout": str(held),
             "train_split": "fit", "eval_split": "heldout"}
        )  # fmt: skip
        eval_on = f"a held-out {args.holdout:g} of train's videos ({held})"
    settings = [s for s in args.settings.split(",") if s]
    unknown = sorted(set(settings) - set(ALL_SETTINGS))
    if unknown:
        raise SystemExit(f"unknown --settings {unknown}; known: {', '.join(ALL_SETTINGS)}")
    if not args.render_only:
        mine = [int(x) for x in args.train_seeds.split(",")] if args.train_seeds else range(args.seeds)
        for k in mine:  # seed-major, so an interrupted run still has whole seeds
            for name in settings:
                ov = dict(overrides)
                ov.update({"seed": base.seed + k, "card.root": fixture, "card.prior_dir": str(prior_root)})
                if name == "baseline":
                    ov["masra"] = False
                elif name == "masra+ignored":
                    ov.update({"priors_run": "reference", **IGNORED_PRIOR_WEIGHTS})
                elif name in DROPS:
                    ov.update({"priors_run": "reference", **DROPS[name]})
                else:
                    ov["priors_run"] = name.split("+")[1]
                cfg = load_train_config("fixture", args.config, ov)
                run = _run_dir(runs_root, name, k)
                if finished_same(run, cfg.to_dict()):
                    log.info("%s: finished run of the same configuration kept", run)
                    continue
                run_training(cfg, run, store_dir=runs_root / "store", overwrite=True)  # not finished: redo
    per, position_r1 = collect_runs(runs_root, settings, args.seeds)
    now = dt.datetime.now(dt.timezone.utc)
    results = {
        "bench": "prior_sensitivity",
        "date": now.strftime("%Y-%m-%d %H:%M UTC"),
        "host": socket.gethostname(),
        "machine": f"CPU only, {os.cpu_count()} cores, torch threads {args.threads}",
        "fixture": fixture,
        "config": str(args.config),
        "eval_on": eval_on,
        "overrides": " ".join([f"{k}={v}" for k, v in PROTOCOL.items()] + args.sets),
        "seeds": max((len(v["seconds"]) for v in per.values()), default=0),
        "jitter": args.jitter,
        "replace": args.replace,
        "position_r1": position_r1,
        "settings": per,
        "verdicts": verdicts(per),
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    path = args.results_dir / f"{socket.gethostname()}-{now.strftime('%Y%m%d-%H%M%S')}-priors.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    publish(render(results), path, None if args.no_docs else args.docs)


if __name__ == "__main__":
    main()
