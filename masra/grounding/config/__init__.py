"""Every typed config of the grounding stage, validated where it is built.

- :mod:`~masra.grounding.config.model`: :class:`ModelConfig` (the architecture and the MASRA parts)
  and :class:`LossConfig` (loss weights), both stored in a checkpoint's ``config.json``;
- :mod:`~masra.grounding.config.train`: :class:`TrainConfig` (a run, loaded from a config file,
  ``--config`` or ``<dataset>.yaml`` found by :func:`find_train_config`, with ``--set`` overrides)
  and :class:`PostprocessConfig` (model outputs to windows);
- :mod:`~masra.grounding.config.pseudo`: :class:`PseudoQueryConfig` (prior events as training queries);
- :mod:`~masra.grounding.config.checks`: the JSON round trip and the value-type checks they share.
"""

from masra.grounding.config.checks import check_field_types, check_types, type_problem
from masra.grounding.config.model import PRIOR_PLACEMENTS, LossConfig, ModelConfig
from masra.grounding.config.pseudo import PseudoQueryConfig
from masra.grounding.config.train import (
    MASRA_PARTS,
    PostprocessConfig,
    TrainConfig,
    builtin_config_dir,
    config_search_dirs,
    find_train_config,
    load_train_config,
)

__all__ = [
    "MASRA_PARTS",
    "PRIOR_PLACEMENTS",
    "LossConfig",
    "ModelConfig",
    "PostprocessConfig",
    "PseudoQueryConfig",
    "TrainConfig",
    "builtin_config_dir",
    "check_field_types",
    "check_types",
    "config_search_dirs",
    "find_train_config",
    "load_train_config",
    "type_problem",
]
