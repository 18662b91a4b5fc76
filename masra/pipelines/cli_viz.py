"""`masra viz`: pictures of results, per-query timelines and a run report.

Examples::

    masra viz timelines --predictions runs/fixture/best/predictions_val.jsonl --dataset fixture --out t/
    masra viz report --run runs/fixture
"""

from __future__ import annotations

from pathlib import Path

import click

from masra.datasets.types import AnnotationError
from masra.pipelines.options import CARD_SET, cli_card, error_text, prior_run_option


@click.group("viz")
def viz() -> None:
    """Pictures of results: per-query timelines and a run report."""


@viz.command("timelines")
@click.option("--predictions", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--annotations",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Ground-truth file (default: the card's file for --split).",
)
@click.option("--dataset", "-d", default=None, help="Dataset card name or YAML path.")
@click.option("--split", default="val", show_default=True)
@CARD_SET
@prior_run_option(
    old="--priors",
    help="Prior run whose event priors to draw: a run name of the --dataset card, or a run folder "
    "(Parquet shards).",
)
@click.option("--qid", "qids", multiple=True, help="Only these qids (repeatable); default: the first --num.")
@click.option("--num", type=int, default=20, show_default=True, help="Timelines to draw without --qid.")
@click.option("--top-k", type=int, default=5, show_default=True, help="Predicted windows drawn per query.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
def viz_timelines(
    predictions: Path, annotations: Path | None, dataset: str | None, split: str, overrides: tuple[str, ...],
    priors_run: str | None, qids: tuple[str, ...], num: int, top_k: int, out: Path,
) -> None:  # fmt: skip
    """One PNG per query: GT windows, top-k predicted windows, saliency and event priors."""
    from masra.grounding.infer.evaluate import load_ground_truth
    from masra.grounding.metrics import read_ground_truth
    from masra.grounding.submission import read_submission
    from masra.viz.report import load_prior_events
    from masra.viz.timeline import render_timeline, timelines_from_predictions

    try:
        preds = read_submission(predictions)
        clip_len = 2.0
        card = None
        if dataset is not None:
            card = cli_card(dataset, overrides)
            gts, clip_len = load_ground_truth(card, split, annotations), card.clip_len
        elif annotations is not None:
            gts = read_ground_truth(annotations)
        else:
            raise click.UsageError("give --annotations or --dataset")
        events = None
        if priors_run is not None:
            folder = Path(priors_run)
            if not folder.is_dir() and card is not None:
                from masra.priors.run import PriorRun  # pyarrow: not at CLI start-up

                folder = PriorRun(card.prior_dir, priors_run).dir
            if not folder.is_dir():
                raise click.UsageError(
                    f"--priors-run {priors_run}: no such run folder"
                    + ("" if card is not None else " (a run name needs --dataset)")
                )
            events = load_prior_events(folder)
    except (AnnotationError, FileNotFoundError, KeyError, ValueError) as e:
        raise click.ClickException(error_text(e)) from None
    items = timelines_from_predictions(preds, [g for g in gts if g.windows], clip_len=clip_len, events=events)
    if qids:
        wanted = set(qids)
        items = [d for d in items if str(d.qid) in wanted]
        found = {str(d.qid) for d in items}
        if wanted - found:
            raise click.ClickException(
                f"qids not found in predictions with ground truth: {sorted(wanted - found)}"
            )
    else:
        items = items[:num]
    for d in items:
        render_timeline(d, out / f"qid{d.qid}.png", top_k=top_k)
    click.echo(f"{len(items)} timelines written to {out}")


@viz.command("report")
@click.option(
    "--run",
    "run_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Run folder written by `masra train --out`.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Report folder (default RUN/report).",
)
@click.option("--split", default=None, help="Split of the predictions (default: the run's eval split).")
@click.option(
    "--predictions",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Submission file to show (default RUN/best/predictions_SPLIT.jsonl; without one, the best "
    "checkpoint predicts the split).",
)
@click.option("--examples", type=int, default=4, show_default=True, help="Timelines in the report.")
def viz_report(
    run_dir: Path, out: Path | None, split: str | None, predictions: Path | None, examples: int
) -> None:
    """Markdown run report: metrics table, training curves and a few query timelines."""
    from masra.viz.report import write_run_report

    try:
        path = write_run_report(run_dir, out, split=split, predictions=predictions, num_examples=examples)
    except (AnnotationError, FileNotFoundError, KeyError, ValueError) as e:
        raise click.ClickException(error_text(e)) from None
    click.echo(f"report written to {path}")


COMMANDS: list[click.Command] = [viz]
