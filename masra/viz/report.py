"""A Markdown report of a training run: metrics table, training curves and a few query timelines.

:func:`write_run_report` reads a run folder as the trainer writes it (``summary.json``,
``metrics.jsonl``, ``train_log.jsonl``, ``best/config.json`` and ``best/predictions_<split>.jsonl``)
and writes ``report.md`` with ``curves.png`` and ``timelines/*.png`` beside it. Every part is
optional: what the run folder lacks is left out of the report and said so in it.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from masra.datasets.card import DatasetCard
from masra.grounding.metrics import GroundTruth
from masra.grounding.submission import Prediction
from masra.viz.curves import render_curves
from masra.viz.timeline import Event, TimelineData, render_timeline, timelines_from_predictions, top1_iou_of

log = logging.getLogger(__name__)

__all__ = ["load_prior_events", "pick_examples", "render_curves", "write_run_report"]


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_prior_events(prior_run: str | os.PathLike[str]) -> dict[str, list[Event]]:
    """``vid -> [(start, end, text)]`` from the prior shards of a run folder ({} if there are none)."""
    from masra.priors.schema import PRIOR_SCHEMA
    from masra.priors.shards import read_shards, shard_paths

    if not shard_paths(prior_run):
        return {}
    table = read_shards(prior_run, PRIOR_SCHEMA).select(["video_id", "events"]).to_pylist()
    return {
        row["video_id"]: [(float(e["start"]), float(e["end"]), str(e["text"])) for e in row["events"] or []]
        for row in table
    }


def pick_examples(items: list[TimelineData], n: int) -> list[TimelineData]:
    """Up to ``n`` queries: the best half and the worst half by top-1 IoU (ties in input order)."""
    if n <= 0 or not items:
        return []
    ranked = sorted(items, key=lambda d: -top1_iou_of(d))
    best = ranked[: (n + 1) // 2]
    worst = [d for d in reversed(ranked) if d not in best][: n - len(best)]
    return best + worst


def _table(brief: dict[str, Any], baseline: dict[str, Any] | None = None) -> list[str]:
    """Markdown rows of the numeric entries, with a position-only baseline column when given."""

    def cell(v: Any) -> str:
        return f"{v:.2f}" if isinstance(v, int | float) and not isinstance(v, bool) else "-"

    keys = [k for k, v in brief.items() if isinstance(v, int | float)]
    if baseline is None:
        return ["| metric | value |", "|---|---:|", *(f"| {k} | {cell(brief[k])} |" for k in keys)]
    head = ["| metric | model | position-only baseline |", "|---|---:|---:|"]
    return head + [f"| {k} | {cell(brief[k])} | {cell(baseline.get(k))} |" for k in keys]


def write_run_report(
    run_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    *,
    split: str | None = None,
    predictions: str | os.PathLike[str] | None = None,
    num_examples: int = 4,
) -> Path:
    """Write ``{out_dir}/report.md`` (default ``{run_dir}/report``) for a run folder; returns its path.

    Args:
        run_dir: the folder ``masra train --out`` wrote.
        split: split the predictions belong to (default: the run's evaluation split).
        predictions: a submission file to show (default: ``best/predictions_<split>.jsonl``).
        num_examples: timelines in the report.
    """
    from masra.grounding.checkpoint import Checkpoint, read_checkpoint
    from masra.grounding.infer.run import Outcome, SplitInput, run_checkpoint

    run = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run / "report"
    out.mkdir(parents=True, exist_ok=True)
    summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").is_file() else {}
    lines = [f"# Run report: `{run}`", ""]
    notes: list[str] = []

    ckpt: Checkpoint | None = None
    card: DatasetCard | None = None
    try:
        ckpt = read_checkpoint(run)  # the best checkpoint, else the last
        card = ckpt.card
    except (FileNotFoundError, ValueError) as e:
        what = "no checkpoint read" if ckpt is None else "dataset card not found"
        notes.append(f"{what} ({e}): no ground truth, metrics or timelines")
    split = split or (ckpt.train.eval_split if ckpt is not None else None) or "val"
    if ckpt is not None and card is not None:
        parts = ", ".join(k for k, on in ckpt.model.masra_parts.items() if on) or "none (baseline)"
        lines += [
            f"- dataset: `{card.name}`, split `{split}`; best epoch {summary.get('best_epoch', ckpt.epoch)}",
            f"- MASRA parts: {parts}",
            "",
        ]

    default_preds = ckpt.folder / f"predictions_{split}.jsonl" if ckpt is not None else None
    pred_path = Path(predictions) if predictions is not None else default_preds
    outcome: Outcome | None = None
    if ckpt is not None and card is not None:  # the run's predictions scored, else the model predicts
        given = pred_path if pred_path is not None and pred_path.is_file() else None
        try:
            outcome = run_checkpoint(ckpt, SplitInput(split, predictions=given))
        except (FileNotFoundError, KeyError, ValueError) as e:
            notes.append(f"no predictions or ground truth for split {split!r}: {e}")
    preds: list[Prediction] = outcome.predictions if outcome is not None else []
    metrics = outcome.metrics if outcome is not None else None

    lines += ["## Metrics", ""]
    pos = (summary.get("position_baseline") or {}).get("best_brief")
    if metrics is not None and outcome is not None:
        lines += [f"Scored from {outcome.source} ({metrics['scoring']['num_queries']} queries).", ""]
        lines += _table(metrics["brief"], pos)
    elif summary.get("best_metrics"):
        lines += ["From `summary.json` (best checkpoint).", "", *_table(summary["best_metrics"], pos)]
    else:
        lines.append("No predictions or metrics in this run folder.")
    if pos:
        lines += [
            "",
            "The position-only baseline predicts the same windows for every query (no video, no text).",
        ]

    lines += ["", "## Training curves", ""]
    curves = render_curves(_jsonl(run / "train_log.jsonl"), _jsonl(run / "metrics.jsonl"), out / "curves.png")
    lines.append("![training curves](curves.png)" if curves else "No train_log.jsonl / metrics.jsonl found.")

    lines += ["", "## Example timelines", ""]
    events: dict[str, list[Event]] = {}
    if card is not None and ckpt is not None and ckpt.priors_run is not None:  # the run it trained with
        from masra.priors.run import PriorRun

        prior_run = PriorRun(card.prior_dir, ckpt.priors_run).dir
        events = load_prior_events(prior_run) if prior_run.is_dir() else {}
    gts: list[GroundTruth] = outcome.ground_truth if outcome is not None else []
    clip_len = card.clip_len if card is not None else 2.0
    items = timelines_from_predictions(preds, gts, clip_len=clip_len, events=events)
    chosen = pick_examples(items, num_examples)
    if not chosen:
        lines.append("No predictions with ground truth to show.")
    else:
        lines.append(
            f"The {len(chosen)} queries with the best and worst top-1 IoU"
            + (" (event priors in orange)." if events else ".")
        )
    for d in chosen:
        png = render_timeline(d, out / "timelines" / f"qid{d.qid}.png")
        lines += ["", f"**qid {d.qid}** ({d.vid}): {d.query}", "", f"![qid {d.qid}](timelines/{png.name})"]
    if notes:
        lines += ["", "## Notes", "", *(f"- {n}" for n in notes)]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    log.info("run report written to %s", report)
    return report
