"""The training configuration: one typed, validated dataclass loaded from ``<dataset>.yaml``.

The config file is ``--config FILE``, else ``<dataset>.yaml`` from the folders of ``$MASRA_CONFIGS``,
``./configs`` or the configs shipped with the package (``masra/configs/``; every shipped card has
one), in that order (:func:`config_search_dirs`). A dataset without a config file is an error naming
every place looked, unless the caller asks for the built-in defaults (``no_config=True``, ``masra
train --no-config``): a run never switches to other hyperparameters unnoticed.

A config file holds any of the :class:`TrainConfig` fields; ``model`` and ``loss`` are mappings of
:class:`~masra.grounding.config.ModelConfig` / :class:`~masra.grounding.config.LossConfig` keys and
``card`` a mapping of dataset-card overrides. Command-line overrides are dotted keys applied on top
(``epochs=50``, ``model.hidden_dim=128``, ``loss.w_lrca=0.5``, ``card.root=/data/qvh``).

Every value's type is checked at load against the dataclass field types (``model``, ``loss``,
``postprocess`` and ``pseudo_queries`` keys too): a bool is not an int, an int is fine for a float,
null only where the field is optional. A wrong type is a ValueError naming the key, the file (or
``--set``) and the value, e.g. ``priors_run: true`` (YAML's boolean, not a run named "true": quote it).

Example::

    dataset: fixture
    epochs: 40
    batch_size: 32
    eval_every: 5
    best_metric: MR-full-R1@0.5
    model: {hidden_dim: 128}
"""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from masra.datasets.card import find_card, set_dotted
from masra.grounding.config.checks import check_field_types, type_problem
from masra.grounding.config.model import LossConfig, ModelConfig
from masra.grounding.config.pseudo import PseudoQueryConfig

log = logging.getLogger(__name__)

__all__ = [
    "MASRA_PARTS",
    "PostprocessConfig",
    "TrainConfig",
    "builtin_config_dir",
    "config_search_dirs",
    "find_train_config",
    "load_train_config",
]

MIXED_PRECISION = ("auto", "no", "bf16", "fp16")
SCHEDULERS = ("constant", "cosine", "step")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# ModelConfig switches of the five MASRA parts; ``masra: false`` turns them all off.
MASRA_PARTS = ("esta", "lrca", "sge", "sora", "dai")
CONFIG_DIR_ENV = "MASRA_CONFIGS"


@dataclass
class PostprocessConfig:
    """How predicted spans become ranked windows in seconds (see :mod:`masra.grounding.infer.decode`).

    Attributes:
        top_k: windows kept per query after NMS.
        snap: round window ends outward to clip boundaries.
        nms_iou: temporal NMS threshold; None disables NMS.
        saliency_weight: blend of each window's score with the predicted saliency over it (0 keeps
            the foreground probability alone; see ``postprocess.saliency_rescore``).
        proposals: add the predicted saliency's high runs to the decoder's windows and rank all by
            saliency contrast (``postprocess.saliency_proposals``; ``saliency_weight`` is then unused).
    """

    top_k: int = 10
    snap: bool = False
    nms_iou: float | None = None
    saliency_weight: float = 0.0
    proposals: bool = False

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.top_k < 1:
            raise ValueError(f"postprocess.top_k must be >= 1, got {self.top_k}")
        if self.nms_iou is not None and not 0.0 < self.nms_iou <= 1.0:
            raise ValueError(f"postprocess.nms_iou must be in (0, 1] or null, got {self.nms_iou}")
        if not 0.0 <= self.saliency_weight <= 1.0:
            raise ValueError(f"postprocess.saliency_weight must be in [0, 1], got {self.saliency_weight}")


