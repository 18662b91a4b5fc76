"""`masra eval` and `masra predict`: score submissions, evaluate checkpoints, ground queries.

Examples::

    masra eval --predictions preds.jsonl --annotations highlight_val_release.jsonl --out metrics.json
    masra eval --predictions preds.jsonl --dataset tacos --split test
    masra eval --checkpoint runs/fixture/best --dataset fixture --split val
    masra predict --checkpoint runs/fixture/best --video-features v.npz --query "a red circle moves left"
    masra predict --checkpoint runs/fixture/best --video my.mp4 --query "a red circle moves left"
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
    from masra.grounding.infer.evaluate import load_ground_truth
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
    from masra.datasets.store_build import find_feature_store
    from masra.grounding.checkpoint import read_checkpoint_config
    from masra.grounding.infer.evaluate import evaluate_checkpoint
    from masra.grounding.infer.grounder import Grounder, checkpoint_card

    config = read_checkpoint_config(checkpoint)
    over = parse_overrides(list(overrides))
    try:
        if dataset is not None:
            card = load_card(dataset, {**((config.get("train") or {}).get("card") or {}), **over})
        else:
            card = checkpoint_card(config, over)
    except (ValueError, FileNotFoundError) as e:
        raise click.ClickException(str(e)) from None
    try:
        grounder = Grounder.from_pretrained(checkpoint, card=card)
    except ValueError as e:  # a damaged checkpoint file, named
        raise click.ClickException(str(e)) from None
    out_dir = out or checkpoint.parent / f"eval_{card.name}_{split}"
    store = find_feature_store(card, [split]) if annotations is None else None
    click.echo(
        f"features from {f'the feature store {store.path} (as training read them)' if store else 'the feature files'}"
    )
    result = evaluate_checkpoint(grounder, card, split, out_dir, annotations=annotations, store=store)
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
    "-d",
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
    from masra.grounding.checkpoint import read_checkpoint_config
    from masra.grounding.infer.grounder import Grounder, checkpoint_card, load_feature_npz
    from masra.hub import ModelUnavailableError
    from masra.video_io import VideoIOError

    if sum(x is not None for x in (video_features, video, vid)) != 1:
        raise click.UsageError("give exactly one of --video-features F.npz, --video V.mp4 and --vid VID")
    try:
        card = checkpoint_card(read_checkpoint_config(checkpoint), parse_overrides(list(overrides)))
        grounder = Grounder.from_pretrained(checkpoint, text_encoder=text_encoder, card=card, device=device)
        if video is not None:
            from masra.grounding.infer.raw_video import video_features_for

            extracted = video_features_for(grounder, video)
            feats, duration = extracted.features, duration or extracted.duration
        elif vid is not None:
            from masra.datasets.features import load_video_features

            feats = load_video_features(card, vid)
        else:
            assert video_features is not None
            feats = load_feature_npz(video_features, card)
        results = grounder.predict(feats, query_text=list(queries), duration=duration, top_k=top_k)
    except (VideoIOError, ModelUnavailableError) as e:
        raise click.ClickException(" ".join(str(e).split())) from None
    except (FileNotFoundError, KeyError, ValueError, RuntimeError) as e:
        raise click.ClickException(_message(e)) from None
    for res in results:
        if as_json:
            click.echo(json.dumps({"query": res.query, "pred_relevant_windows": res.windows}))
            continue
        click.echo(f"query: {res.query}  ({feats.shape[0]} clips, {res.num_windows} model pass(es))")
        for rank, (start, end, score) in enumerate(res.windows, start=1):
            click.echo(f"  {rank:2d}. {start:8.2f} s - {end:8.2f} s   score {score:.4f}")


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
@_SET
@click.option(
    "--priors",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Prior run folder (Parquet shards) whose event priors to draw.",
)
@click.option("--qid", "qids", multiple=True, help="Only these qids (repeatable); default: the first --num.")
@click.option("--num", type=int, default=20, show_default=True, help="Timelines to draw without --qid.")
@click.option("--top-k", type=int, default=5, show_default=True, help="Predicted windows drawn per query.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
def viz_timelines(
    predictions: Path, annotations: Path | None, dataset: str | None, split: str, overrides: tuple[str, ...],
    priors: Path | None, qids: tuple[str, ...], num: int, top_k: int, out: Path,
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
        if dataset is not None:
            card = _card(dataset, overrides)
            gts, clip_len = load_ground_truth(card, split, annotations), card.clip_len
        elif annotations is not None:
            gts = read_ground_truth(annotations)
        else:
            raise click.UsageError("give --annotations or --dataset")
        events = load_prior_events(priors) if priors is not None else None
    except (AnnotationError, FileNotFoundError, KeyError, ValueError) as e:
        raise click.ClickException(_message(e)) from None
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
    help="Submission file to show (default RUN/best/predictions_SPLIT.jsonl).",
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
        raise click.ClickException(_message(e)) from None
    click.echo(f"report written to {path}")


COMMANDS: list[click.Command] = [eval_command, predict_command, viz]
