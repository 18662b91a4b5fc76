"""`masra fixture`: generate a synthetic fixture world, `shapes` or `open` (docs/fixture.md)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import click
import yaml
from click.core import ParameterSource

from masra.fixture.open_world import OpenWorldConfig
from masra.fixture.world import WorldConfig

SHAPES_ONLY = ("pairs_per_video", "query_all_types", "workers", "background_events")
OPEN_ONLY = ("test_videos", "sentences", "set_world")
OPEN_FIXED = ("seed", "train_videos", "val_videos", "test_videos")  # set by their own options


def _open_world(seed: int, sizes: dict[str, int | None], items: tuple[str, ...]) -> OpenWorldConfig:
    """The open world's config from the size options and ``--set-world key=value`` items."""
    known = {f.name for f in dataclasses.fields(OpenWorldConfig)}
    values: dict[str, Any] = {"seed": seed, **{k: v for k, v in sizes.items() if v is not None}}
    for item in items:
        k, sep, v = item.partition("=")
        k = k.strip()
        if not sep:
            raise ValueError(f"--set-world {item!r} must look like key=value")
        if k in OPEN_FIXED:
            raise ValueError(f"--set-world {k}: use --{k.replace('_', '-')} instead")
        if k not in known:
            raise ValueError(
                f"--set-world {k}: not a world setting; known: {', '.join(sorted(known - set(OPEN_FIXED)))}"
            )
        values[k] = yaml.safe_load(v)
    return OpenWorldConfig(**values)


@click.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Output folder.")
@click.option(
    "--world",
    type=click.Choice(["shapes", "open"]),
    default="shapes",
    show_default=True,
    help="shapes: rendered videos of coloured shapes (make fixture); open: real-sentence events, "
    "features only, reference/noisy/shuffled priors (make openworld).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="World seed.")
@click.option(
    "--train-videos",
    type=int,
    default=None,
    help=f"Train videos [default: {WorldConfig.train_videos} shapes, {OpenWorldConfig.train_videos} open].",
)
@click.option(
    "--val-videos",
    type=int,
    default=None,
    help=f"Val videos [default: {WorldConfig.val_videos} shapes, {OpenWorldConfig.val_videos} open].",
)
@click.option(
    "--test-videos",
    type=int,
    default=None,
    help=f"Open world only: test videos [default: {OpenWorldConfig.test_videos}].",
)
@click.option(
    "--sentences",
    default="auto",
    show_default=True,
    help="Open world only: event sentences from 'sample' (the committed ~300), a folder laid out like "
    "shared/datasets, or 'auto' (../shared/datasets beside the repository when it exists, else sample).",
)
@click.option(
    "--set-world",
    "set_world",
    multiple=True,
    metavar="KEY=VALUE",
    help="Open world only: set an OpenWorldConfig field (repeatable), e.g. --set-world clip_noise=0.8.",
)
@click.option(
    "--pairs-per-video",
    type=int,
    default=WorldConfig.pairs_per_video,
    show_default=True,
    help="Shapes only: pairs of event types differing in one attribute, per video.",
)
@click.option(
    "--query-all-types/--query-pair-types",
    default=WorldConfig.query_all_types,
    show_default=True,
    help="Shapes only: a query for every distinct event type of a video, or one per pair.",
)
@click.option(
    "--workers",
    type=int,
    default=min(2, os.cpu_count() or 1),
    show_default=True,
    help="Shapes only: processes for rendering and feature extraction (the output does not depend on it).",
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
    help="Shapes only: list empty stretches as events in the reference priors.",
)
@click.pass_context
def fixture(
    ctx: click.Context,
    out: Path,
    world: str,
    seed: int,
    train_videos: int | None,
    val_videos: int | None,
    test_videos: int | None,
    sentences: str,
    set_world: tuple[str, ...],
    pairs_per_video: int,
    query_all_types: bool,
    workers: int,
    encoder: str,
    background_events: bool,
) -> None:
    """Generate a fixture world in the --out folder.

    shapes (default): rendered videos, annotations, hand-crafted features, reference priors.
    open: real-sentence events, SlowFast/CLIP-like features, annotations of 2 events per video,
    reference/noisy/shuffled priors; options marked "Shapes only" are refused with it, and the
    "Open world only" ones with shapes. The same seed and settings give byte-identical files.
    See docs/fixture.md.
    """
    wrong = SHAPES_ONLY if world == "open" else OPEN_ONLY
    given = [n for n in wrong if ctx.get_parameter_source(n) == ParameterSource.COMMANDLINE]
    if given:
        flags = ", ".join("--" + n.replace("_", "-") for n in given)
        raise click.UsageError(f"{flags}: not an option of the {world} world")
    try:
        if world == "open":
            from masra.fixture.open_build import OpenBuildConfig, build_open_world

            sizes = {"train_videos": train_videos, "val_videos": val_videos, "test_videos": test_videos}
            cfg_open = OpenBuildConfig(
                out=out, world=_open_world(seed, sizes, set_world), sentences=sentences, encoder=encoder
            )
            summary = build_open_world(cfg_open)
        else:
            from masra.fixture.build import BuildConfig, build_fixture  # lazy: av, pyarrow

            shapes = WorldConfig(
                seed=seed,
                train_videos=WorldConfig.train_videos if train_videos is None else train_videos,
                val_videos=WorldConfig.val_videos if val_videos is None else val_videos,
                pairs_per_video=pairs_per_video,
                query_all_types=query_all_types,
            )
            cfg = BuildConfig(
                out=out, world=shapes, workers=workers, encoder=encoder, background_events=background_events
            )
            summary = build_fixture(cfg)
    except (ValueError, FileExistsError) as e:
        raise click.UsageError(str(e)) from e
    for line in summary.lines():
        click.echo(line)


COMMANDS: list[click.Command] = [fixture]
