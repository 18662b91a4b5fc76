"""Dataset cards: one YAML file per dataset, ``<name>.yaml``.

The package ships the cards of the supported datasets (``masra/cards/``, package data). A card name
is looked up in the folders of ``$MASRA_CARDS``, then ``./data/datasets`` (a user's own project),
then the shipped cards (:func:`card_search_dirs`); a path to a YAML file is taken as it is.

A card says where everything of one dataset lives and how its clips are cut. Relative paths in a
card are resolved against the card's ``root``; a relative ``root`` is resolved against the current
working directory (where the user's data is), wherever the card itself lives. Users point a card at
their own downloads by copying and editing it, by passing a card path instead of a name, or by
dotted overrides (``--set root=/data/qvh --set annotations.val=/x.jsonl``).

Example (abridged)::

    name: qvhighlights
    format: qvhighlights        # reader: qvhighlights | charades_txt | charades_jsonl | tacos
    root: data/qvhighlights
    annotations: {train: highlight_train_release.jsonl, val: highlight_val_release.jsonl}
    clip_len: 2.0
    max_clips: 75
    video_features: {slowfast: {dir: features/slowfast_features, dim: 2304, extractor: slowfast-r50},
                     clip: {dir: features/clip_features, dim: 512, extractor: clip-vit-b32}}
    temporal_endpoint: true
    text_features: {dir: features/clip_text_features, key: last_hidden_state, dim: 512}
    video_dir: videos
    prior_dir: priors

A video feature type may name the extractor that made it (``extractor``, a name of
:data:`masra.datasets.extractors.EXTRACTOR_DIMS`, the extractors :mod:`masra.features` builds) and
its weights (``model``: a folder, file or hub id; default the extractor's own); ``masra features
extract`` and raw-video prediction use them. Cards without them still load (their features can then
only be read, not made).

An annotation entry may be a list of files: the first that exists is used, e.g. QVHighlights'
``test: [highlight_test_with_gt.jsonl, highlight_test_release.jsonl]`` (the published labels when
present, else the unlabelled release).

A card may have no annotation files at all: a collection of your own videos with features and
priors but no labelled split, trained from its priors' events (docs/training.md, "Training without
labels"). Such a card may leave out ``format`` (then ``qvhighlights``, the reader of any annotation
file given later with ``--set annotations.SPLIT=FILE``); ``text_features`` needs only its ``dim``
(``dir`` defaults to ``features/text``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from masra.datasets.extractors import EXTRACTOR_DIMS

FORMATS = ("qvhighlights", "charades_txt", "charades_jsonl", "tacos")
# The reader of a card without a ``format`` key, allowed only when the card names no annotation file.
DEFAULT_FORMAT = "qvhighlights"
CARD_DIR_ENV = "MASRA_CARDS"
# Top-level keys that become DatasetCard fields.
FIELD_KEYS = frozenset(
    {
        "name", "format", "root", "annotations", "clip_len", "max_clips", "video_features",
        "text_features", "video_dir", "prior_dir", "temporal_endpoint", "durations",
    }
)  # fmt: skip
# Top-level keys kept in ``DatasetCard.extra`` and read by name elsewhere: the text encoder that made
# the query features, stage 1's settings (``priors``: model, backend, ...; which prior run stage 2
# trains with is the training config's ``priors_run``, not a card key), and the fixture's note on its
# Charades-STA form.
EXTRA_KEYS = frozenset({"text_encoder", "priors", "charades_txt"})
KNOWN_KEYS = FIELD_KEYS | EXTRA_KEYS

log = logging.getLogger(__name__)


def builtin_card_dir() -> Path:
    """The cards shipped inside the package (``masra/cards/``), wherever it is installed."""
    return Path(str(resources.files("masra").joinpath("cards")))


def card_search_dirs() -> list[tuple[str, Path]]:
    """Where a card name is looked up, in order, as (how errors name the place, folder).

    The folders of ``$MASRA_CARDS`` (separated by ``os.pathsep``), ``./data/datasets`` of the
    current folder, then the cards shipped with the package.
    """
    env = [Path(d) for d in os.environ.get(CARD_DIR_ENV, "").split(os.pathsep) if d]
    return [
        *((f"${CARD_DIR_ENV}", d) for d in env),
        ("the current folder's data/datasets", Path("data/datasets")),
        ("shipped with masra", builtin_card_dir()),
    ]


@dataclass(frozen=True)
class FeatureSource:
    """One video feature type: ``{dir}/{vid}.npz`` holding ``key`` of shape (L, dim).

    ``extractor`` names the registered extractor that made it (None: unknown, features can only be
    read); ``model`` its weights (None: the extractor's default).
    """

    name: str
    dir: Path
    dim: int
    key: str = "features"
    extractor: str | None = None
    model: str | None = None

    def __post_init__(self) -> None:
        if self.dim <= 0:
            raise ValueError(f"video feature type {self.name!r}: dim must be > 0, got {self.dim}")
        if self.extractor is None:
            if self.model is not None:
                raise ValueError(f"video feature type {self.name!r}: `model` given without an `extractor`")
            return
        if self.extractor not in EXTRACTOR_DIMS:
            raise ValueError(
                f"video feature type {self.name!r}: unknown extractor {self.extractor!r}; "
                f"known: {', '.join(sorted(EXTRACTOR_DIMS))}"
            )
        dim = EXTRACTOR_DIMS[self.extractor]
        if self.model is None and dim is not None and dim != self.dim:
            raise ValueError(
                f"video feature type {self.name!r}: extractor {self.extractor!r} makes {dim}-d "
                f"features, the card says dim {self.dim}"
            )


@dataclass(frozen=True)
class TextFeatureSource:
    """Query features: ``{dir}/qid{qid}.npz`` holding ``key`` (T, dim) and ``pooler_output`` (dim,)."""

    dir: Path
    dim: int
    key: str = "last_hidden_state"


@dataclass(frozen=True)
class DatasetCard:
    """A parsed, validated dataset card. Build with :func:`load_card`."""

    name: str
    format: str
    root: Path
    annotations: dict[str, Path]
    clip_len: float
    max_clips: int
    video_features: tuple[FeatureSource, ...]
    text_features: TextFeatureSource
    video_dir: Path
    prior_dir: Path
    temporal_endpoint: bool = True
    durations: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"card {self.name!r}: format must be one of {FORMATS}, got {self.format!r}")
        if self.clip_len <= 0:
            raise ValueError(f"card {self.name!r}: clip_len must be > 0, got {self.clip_len}")
        if self.max_clips <= 0:
            raise ValueError(f"card {self.name!r}: max_clips must be > 0, got {self.max_clips}")
        if not self.video_features:
            raise ValueError(f"card {self.name!r}: video_features must name at least one feature type")
        if self.format == "charades_txt" and self.durations is None:
            raise ValueError(f"card {self.name!r}: the charades_txt format needs a `durations` file")

    def annotation_path(self, split: str) -> Path:
        if split not in self.annotations:
            raise KeyError(f"card {self.name!r} has no split {split!r}; it has {sorted(self.annotations)}")
        return self.annotations[split]

    @property
    def video_dim(self) -> int:
        """Concatenated video feature width, temporal-endpoint features included."""
        return sum(f.dim for f in self.video_features) + (2 if self.temporal_endpoint else 0)


def find_card(name_or_path: str | os.PathLike[str]) -> Path:
    """Resolve a card name (``qvhighlights``) or a path to a YAML file.

    A name is looked up in :func:`card_search_dirs` order; the first ``<name>.yaml`` found wins.
    """
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml"):
        if not p.is_file():
            raise FileNotFoundError(f"dataset card not found: {p}")
        return p
    dirs = card_search_dirs()
    for _, d in dirs:
        cand = d / f"{name_or_path}.yaml"
        if cand.is_file():
            return cand
    known = sorted({c.stem for _, d in dirs if d.is_dir() for c in d.glob("*.yaml")})
    looked = "; ".join(f"{d.absolute()} ({label})" for label, d in dirs)
    raise FileNotFoundError(
        f"no dataset card named {name_or_path!r} (looked for {name_or_path}.yaml in: {looked}); "
        f"known cards: {', '.join(known) or 'none'}"
    )


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    """Set ``tree["a"]["b"] = value`` for ``key = "a.b"``, creating mappings on the way."""
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        nxt = node.setdefault(part, {})
        if not isinstance(nxt, dict):
            raise ValueError(f"override {key!r}: {part!r} is not a mapping")
        node = nxt
    node[parts[-1]] = value


def parse_overrides(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["root=/x", "clip_len=2"]`` -> ``{"root": "/x", "clip_len": 2}`` (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key=value")
        k, v = item.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


def load_card(name_or_path: str | os.PathLike[str], overrides: dict[str, Any] | None = None) -> DatasetCard:
    """Load, override and validate a dataset card."""
    path = find_card(name_or_path)
    with open(path, encoding="utf-8") as f:
        raw = yaml.safe_load(f) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a dataset card must be a YAML mapping")
    unknown_file_keys = sorted(set(raw) - KNOWN_KEYS)
    if unknown_file_keys:  # a user's own notes are allowed, but a misspelt key must not pass unseen
        log.warning(
            "%s: unknown card keys %s are kept but not used; known keys: %s",
            path, unknown_file_keys, ", ".join(sorted(KNOWN_KEYS)),
        )  # fmt: skip
    for k, v in (overrides or {}).items():
        top = k.split(".", 1)[0]
        if top not in KNOWN_KEYS and top not in raw:
            raise ValueError(
                f"card override {k}={v!r}: {top!r} is not a card key; "
                f"known keys: {', '.join(sorted(KNOWN_KEYS))}"
            )
        set_dotted(raw, k, v)
    _drop_prior_run(raw, path)
    try:
        root = Path(raw.get("root", "."))

        def rel(p: str | None) -> Path:
            q = Path(str(p))
            return q if q.is_absolute() else root / q

        def first_existing(p: str | list[str]) -> Path:
            options = [rel(x) for x in (p if isinstance(p, list) else [p])]
            if not options:
                raise ValueError(f"{path}: an annotation entry lists no file")
            return next((o for o in options if o.is_file()), options[0])

        def optional_str(spec: dict[str, Any], key: str) -> str | None:
            return None if spec.get(key) is None else str(spec[key])

        def source(n: str, spec: dict[str, Any]) -> FeatureSource:
            return FeatureSource(
                name=n,
                dir=rel(spec["dir"]),
                dim=int(spec["dim"]),
                key=spec.get("key", "features"),
                extractor=optional_str(spec, "extractor"),
                model=optional_str(spec, "model"),
            )

        feats = tuple(source(n, spec) for n, spec in (raw.get("video_features") or {}).items())
        tf = raw["text_features"]
        annotations = raw.get("annotations") or {}
        fmt = raw["format"] if annotations or "format" in raw else DEFAULT_FORMAT
        return DatasetCard(
            name=str(raw.get("name", path.stem)),
            format=str(fmt),
            root=root,
            annotations={s: first_existing(p) for s, p in annotations.items()},
            clip_len=float(raw["clip_len"]),
            max_clips=int(raw["max_clips"]),
            video_features=feats,
            text_features=TextFeatureSource(
                dir=rel(tf.get("dir", "features/text")),
                dim=int(tf["dim"]),
                key=tf.get("key", "last_hidden_state"),
            ),
            video_dir=rel(raw.get("video_dir", "videos")),
            prior_dir=rel(raw.get("prior_dir", "priors")),
            temporal_endpoint=bool(raw.get("temporal_endpoint", True)),
            durations=rel(raw["durations"]) if raw.get("durations") else None,
            extra={k: v for k, v in raw.items() if k not in FIELD_KEYS},
        )
    except KeyError as e:
        raise ValueError(f"{path}: dataset card lacks required key {e}") from None


def _drop_prior_run(raw: dict[str, Any], path: Path) -> None:
    """Drop ``priors.run``, once documented as stage 2's default prior run and never read, with a warning.

    The prior run stage 2 trains with is the training config's ``priors_run`` (``masra train
    --priors-run RUN``); a card says where runs live (``prior_dir``), not which one to train with.
    """
    settings = raw.get("priors")
    if isinstance(settings, dict) and "run" in settings:
        log.warning(
            "%s: card key priors.run (%r) is not read: stage 2 trains with the training config's "
            "priors_run (or `masra train --priors-run RUN`)",
            path, settings["run"],
        )  # fmt: skip
        raw["priors"] = {k: v for k, v in settings.items() if k != "run"}