@dataclass
class TrainConfig:
    """Everything a training run needs besides the model and loss configs' own fields.

    Attributes:
        dataset: dataset card name or path (:func:`masra.datasets.card.find_card`).
        train_split / eval_split: card splits to train on and to evaluate on (``eval_split`` may be
            null to train without evaluation; the best checkpoint is then the last one).
        epochs: training epochs.
        batch_size: global batch size (split evenly over processes; must be a multiple of them).
        eval_batch_size: global batch size of evaluation.
        lr / weight_decay: AdamW learning rate and weight decay.
        grad_clip: max global gradient norm; 0 disables clipping.
        scheduler: ``constant``, ``cosine`` (to 0 at the last step) or ``step`` (x0.1 at
            ``lr_drop_epoch``), after ``warmup_epochs`` of linear warm-up.
        eval_every: evaluate every K epochs (and after the last epoch).
        best_metric: key of the metrics' ``brief`` dict that selects the best checkpoint (higher is
            better).
        seed: seeds the weights, dropout and each epoch's order (a function of seed and epoch).
        mixed_precision: ``auto`` (bf16 on CUDA, none on CPU), ``no``, ``bf16`` or ``fp16``. The
            resident features are stored in the matching precision.
        deterministic: ``torch.use_deterministic_algorithms(True)`` (exact resume on CPU).
        max_clips: clip cap for training (longer videos are cut); None takes the card's.
        max_text_len: query token cap T.
        masra: master switch of the MASRA parts (false = the baseline).
        priors_run / priors_encoder: prior embeddings are read from
            ``{card.prior_dir}/{priors_run}/embeddings/{priors_encoder}``.
        allow_partial_priors: videos without priors train without prior losses instead of failing.
        label_fraction: share of the train split's queries used as labelled (a seeded choice,
            nested: the queries of a smaller fraction are among those of a larger one, for one seed).
            Priors still cover every train video. 0 (only with ``pseudo_queries`` on) trains on
            pseudo-queries alone; so does a card without an annotation file for ``train_split``.
        pseudo_queries: prior events as training queries (:class:`PseudoQueryConfig`; ``weight``
            0, the default, keeps them off).
        prior_video_ratio: prior-only videos per step, as a share of ``batch_size``: that many train
            videos (drawn from all of them, with or without a labelled query) add their prior losses
            to each step's. 0 turns it off; needs ``model.prior_placement`` ``video``.
        model / loss: overrides of ModelConfig / LossConfig fields (dims come from the card).
        card: dataset-card overrides (dotted keys allowed).
        postprocess: PostprocessConfig fields used at evaluation.
        log_every: steps between train-log lines.
        compile: wrap the model in ``torch.compile``.
        compile_mode: ``torch.compile``'s mode (None: its default; ``reduce-overhead`` records CUDA
            graphs, which wants ``pad_to_max``).
        pad_to_max: pad every split (so every batch) to ``max_clips`` (or the card's) clips and
            ``max_text_len`` tokens instead of to the split's longest video and query: one input
            shape for ``torch.compile`` (the last, smaller batch of an epoch is a second one). The
            padding is masked, so losses equal the default padding's up to float rounding.
        cpu_threads: torch intra-op threads when training on the CPU (None keeps torch's default).
            Small models train fastest with 1 thread on a busy machine (docs/training.md).
        early_stop_patience: stop once ``best_metric`` on ``eval_split`` has not improved for this
            many evaluations in a row (None: train all ``epochs``). Evaluate on a held-out part of
            train, never on the split you report. ``early_stop_min_epochs``: no early stop before
            this many epochs (a decoder learns after the saliency head has settled).
    """

    dataset: str = "fixture"
    train_split: str = "train"
    eval_split: str | None = "val"
    epochs: int = 200
    batch_size: int = 32
    eval_batch_size: int = 256
    lr: float = 1e-4
    weight_decay: float = 1e-4
    grad_clip: float = 0.1
    scheduler: str = "constant"
    warmup_epochs: float = 0.0
    lr_drop_epoch: int | None = None
    eval_every: int = 5
    best_metric: str = "MR-full-mAP"
    seed: int = 2018
    mixed_precision: str = "auto"
    deterministic: bool = False
    max_clips: int | None = None
    max_text_len: int = 32
    masra: bool = True
    priors_run: str = "reference"
    priors_encoder: str = "minilm"
    allow_partial_priors: bool = False
    label_fraction: float = 1.0
    prior_video_ratio: float = 0.0
    pseudo_queries: PseudoQueryConfig = field(default_factory=PseudoQueryConfig)
    model: dict[str, Any] = field(default_factory=dict)
    loss: dict[str, Any] = field(default_factory=dict)
    card: dict[str, Any] = field(default_factory=dict)
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    log_every: int = 50
    compile: bool = False
    compile_mode: str | None = None
    pad_to_max: bool = False
    cpu_threads: int | None = None
    early_stop_patience: int | None = None
    early_stop_min_epochs: int = 0

    def __post_init__(self) -> None:
        check_field_types(self)
        if isinstance(self.postprocess, dict):
            self.postprocess = PostprocessConfig(**self.postprocess)
        if isinstance(self.pseudo_queries, dict):
            self.pseudo_queries = PseudoQueryConfig.from_dict(self.pseudo_queries)
        for name in ("epochs", "batch_size", "eval_batch_size", "eval_every", "max_text_len", "log_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be an integer >= 1, got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"TrainConfig.lr must be > 0, got {self.lr!r}")
        for name in ("weight_decay", "grad_clip", "warmup_epochs"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"TrainConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        if self.warmup_epochs >= self.epochs:
            raise ValueError(
                f"TrainConfig.warmup_epochs ({self.warmup_epochs}) must be < epochs ({self.epochs})"
            )
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"TrainConfig.scheduler must be one of {SCHEDULERS}, got {self.scheduler!r}")
        if self.scheduler == "step" and (self.lr_drop_epoch is None or self.lr_drop_epoch < 1):
            raise ValueError("TrainConfig.scheduler 'step' needs lr_drop_epoch >= 1")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(
                f"TrainConfig.mixed_precision must be one of {MIXED_PRECISION}, got {self.mixed_precision!r}"
            )
        if self.compile_mode is not None and self.compile_mode not in COMPILE_MODES:
            raise ValueError(
                f"TrainConfig.compile_mode must be one of {COMPILE_MODES} or null, got {self.compile_mode!r}"
            )
        if self.early_stop_patience is not None and self.early_stop_patience < 1:
            raise ValueError(
                f"TrainConfig.early_stop_patience must be >= 1 or null, got {self.early_stop_patience}"
            )
        if not isinstance(self.early_stop_min_epochs, int) or self.early_stop_min_epochs < 0:
            raise ValueError(
                f"TrainConfig.early_stop_min_epochs must be an integer >= 0, got {self.early_stop_min_epochs!r}"
            )
        if self.early_stop_patience is not None and self.eval_split is None:
            raise ValueError("TrainConfig.early_stop_patience needs an eval_split to watch")
        if self.cpu_threads is not None and self.cpu_threads < 1:
            raise ValueError(f"TrainConfig.cpu_threads must be >= 1 or null, got {self.cpu_threads}")
        if self.max_clips is not None and self.max_clips < 1:
            raise ValueError(f"TrainConfig.max_clips must be >= 1 or null, got {self.max_clips}")
        if not 0.0 <= self.label_fraction <= 1.0:
            raise ValueError(f"TrainConfig.label_fraction must be in [0, 1], got {self.label_fraction!r}")
        if self.label_fraction == 0 and not self.pseudo_queries.enabled:
            raise ValueError(
                "TrainConfig.label_fraction 0 trains on prior events as queries alone: set "
                "pseudo_queries.weight > 0 (e.g. --set pseudo_queries.weight=1), or a fraction in (0, 1]"
            )
        if not self.prior_video_ratio >= 0:
            raise ValueError(f"TrainConfig.prior_video_ratio must be >= 0, got {self.prior_video_ratio!r}")
        if self.prior_video_ratio > 0 and self.model.get("prior_placement", "video") != "video":
            raise ValueError(
                "TrainConfig.prior_video_ratio > 0 needs model.prior_placement 'video' (with 'cross' the "
                "prior losses read query-conditioned features, which a video without a query lacks)"
            )
        if self.train_split == self.eval_split:
            raise ValueError(f"TrainConfig: train_split and eval_split are both {self.train_split!r}")
        for name in ("model", "loss", "card"):
            if not isinstance(getattr(self, name), dict):
                raise ValueError(f"TrainConfig.{name} must be a mapping, got {getattr(self, name)!r}")
        for key in ("video_dim", "text_dim"):
            if key in self.model:
                raise ValueError(f"TrainConfig.model.{key} comes from the dataset card; do not set it")
        if not self.masra:
            on = [p for p in MASRA_PARTS if self.model.get(f"use_{p}")]
            if on:
                raise ValueError(f"TrainConfig: masra is false but model switches {on} are on")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"TrainConfig: unknown keys {unknown}; known keys are {sorted(known)}")
        return cls(**copy.deepcopy(data))

    def model_switches(self) -> dict[str, bool]:
        """``use_<part>`` values for ModelConfig: all off without MASRA, else the config's (default on)."""
        return {f"use_{p}": bool(self.masra and self.model.get(f"use_{p}", True)) for p in MASRA_PARTS}

    def resolved_mixed_precision(self, cuda: bool) -> str:
        if self.mixed_precision == "auto":
            return "bf16" if cuda else "no"
        return self.mixed_precision


