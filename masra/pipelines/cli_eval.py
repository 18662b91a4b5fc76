"""`masra eval` and `masra predict`: score submissions, evaluate checkpoints, ground queries.

Examples::

    masra eval --predictions preds.jsonl --annotations highlight_val_release.jsonl --out metrics.json
    masra eval --predictions preds.jsonl --dataset tacos --split test
    masra eval --checkpoint runs/fixture/best --dataset fixture --split val
    masra predict --checkpoint runs/fixture/best --video-features v.npz --query "a red circle moves left"
    masra predict --checkpoint runs/fixture/best --video my.mp4 --query "a red circle moves left"

A checkpoint goes through :func:`masra.grounding.infer.run.run_checkpoint`, the one entry point of
inference; these commands parse, call it and print.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import click

from masra.datasets.card import parse_overrides
from masra.datasets.types import AnnotationError
from masra.pipelines.options import CARD_SET, cli_card, error_text

log = logging.getLogger(__name__)


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
    from masra.grounding.infer.evaluate import load_ground_truth, score_predictions
    from masra.grounding.metrics import evaluate_submission, read_ground_truth
    from masra.grounding.submission import read_submission

    preds = read_submission(predictions)
    if dataset is None:
        if annotations is None:
            raise click.UsageError("give --annotations, or --dataset (with --split) to use the card's file")
        # No card: Charades-style when the GT has no saliency labels, 2-s clips.
        metrics = evaluate_submission(preds, read_ground_truth(annotations), intersection=intersection)
    else:
        card = cli_card(dataset, overrides)
        gts = load_ground_truth(card, split, annotations)
        metrics = score_predictions(preds, gts, card, intersection=intersection)
    _print_metrics(metrics)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        click.echo(f"metrics written to {out}")


def _eval_checkpoint(
    checkpoint: Path, dataset: str | None, split: str, overrides: tuple[str, ...], out: Path | None,
    annotations: Path | None,
) -> None:  # fmt: skip
    from masra.grounding.infer.run import SplitInput, run_checkpoint

    outcome = run_checkpoint(
        checkpoint,
        SplitInput(split, annotations),
        dataset=dataset,
        card_overrides=parse_overrides(list(overrides)),
    )
    click.echo(f"features from {outcome.source}")
    # Beside the checkpoint inside its run folder; a run folder given itself holds it too.
    run_dir = checkpoint.parent if (checkpoint / "config.json").is_file() else checkpoint
    pred_path, metrics_path = outcome.write(out or run_dir / f"eval_{outcome.card.name}_{split}")
    click.echo(f"{len(outcome.predictions)} predictions written to {pred_path}")
    if outcome.metrics is None:
        click.echo(f"split {split!r} has no labels: predictions only")
        return
    _print_metrics(outcome.metrics)
    click.echo(f"metrics written to {metrics_path}")


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
    "-d",
    default=None,
    help="Dataset card name or YAML path (checkpoint mode: default the checkpoint's dataset).",
)
@click.option("--split", default="val", show_default=True, help="Split of the card.")
@CARD_SET
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Metrics JSON (with --predictions) or output folder (with --checkpoint; default "
    "RUN/eval_DATASET_SPLIT in the checkpoint's run folder).",
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
        raise click.ClickException(error_text(e)) from None


@click.command("predict")
@click.option("--checkpoint", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--video-features",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="npz with one array per feature type of the card, or a single 'features' array.",
)
@click.option(
    "--video",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A video file (any length): its features are extracted with the extractors the checkpoint's "
    "dataset card names, exactly as `masra features extract` stores them.",
)
@click.option(
    "--vid", default=None, help="A video id of the checkpoint's dataset: its feature files are read."
)
@click.option("--query", "queries", multiple=True, required=True, help="Query sentence (repeatable).")
@click.option(
    "--duration", type=float, default=None, help="Video duration in seconds (default: from the video)."
)
@click.option("--top-k", type=int, default=5, show_default=True, help="Windows printed per query.")
@click.option("--text-encoder", default=None, help="Text encoder name or folder (default: the dataset's).")
@click.option("--device", default="cpu", show_default=True, help="Torch device (model and extractors).")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a key of the checkpoint's card, e.g. video_features.clip.model=PATH for --video.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line per query instead of a table.")
def predict_command(
    checkpoint: Path,
    video_features: Path | None,
    video: Path | None,
    vid: str | None,
    queries: tuple[str, ...],
    duration: float | None,
    top_k: int,
    text_encoder: str | None,
    device: str,
    overrides: tuple[str, ...],
    as_json: bool,
) -> None:  # fmt: skip
    """Ground sentences in one video with a checkpoint; prints the top-k windows per query."""
    from masra.grounding.infer.run import VideoInput, run_checkpoint
    from masra.hub import ModelUnavailableError
    from masra.video_io import VideoIOError

    if sum(x is not None for x in (video_features, video, vid)) != 1:
        raise click.UsageError("give exactly one of --video-features F.npz, --video V.mp4 and --vid VID")
    try:
        outcome = run_checkpoint(
            checkpoint,
            VideoInput(queries, video=video, features=video_features, vid=vid, duration=duration),
            card_overrides=parse_overrides(list(overrides)),
            device=device,
            text_encoder=text_encoder,
            top_k=top_k,
        )
    except (VideoIOError, ModelUnavailableError) as e:
        raise click.ClickException(" ".join(str(e).split())) from None
    except (FileNotFoundError, KeyError, ValueError, RuntimeError) as e:
        raise click.ClickException(error_text(e)) from None
    for res in outcome.groundings:
        if as_json:
            click.echo(json.dumps({"query": res.query, "pred_relevant_windows": res.windows}))
            continue
        clips = res.extra["num_clips"]
        click.echo(f"query: {res.query}  ({clips} clips, {res.num_windows} model pass(es))")
        for rank, (start, end, score) in enumerate(res.windows, start=1):
            click.echo(f"  {rank:2d}. {start:8.2f} s - {end:8.2f} s   score {score:.4f}")


COMMANDS: list[click.Command] = [eval_command, predict_command]
