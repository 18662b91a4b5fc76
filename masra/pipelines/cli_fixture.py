"""`masra fixture`: generate the synthetic fixture world (docs/fixture.md)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from masra.fixture import BuildConfig, WorldConfig, build_fixture


@click.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Output folder.")
@click.option("--seed", type=int, default=0, show_default=True, help="World seed.")
@click.option(
    "--train-videos", type=int, default=WorldConfig.train_videos, show_default=True, help="Train videos."
)
@click.option("--val-videos", type=int, default=WorldConfig.val_videos, show_default=True, help="Val videos.")
@click.option(
    "--pairs-per-video",
    type=int,
    default=WorldConfig.pairs_per_video,
    show_default=True,
    help="Pairs of event types differing in one attribute, per video.",
)
@click.option(
    "--query-all-types/--query-pair-types",
    default=WorldConfig.query_all_types,
    show_default=True,
    help="A query for every distinct event type of a video, or one per pair.",
)
@click.option(
    "--workers",
    type=int,
    default=min(2, os.cpu_count() or 1),
    show_default=True,
    help="Processes for rendering and feature extraction (the output does not depend on it).",
)
@click.option(
    "--encoder",
    default="minilm",
    show_default=True,
    help="Text encoder: minilm or a model path (the card's text dim must match).",
)
@click.option(
    "--background-events/--no-background-events",
    default=True,
    show_default=True,
    help="List empty stretches as events in the reference priors.",
)
def fixture(
    out: Path,
    seed: int,
    train_videos: int,
    val_videos: int,
    pairs_per_video: int,
    query_all_types: bool,
    workers: int,
    encoder: str,
    background_events: bool,
) -> None:
    """Generate the fixture world (videos, annotations, features, reference priors) in the --out folder.

    The same seed and sizes give byte-identical files. See docs/fixture.md.
    """
    try:
        world = WorldConfig(
            seed=seed,
            train_videos=train_videos,
            val_videos=val_videos,
            pairs_per_video=pairs_per_video,
            query_all_types=query_all_types,
        )
        cfg = BuildConfig(
            out=out, world=world, workers=workers, encoder=encoder, background_events=background_events
        )
        summary = build_fixture(cfg)
    except (ValueError, FileExistsError) as e:
        raise click.UsageError(str(e)) from e
    for line in summary.lines():
        click.echo(line)


COMMANDS: list[click.Command] = [fixture]
