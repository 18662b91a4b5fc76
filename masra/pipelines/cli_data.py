"""`masra data ...`: annotation statistics and the training feature store.

Examples::

    masra data stats --dataset qvhighlights --split val --set root=../shared/datasets/qvhighlights
    masra data build-store --dataset fixture --split train --split val
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from masra.datasets.card import DatasetCard, load_card, parse_overrides
from masra.datasets.lengths import check_lengths, feature_lengths, warn_lengths
from masra.datasets.readers import load_queries
from masra.datasets.stats import split_stats

_DATASET = click.option(
    "--dataset",
    "-d",
    required=True,
    help="Card name (NAME.yaml in $MASRA_CARDS, ./data/datasets or the shipped cards) or a path to a card YAML.",
)
_SET = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a card key (dotted, repeatable): --set root=/data/qvh --set annotations.val=/x.jsonl",
)


def _card(dataset: str, overrides: tuple[str, ...]) -> DatasetCard:
    try:
        return load_card(dataset, parse_overrides(overrides))
    except (ValueError, FileNotFoundError) as e:
        raise click.ClickException(str(e)) from None


def _message(e: Exception) -> str:
    """The text of an error; KeyError's str() would add quotes around it."""
    return str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)


@click.group("data")
def data() -> None:
    """Dataset statistics and the training feature store."""


@data.command("stats")
@_DATASET
@click.option("--split", "-s", required=True, help="Split name of the card (train, val, test, ...).")
@click.option(
    "--annotations",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Read this annotation file instead of the card's file for the split.",
)
@_SET
def stats(dataset: str, split: str, annotations: Path | None, overrides: tuple[str, ...]) -> None:
    """Print JSON statistics of one split: queries, videos, windows, durations, window lengths.

    ``feature_lengths`` compares each video's annotated duration with its feature length (npz headers
    of the card's video features; videos without files are counted, not read); see docs/datasets.md.
    """
    card = _card(dataset, overrides)
    try:
        queries, report = load_queries(card, split, annotations)
        durations: dict[str, float] = {}
        for q in queries:
            durations.setdefault(q.vid, q.duration)
        check = check_lengths(durations, feature_lengths(card, durations), card.clip_len)
    except (ValueError, KeyError, FileNotFoundError) as e:
        raise click.ClickException(_message(e)) from None
    warn_lengths(check, f"split {split!r}")
    out = {"split": split, **split_stats(queries, report, card), "feature_lengths": check.to_dict()}
    click.echo(json.dumps(out, indent=2))


@data.command("build-store")
@_DATASET
@click.option("--split", "-s", "splits", required=True, multiple=True, help="Split(s) to store (repeatable).")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Store directory (default: {card root}/store).",
)
@click.option("--dtype", type=click.Choice(["float16", "float32"]), default="float16", show_default=True)
@_SET
def build_store(
    dataset: str, splits: tuple[str, ...], out: Path | None, dtype: str, overrides: tuple[str, ...]
) -> None:
    """Convert the per-video npz features of the splits into one memory-mapped store (run once)."""
    from masra.datasets.store import FeatureStore  # lazy: pyarrow, off `masra --help`
    from masra.datasets.store_build import build_feature_store

    card = _card(dataset, overrides)
    try:
        path = build_feature_store(card, list(splits), out, dtype=dtype)
    except (ValueError, KeyError, FileNotFoundError) as e:
        raise click.ClickException(_message(e)) from None
    store = FeatureStore.open(path)
    summary = {
        "store": str(path),
        "videos": len(store.video_ids),
        "clips": int(store.video_data.shape[0]),
        "queries": len(store.qids),
        "video_dim": store.video_dim,
        "text_dim": store.text_dim,
        "dtype": str(store.dtype),
    }
    click.echo(json.dumps(summary, indent=2))


COMMANDS: list[click.Command] = [data]
