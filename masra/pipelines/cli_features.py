"""`masra features ...`: extract a card's video (and query text) features from raw files.

Examples::

    masra features extract --dataset fixture                       # the card's video_dir
    masra features extract --dataset qvhighlights --videos /data/qvh/videos --device cuda
    masra features extract --dataset mine.yaml --videos list.txt --type clip
    masra features extract --dataset qvhighlights --queries my_queries.jsonl   # text features only
    masra features list
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from masra.datasets.card import DatasetCard, load_card, parse_overrides

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".mpg", ".mpeg")


def _card(dataset: str, overrides: tuple[str, ...]) -> DatasetCard:
    try:
        return load_card(dataset, parse_overrides(overrides))
    except (ValueError, FileNotFoundError) as e:
        raise click.ClickException(str(e)) from None


def video_list(source: Path) -> list[Path]:
    """The videos of a folder (known video suffixes, sorted) or of a list file (one path a line).

    A relative path in a list file is taken from the current folder when it exists there, else from
    the list file's folder. Blank lines and lines starting with ``#`` are skipped.
    """
    if source.is_dir():
        return sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    if not source.is_file():
        raise click.ClickException(f"--videos {source}: no such folder or list file")
    out = []
    for line in source.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        p = Path(line).expanduser()
        out.append(p if p.is_absolute() or p.exists() else source.parent / p)
    return out


@click.group("features")
def features() -> None:
    """Feature extraction with the extractors dataset cards name (masra/features/)."""


@features.command("list")
def list_extractors() -> None:
    """Print the registered extractors: name, width, default model, description."""
    from masra.features.registry import EXTRACTORS

    for spec in EXTRACTORS.values():
        click.echo(
            f"{spec.name:14s} {spec.dim or '?':>5}  {spec.default_model or '-':32s} {spec.description}"
        )


@features.command("extract")
@click.option(
    "--dataset", "-d", required=True, help="Card name or path; its feature types name the extractors."
)
@click.option(
    "--videos",
    type=click.Path(path_type=Path),
    default=None,
    help="A folder of videos or a list file (one path a line). Default: the card's video_dir, "
    "unless only --queries is given.",
)
@click.option("--type", "types", multiple=True, help="Only these feature types of the card (repeatable).")
@click.option(
    "--queries",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Annotation file (the card's format): write the text features of its queries.",
)
@click.option("--text-encoder", default=None, help="Text encoder (default: the card's `text_encoder`).")
@click.option("--device", default=None, help="torch device (default: cuda when available, else cpu).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Clips per forward pass.")
@click.option("--overwrite", is_flag=True, help="Re-extract files that already exist.")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Videos extracted at once (threads; decoding overlaps the model, e.g. 4 on a GPU machine).",
)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N videos.")
@click.option(
    "--failed",
    "failed_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the unreadable videos of this run (jsonl: vid, path, reason; empty when none). "
    "Default: {root}/failed_videos.jsonl.",
)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a card key (dotted).")
def extract(
    dataset: str,
    videos: Path | None,
    types: tuple[str, ...],
    queries: Path | None,
    text_encoder: str | None,
    device: str | None,
    batch_size: int | None,
    overwrite: bool,
    workers: int,
    limit: int | None,
    failed_path: Path | None,
    overrides: tuple[str, ...],
) -> None:
    """Videos in, the card's feature files out ({dir}/{vid}.npz per type, the card's clip length).

    Resumable: videos whose files exist are skipped (each file is written atomically). Unreadable
    videos are listed (``failed`` in the printed JSON and the --failed file), not fatal.
    """
    from masra.hub import ModelUnavailableError

    card = _card(dataset, overrides)
    summary: dict[str, object] = {"dataset": card.name, "clip_len": card.clip_len}
    try:
        if videos is not None or queries is None:
            source = videos or card.video_dir
            report, failed = _videos(card, source, types, device, batch_size, overwrite, workers, limit)
            path = failed_path or card.root / "failed_videos.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)  # rewritten each run: failed videos are retried
            path.write_text("".join(json.dumps(f) + "\n" for f in failed), encoding="utf-8")
            summary["videos"] = report
            summary["failed_list"] = str(path)
        if queries is not None:
            summary["queries"] = _queries(card, queries, text_encoder, device, overwrite)
    except (ModelUnavailableError, ValueError, FileNotFoundError, KeyError) as e:
        msg = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
        raise click.ClickException(msg) from None
    click.echo(json.dumps(summary, indent=2))


def _videos(
    card: DatasetCard,
    source: Path,
    types: tuple[str, ...],
    device: str | None,
    batch_size: int | None,
    overwrite: bool,
    workers: int,
    limit: int | None,
) -> tuple[dict[str, object], list[dict[str, str]]]:
    """Extract the videos of ``source``; returns the summary and the failed videos (vid, path, reason)."""
    from masra.features.extract import extract_videos, load_card_extractors

    paths = video_list(source)[:limit]
    if not paths:
        raise click.ClickException(f"no videos in {source} (suffixes {', '.join(VIDEO_SUFFIXES)})")
    extractors = load_card_extractors(card, list(types) or None, device=device, batch_size=batch_size)
    log.info("extracting %s for %d videos from %s", ", ".join(extractors), len(paths), source)
    report = extract_videos(card, paths, extractors, overwrite=overwrite, workers=workers)
    failed = [{"vid": v, "path": p, "reason": r} for v, p, r in report.failed]
    return {"source": str(source), "types": list(extractors), **report.to_dict()}, failed


def _queries(
    card: DatasetCard, annotations: Path, name: str | None, device: str | None, overwrite: bool
) -> dict[str, object]:
    from masra.features.base import pick_device
    from masra.features.text import card_text_encoder, extract_query_features
    from masra.text_encoder import TextEncoder

    encoder = TextEncoder.load(name or card_text_encoder(card), device=pick_device(device))
    return {
        "encoder": encoder.name,
        **extract_query_features(card, annotations, encoder, overwrite=overwrite),
    }


COMMANDS: list[click.Command] = [features]
