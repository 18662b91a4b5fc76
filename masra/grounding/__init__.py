"""Stage 2: the grounding model, its training and its inference.

The public API, imported lazily (``import masra.grounding`` loads no torch)::

    from masra.grounding import Grounder, run_training, load_train_config

Layout: ``config/`` (typed configs), ``spans.py`` (span maths), ``model/``, ``losses/``, ``data/``
(resident split, batches), ``train/`` (trainer, run recipe, a run's checkpoints), ``checkpoint.py``
(the checkpoint format and its reader), ``infer/`` (the one path from outputs to predictions, the
Grounder, checkpoint evaluation), ``submission.py`` (the prediction file format) and ``metrics/``
(the standard evaluation).

After training, one path: :func:`read_checkpoint` reads a checkpoint as typed objects and
:func:`run_checkpoint` turns it and a split (or one video) into predictions and metrics.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_PUBLIC = {
    "Scorer": "masra.grounding.train.trainer",
    "foreground_prob": "masra.grounding.infer.decode",
    "weighted_total": "masra.grounding.losses",
    "TrainStep": "masra.grounding.train.step",
    "PriorBatch": "masra.grounding.data.batch",
    "Batch": "masra.grounding.data.batch",
    "VideoBatch": "masra.grounding.data.batch",
    "epoch_batches": "masra.grounding.data.order",
    "steps_per_epoch": "masra.grounding.data.order",
    "read_prior_events": "masra.grounding.data.pseudo",
    "select_pseudo_queries": "masra.grounding.data.pseudo",
    "Grounder": "masra.grounding.infer.grounder",
    "GrounderConfig": "masra.grounding.infer.config",
    "Grounding": "masra.grounding.infer.result",
    "load_feature_npz": "masra.grounding.infer.inputs",
    "predictions_from_outputs": "masra.grounding.infer.decode",
    "run_checkpoint": "masra.grounding.infer.run",
    "SplitInput": "masra.grounding.infer.run",
    "VideoInput": "masra.grounding.infer.run",
    "Outcome": "masra.grounding.infer.run",
    "evaluate_checkpoint": "masra.grounding.infer.run",
    "predict_queries": "masra.grounding.infer.run",
    "card_scoring": "masra.grounding.infer.evaluate",
    "Checkpoint": "masra.grounding.checkpoint",
    "read_checkpoint": "masra.grounding.checkpoint",
    "Trainer": "masra.grounding.train.trainer",
    "run_training": "masra.grounding.train.recipe",
    "build_configs": "masra.grounding.train.recipe",
    "build_split": "masra.grounding.data.resident",
    "ResidentSplit": "masra.grounding.data.resident",
    "ModelConfig": "masra.grounding.config",
    "LossConfig": "masra.grounding.config",
    "TrainConfig": "masra.grounding.config",
    "PostprocessConfig": "masra.grounding.config",
    "load_train_config": "masra.grounding.config",
    "build_model": "masra.grounding.model",
    "build_criterion": "masra.grounding.losses",
    "load_checkpoint": "masra.grounding.checkpoint",
    "evaluate_submission": "masra.grounding.metrics",
}

__all__ = [
    "Batch",
    "Checkpoint",
    "Grounder",
    "GrounderConfig",
    "Grounding",
    "LossConfig",
    "ModelConfig",
    "Outcome",
    "PostprocessConfig",
    "PriorBatch",
    "ResidentSplit",
    "Scorer",
    "SplitInput",
    "TrainConfig",
    "TrainStep",
    "Trainer",
    "VideoBatch",
    "VideoInput",
    "build_configs",
    "build_criterion",
    "build_model",
    "build_split",
    "card_scoring",
    "epoch_batches",
    "evaluate_checkpoint",
    "evaluate_submission",
    "foreground_prob",
    "load_checkpoint",
    "load_feature_npz",
    "load_train_config",
    "predict_queries",
    "predictions_from_outputs",
    "read_checkpoint",
    "read_prior_events",
    "run_checkpoint",
    "run_training",
    "select_pseudo_queries",
    "steps_per_epoch",
    "weighted_total",
]

if TYPE_CHECKING:
    from masra.grounding.checkpoint import Checkpoint, load_checkpoint, read_checkpoint
    from masra.grounding.config import (
        LossConfig,
        ModelConfig,
        PostprocessConfig,
        TrainConfig,
        load_train_config,
    )
    from masra.grounding.data.batch import Batch, PriorBatch, VideoBatch
    from masra.grounding.data.order import epoch_batches, steps_per_epoch
    from masra.grounding.data.pseudo import read_prior_events, select_pseudo_queries
    from masra.grounding.data.resident import ResidentSplit, build_split
    from masra.grounding.infer.config import GrounderConfig
    from masra.grounding.infer.decode import foreground_prob, predictions_from_outputs
    from masra.grounding.infer.evaluate import card_scoring
    from masra.grounding.infer.grounder import Grounder
    from masra.grounding.infer.inputs import load_feature_npz
    from masra.grounding.infer.result import Grounding
    from masra.grounding.infer.run import (
        Outcome,
        SplitInput,
        VideoInput,
        evaluate_checkpoint,
        predict_queries,
        run_checkpoint,
    )
    from masra.grounding.losses import build_criterion, weighted_total
    from masra.grounding.metrics import evaluate_submission
    from masra.grounding.model import build_model
    from masra.grounding.train.recipe import build_configs, run_training
    from masra.grounding.train.step import TrainStep
    from masra.grounding.train.trainer import Scorer, Trainer


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'masra.grounding' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