def builtin_config_dir() -> Path:
    """The training configs shipped inside the package (``masra/configs/``), wherever it is installed."""
    return Path(str(resources.files("masra").joinpath("configs")))


def config_search_dirs() -> list[tuple[str, Path]]:
    """Where ``<dataset>.yaml`` is looked up, in order, as (how errors name the place, folder).

    The folders of ``$MASRA_CONFIGS`` (separated by ``os.pathsep``), ``./configs`` of the current
    folder, then the configs shipped with the package.
    """
    env = [Path(d) for d in os.environ.get(CONFIG_DIR_ENV, "").split(os.pathsep) if d]
    return [
        *((f"${CONFIG_DIR_ENV}", d) for d in env),
        ("the current folder's configs", Path("configs")),
        ("shipped with masra", builtin_config_dir()),
    ]


def find_train_config(dataset: str) -> Path | None:
    """The first ``<stem of dataset>.yaml`` of :func:`config_search_dirs`, or None."""
    stem = Path(dataset).stem
    for _, d in config_search_dirs():
        cand = d / f"{stem}.yaml"
        if cand.is_file():
            return cand
    return None


def _no_config_error(dataset: str) -> FileNotFoundError:
    stem = Path(dataset).stem
    looked = "; ".join(f"{(d / f'{stem}.yaml').absolute()} ({label})" for label, d in config_search_dirs())
    return FileNotFoundError(
        f"no training config for dataset {dataset!r}: looked for {looked}. Pass --config FILE, put "
        f"{stem}.yaml in one of these folders (or a folder named by ${CONFIG_DIR_ENV}), or pass "
        "--no-config to train with the built-in defaults"
    )


