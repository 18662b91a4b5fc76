"""What a run trains on: the train split's labelled queries and, when on, the priors' events as queries.

:func:`train_sources` checks the card's splits against the config and reads the labelled queries or,
for a card without an annotation file for ``train_split`` (a collection of one's own videos), the
prior run's videos that have features. :func:`run_pseudo_queries` turns the prior run's events of
those videos into pseudo-queries (:mod:`masra.grounding.data.pseudo`); :func:`pseudo_summary` is what
``summary.json`` and every checkpoint's ``config.json`` record of them, and :func:`log_pseudo` says
how the run trains (``training from priors only (...)`` without a labelled query).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from masra.datasets.card import DatasetCard
from masra.datasets.features import video_path
from masra.datasets.readers import load_queries
from masra.datasets.types import Query
from masra.grounding.config import TrainConfig
from masra.grounding.data.pseudo import PriorEvents, PseudoQuerySet, load_pseudo_queries, read_prior_events
from masra.grounding.data.report import PseudoQueryReport
from masra.grounding.infer.inputs import default_text_encoder
from masra.priors.run import PriorRun
from masra.priors.table import prior_source

log = logging.getLogger(__name__)

__all__ = ["TrainSources", "log_pseudo", "pseudo_summary", "run_pseudo_queries", "train_sources"]


@dataclass
class TrainSources:
    """The train split of a run before it is made resident.

    Attributes:
        labelled_split: the card has an annotation file for ``train_split``.
        queries: its labelled queries (empty without the file).
        store_videos: videos the feature store holds without queries: without the file, the prior
            run's videos that have every feature file (the training videos).
        run: the prior run ``priors_run``; events: its events when already read (else None).
        report: the pseudo-query counts made so far (videos left out for want of features).
    """

    labelled_split: bool
    queries: list[Query]
    store_videos: list[str]
    run: PriorRun
    events: dict[str, PriorEvents] | None = None
    report: PseudoQueryReport = field(default_factory=PseudoQueryReport)

    @property
    def videos(self) -> list[str]:
        """The training videos, in order: those of the labelled queries, else ``store_videos``."""
        return list(dict.fromkeys(q.vid for q in self.queries)) if self.labelled_split else self.store_videos


def _check_splits(cfg: TrainConfig, card: DatasetCard) -> bool:
    """Whether the card has an annotation file for ``train_split``; refuses what cannot train.

    A card without one trains only from its priors (``label_fraction: 0`` with pseudo-queries on);
    an ``eval_split`` the card has no file for is refused naming ``eval_split: null``.
    """
    labelled = cfg.train_split in card.annotations
    if not labelled and not (cfg.pseudo_queries.enabled and cfg.label_fraction == 0):
        raise ValueError(
            f"card {card.name!r} has no annotation file for train split {cfg.train_split!r} (it has "
            f"{sorted(card.annotations) or 'none'}): to train from its priors' events alone, set "
            "label_fraction: 0 and pseudo_queries.weight > 0 (docs/training.md, 'Training without labels')"
        )
    if cfg.eval_split is not None and cfg.eval_split not in card.annotations:
        raise ValueError(
            f"card {card.name!r} has no annotation file for eval split {cfg.eval_split!r} (it has "
            f"{sorted(card.annotations) or 'none'}): set eval_split: null to train without evaluation "
            "(the best checkpoint is then the last), or name a split the card has"
        )
    return labelled


def _videos_with_features(card: DatasetCard, videos: list[str], report: PseudoQueryReport) -> list[str]:
    """The ``videos`` that have every feature file of the card; the others are counted in ``report``
    (``videos_without_features``) and warned about."""
    have = [v for v in videos if all(video_path(src, v).is_file() for src in card.video_features)]
    kept = set(have)
    missing = [v for v in videos if v not in kept]
    report.videos_without_features = len(missing)
    report.without_features_ids = missing[:20]
    if missing:
        log.warning(
            "%d of %d prior videos have no feature files under %s and are left out, e.g. %s "
            "(run `masra features extract`)",
            len(missing), len(videos), card.video_features[0].dir, ", ".join(missing[:3]),
        )  # fmt: skip
    if not have:
        raise ValueError(
            f"none of the {len(videos)} videos of the prior run has feature files under "
            f"{card.video_features[0].dir}: extract them first (`masra features extract --dataset {card.name}`)"
        )
    return have


def train_sources(cfg: TrainConfig, card: DatasetCard) -> TrainSources:
    """The labelled queries of ``train_split``, or, for a card without its file, the prior run's videos
    with features (see :class:`TrainSources`). Raises ValueError for splits that cannot train."""
    run = PriorRun(card.prior_dir, cfg.priors_run)
    if _check_splits(cfg, card):
        queries, _ = load_queries(card, cfg.train_split)
        return TrainSources(True, queries, [], run)
    report = PseudoQueryReport()
    events = read_prior_events(run.dir)
    videos = _videos_with_features(card, list(events), report)
    return TrainSources(False, [], videos, run, events, report)


def run_pseudo_queries(cfg: TrainConfig, card: DatasetCard, sources: TrainSources) -> PseudoQuerySet:
    """The pseudo-queries of the training videos, their texts encoded with the card's query text
    encoder (cached beside the prior run). Raises ValueError when none is left and the run has no
    labelled query."""
    pseudo = load_pseudo_queries(
        sources.run,
        sources.videos,
        cfg.pseudo_queries,
        encoder=default_text_encoder(card),
        dim=card.text_features.dim,
        events=sources.events,
        report=sources.report,
    )
    if cfg.label_fraction == 0 and not len(pseudo):
        raise ValueError(
            f"no pseudo-query to train on from prior run {sources.run.dir}: {pseudo.report.summary()}; "
            "loosen the pseudo_queries rules (min_len, max_len_share, generic_share, ...)"
        )
    return pseudo


def pseudo_summary(
    cfg: TrainConfig, sources: TrainSources, pseudo: PseudoQuerySet, labelled: int, rows: int
) -> dict[str, Any]:
    """What ``summary.json`` and the checkpoints record: the run, its source, the encoder, the
    ``labelled`` queries trained on, the pseudo-query ``rows`` of the split, ``per_step`` (filled in
    once the trainer has it) and ``priors_only``."""
    return {
        "run": cfg.priors_run,
        "source": prior_source(sources.run.dir),
        "encoder": pseudo.texts.encoder,
        "labelled_queries": labelled,
        "pseudo_queries": rows,
        "per_step": None,
        "priors_only": labelled == 0,
    }


def log_pseudo(cfg: TrainConfig, card: DatasetCard, sources: TrainSources, info: dict[str, Any]) -> None:
    """One log line saying how the run uses its pseudo-queries (from priors only, or with labels)."""
    if info["priors_only"]:
        why = (
            "label_fraction 0"
            if sources.labelled_split
            else f"card {card.name!r} has no annotation file for split {cfg.train_split!r}"
        )
        log.info(
            "training from priors only (%s): no labelled query; %d pseudo-queries (prior events as "
            "queries) from prior run %s (source=%s), %d per step",
            why, info["pseudo_queries"], sources.run.dir, info["source"], info["per_step"],
        )  # fmt: skip
    else:
        log.info(
            "pseudo-queries: %d from prior run %s (source=%s), %d per step on top of each step's labelled "
            "queries (%d labelled queries in all)",
            info["pseudo_queries"], sources.run.dir, info["source"], info["per_step"],
            info["labelled_queries"],
        )  # fmt: skip
