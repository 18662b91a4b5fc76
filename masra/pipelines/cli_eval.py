"""`masra eval` and `masra predict`: score submissions, evaluate checkpoints, ground queries.

Examples::

    masra eval --predictions preds.jsonl --annotations highlight_val_release.jsonl --out metrics.json
    masra eval --predictions preds.jsonl --dataset tacos --split test
    masra eval --checkpoint runs/fixture/best --dataset fixture --split val
    masra predict --checkpoint runs/fixture/best --video-features v.npz --query "a red circle moves left"
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import click

from masra.datasets.card import DatasetCard, load_card, parse_overrides
from masra.datasets.types import AnnotationError

log = logging.getLogger(__name__)

_SET = click.option(
    "--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a dataset card key (dotted)."
)


def _message(e: Exception) -> str:
    return str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)


def _card(dataset: str, overrides: tuple[str, ...]) -> DatasetCard:
    try:
        return load_card(dataset, parse_overrides(list(overrides)))
    except (ValueError, FileNotFoundError) as e:
        raise click.ClickException(str(e)) from None


def _print_metrics(metrics: dict[str, Any]) -> None:
    from masra.grounding.metrics import format_table

    scoring = metrics["scoring"]
    if scoring["intersection"]:
        click.echo(
            f"NOTE: scored the {scoring['num_queries']} shared qids only "
            f"({scoring['gt_without_prediction']} GT qids without prediction, "
            f"{scoring['prediction_without_gt']} predicted qids without GT left out)"
        )
    click.echo(format_table(metrics))


def _score_file(
    predictions: Path,
    annotations: Path | None,
    dataset: str | None,
    split: str,
    overrides: tuple[str, ...],
    out: Path | None,
    intersection: bool,
) -> None:
    from masra.grounding.checkpoint_eval import load_ground_truth
    from masra.grounding.metrics import evaluate_submission, read_ground_truth
    from masra.grounding.submission import read_submission

    preds = read_submission(predictions)
    if dataset is None:
        if annotations is None:
            raise click.UsageError("give --annotations, or --dataset (with --split) to use the card's file")
        gts, charades_style, clip_len = read_ground_truth(annotations), None, 2.0
    else:
        card = _card(dataset, overrides)
        gts = load_ground_truth(card, split, annotations)
        charades_style, clip_len = card.format != "qvhighlights", card.clip_len
    metrics = evaluate_submission(
        preds, gts, intersection=intersection, charades_style=charades_style, clip_len=clip_len
    )
    _print_metrics(metrics)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        click.echo(f"metrics written to {out}")


def _eval_checkpoint(
    checkpoint: Path, dataset: str | None, split: str, overrides: tuple[str, ...], out: Path | None,
    annotations: Path | None,
) -> None:  # fmt: skip
    from masra.grounding.checkpoint import read_checkpoint_config
    from masra.grounding.checkpoint_eval import evaluate_checkpoint
    from masra.grounding.predictor import Grounder, checkpoint_card

    config = read_checkpoint_config(checkpoint)
    over = parse_overrides(list(overrides))
    try:
        if dataset is not None:
            card = load_card(dataset, {**((config.get("train") or {}).get("card") or {}), **over})
        else:
            card = checkpoint_card(config, over)
    except (ValueError, FileNotFoundError) as e:
        raise click.ClickException(str(e)) from None
    grounder = Grounder.from_pretrained(checkpoint, card=card)
    out_dir = out or checkpoint.parent / f"eval_{card.name}_{split}"
    result = evaluate_checkpoint(grounder, card, split, out_dir, annotations=annotations)
    click.echo(f"{result.num_queries} predictions written to {result.predictions_path}")
    if result.metrics is None:
        click.echo(f"split {split!r} has no labels: predictions only")
        return
    _print_metrics(result.metrics)
    click.echo(f"metrics written to {result.metrics_path}")


@click.command("eval")
@click.option(
    "--predictions",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Submission jsonl to score (qid, pred_relevant_windows, [pred_saliency_scores]).",
)
@click.option(
    "--checkpoint",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Checkpoint folder to evaluate on --dataset/--split (writes predictions, then metrics).",
)
@click.option(
    "--annotations",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Ground-truth file; defaults to the dataset card's file for --split.",
)
@click.option(
    "--dataset",
    default=None,
    help="Dataset card name or YAML path (checkpoint mode: default the checkpoint's dataset).",
)
@click.option("--split", default="val", show_default=True, help="Split of the card.")
@_SET
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Metrics JSON (with --predictions) or output folder (with --checkpoint; default "
    "CKPT/../eval_DATASET_SPLIT).",
)
@click.option(
    "--intersection",
    is_flag=True,
    help="Score only the qids present in both files (and say so) instead of failing on a mismatch.",
)
def eval_command(
    predictions: Path | None,
    checkpoint: Path | None,
    annotations: Path | None,
    dataset: str | None,
    split: str,
    overrides: tuple[str, ...],
    out: Path | None,
    intersection: bool,
) -> None:  # fmt: skip
    """Score a submission file, or evaluate a checkpoint, with the standard VTG protocol."""
    from masra.grounding.metrics import QidMismatchError

    if (predictions is None) == (checkpoint is None):
        raise click.UsageError("give exactly one of --predictions P.jsonl and --checkpoint CKPT")
    try:
        if predictions is not None:
            _score_file(predictions, annotations, dataset, split, overrides, out, intersection)
        else:
            assert checkpoint is not None
            _eval_checkpoint(checkpoint, dataset, split, overrides, out, annotations)
    except (AnnotationError, QidMismatchError, FileNotFoundError, KeyError, ValueError) as e:
        raise click.ClickException(_message(e)) from None


@click.command("predict")
@click.option("--checkpoint", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--video-features",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="npz with one array per feature type of the card, or a single 'features' array.",
)
@click.option("--query", "queries", multiple=True, required=True, help="Query sentence (repeatable).")
@click.option(
    "--duration", type=float, default=None, help="Video duration in seconds (default: clips x clip_len)."
)
@click.option("--top-k", type=int, default=5, show_default=True, help="Windows printed per query.")
@click.option("--text-encoder", default=None, help="Text encoder name or folder (default: the dataset's).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line per query instead of a table.")
def predict_command(
    checkpoint: Path,
    video_features: Path | None,
    queries: tuple[str, ...],
    duration: float | None,
    top_k: int,
    text_encoder: str | None,
    as_json: bool,
) -> None:  # fmt: skip
    """Ground sentences in one video with a checkpoint; prints the top-k windows per query."""
    from masra.grounding.checkpoint import read_checkpoint_config
    from masra.grounding.predictor import Grounder, checkpoint_card, load_feature_npz

    if video_features is None:
        raise click.UsageError("give --video-features F.npz")
    try:
        card = checkpoint_card(read_checkpoint_config(checkpoint))
        grounder = Grounder.from_pretrained(checkpoint, text_encoder=text_encoder, card=card)
        video = load_feature_npz(video_features, card)
        results = grounder.predict(video, query_text=list(queries), duration=duration, top_k=top_k)
    except (FileNotFoundError, KeyError, ValueError) as e:
        raise click.ClickException(_message(e)) from None
    for res in results:
        if as_json:
            click.echo(json.dumps({"query": res.query, "pred_relevant_windows": res.windows}))
            continue
        click.echo(f"query: {res.query}  ({video.shape[0]} clips, {res.num_windows} model pass(es))")
        for rank, (start, end, score) in enumerate(res.windows, start=1):
            click.echo(f"  {rank:2d}. {start:8.2f} s - {end:8.2f} s   score {score:.4f}")


COMMANDS: list[click.Command] = [eval_command, predict_command]