def load_train_config(
    dataset: str,
    config_path: str | os.PathLike[str] | None = None,
    overrides: dict[str, Any] | None = None,
    *,
    no_config: bool = False,
) -> TrainConfig:
    """Defaults <- the config file (``config_path`` or ``<dataset>.yaml``) <- dotted overrides.

    Without ``config_path`` the file is :func:`find_train_config`'s; none found raises
    FileNotFoundError naming every place looked (after the card lookup's own error when the dataset
    names no card). ``no_config=True`` reads no file: the built-in defaults and the overrides only.
    ``card.*`` overrides keep their dots below ``card`` (the card loader resolves them).
    """
    if no_config and config_path is not None:
        raise ValueError("--config and --no-config exclude each other")
    raw: dict[str, Any] = {}
    path: Path | None = None
    if config_path is not None:
        path = Path(config_path)
        if not path.is_file():
            raise FileNotFoundError(f"training config not found: {config_path}")
    elif not no_config:
        path = find_train_config(dataset)
        if path is None:
            find_card(dataset)  # a misspelt dataset: the card error (known cards) first
            raise _no_config_error(dataset)
    if path is not None:
        with open(path, encoding="utf-8") as f:
            loaded = yaml.safe_load(f) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: a training config must be a YAML mapping")
        raw.update(loaded)
        log.info("training config: %s", path)
    else:
        log.info("training config: none (--no-config); the built-in training defaults")
    raw["dataset"] = dataset
    raw.setdefault("card", {})
    for key, value in (overrides or {}).items():
        if key.startswith("card."):
            raw["card"][key[len("card.") :]] = value
        else:
            set_dotted(raw, key, value)
    _check_value_types(raw, str(path) if path is not None else "training config", set(overrides or {}))
    try:
        return TrainConfig.from_dict(raw)
    except TypeError as e:  # a mapping where a scalar belongs, etc.
        raise ValueError(f"{path or 'training config'}: {e}") from None


def _check_value_types(raw: dict[str, Any], source: str, override_keys: set[str]) -> None:
    """Check each value's type against its field (TrainConfig, and the model / loss / postprocess keys).

    The error names the dotted key, where the value came from (``source``, the config file, or
    ``--set`` for an override) and the value.
    """
    groups: list[tuple[type, dict[str, Any], str]] = [(TrainConfig, raw, "")]
    nested: list[tuple[str, type]] = [
        ("model", ModelConfig),
        ("loss", LossConfig),
        ("postprocess", PostprocessConfig),
        ("pseudo_queries", PseudoQueryConfig),
    ]
    for key, sub in nested:
        if isinstance(raw.get(key), dict):
            groups.append((sub, raw[key], f"{key}."))
    for cls, values, prefix in groups:
        for key, value in values.items():
            problem = type_problem(cls, key, value, prefix)
            if problem is not None:
                origin = "--set" if f"{prefix}{key}" in override_keys else source
                raise ValueError(f"{origin}: {problem}")
