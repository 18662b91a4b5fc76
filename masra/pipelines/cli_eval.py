"""`masra eval`: score a submission file (any method's) with the standard VTG protocol.

Examples::

    masra eval --predictions preds.jsonl --annotations highlight_val_release.jsonl --out metrics.json
    masra eval --predictions preds.jsonl --dataset charades_jsonl --split test
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import click

from masra.datasets.card import load_card, parse_overrides
from masra.datasets.types import AnnotationError
from masra.grounding.metrics import (
    GroundTruth,
    QidMismatchError,
    evaluate_submission,
    format_table,
    read_ground_truth,
)
from masra.grounding.submission import read_submission

log = logging.getLogger(__name__)

# Card formats whose annotation files are QVHighlights-style jsonl and can be read raw.
JSONL_FORMATS = ("qvhighlights", "charades_jsonl", "tacos")


def _ground_truth(
    annotations: Path | None, dataset: str | None, split: str, overrides: tuple[str, ...]
) -> tuple[list[GroundTruth], bool | None, float]:
    """GT records, the brief style (None = decide from the labels) and the saliency clip length."""
    if dataset is None:
        if annotations is None:
            raise click.UsageError("give --annotations, or --dataset (with --split) to use the card's file")
        return read_ground_truth(annotations), None, 2.0
    card = load_card(dataset, parse_overrides(list(overrides)))
    charades_style = card.format != "qvhighlights"
    if card.format in JSONL_FORMATS:
        path = annotations if annotations is not None else card.annotation_path(split)
        if not Path(path).is_file():
            raise click.UsageError(
                f"annotation file not found: {path} (dataset {card.name!r}, split {split!r})"
            )
        return read_ground_truth(path), charades_style, card.clip_len
    from masra.datasets.readers import load_queries  # the txt format needs the durations file

    queries, _ = load_queries(card, split, annotations)
    return [GroundTruth.from_query(q) for q in queries], charades_style, card.clip_len


def write_metrics(metrics: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")


@click.command("eval")
@click.option(
    "--predictions",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Submission jsonl to score (qid, pred_relevant_windows, [pred_saliency_scores]).",
)
@click.option(
    "--annotations",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Ground-truth jsonl; defaults to the dataset card's file for --split.",
)
@click.option(
    "--dataset", default=None, help="Dataset card name or YAML path (sets the brief keys, clip length)."
)
@click.option("--split", default="val", show_default=True, help="Split of the card to score against.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a dataset card key.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the metrics JSON here.",
)
@click.option(
    "--intersection",
    is_flag=True,
    help="Score only the qids present in both files (and say so) instead of failing on a mismatch.",
)
def eval_command(
    predictions: Path | None,
    annotations: Path | None,
    dataset: str | None,
    split: str,
    overrides: tuple[str, ...],
    out: Path | None,
    intersection: bool,
) -> None:
    """Score predictions with the standard QVHighlights / Charades-STA / TACoS protocol."""
    if predictions is None:
        raise click.UsageError("give --predictions P.jsonl")
    try:
        preds = read_submission(predictions)
        gts, charades_style, clip_len = _ground_truth(annotations, dataset, split, overrides)
        metrics = evaluate_submission(
            preds, gts, intersection=intersection, charades_style=charades_style, clip_len=clip_len
        )
    except (AnnotationError, QidMismatchError, FileNotFoundError, KeyError) as e:
        raise click.ClickException(str(e)) from None
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    scoring = metrics["scoring"]
    if scoring["intersection"]:
        click.echo(
            f"NOTE: scored the {scoring['num_queries']} shared qids only "
            f"({scoring['gt_without_prediction']} GT qids without prediction, "
            f"{scoring['prediction_without_gt']} predicted qids without GT left out)"
        )
    click.echo(format_table(metrics))
    if out is not None:
        write_metrics(metrics, out)
        click.echo(f"metrics written to {out}")


COMMANDS: list[click.Command] = [eval_command]
