"""The checkpoint format and its one reader: config JSON, safetensors weights, a pickle-free state.

Layout of a checkpoint folder (``{run}/checkpoints/step-<step>``, named by ``{run}/best`` and
``{run}/last``)::

    config.json              format, dataset card name, model / loss / train configs, epoch, step, metrics
    model.safetensors        the model's weights (all that inference needs)
    criterion.safetensors    learnable criterion parameters, if any (training only)
    optimizer.safetensors    optimizer state tensors, keyed "<param index>.<name>"
    trainer_state.json       optimizer param groups, scheduler state, epoch, step, best metric
    rng_<rank>.safetensors   torch CPU / CUDA generator states of process <rank>
    rng_<rank>.json          Python and NumPy generator states of process <rank>

Nothing is unpickled when loading. Training writes these folders, publishes them into the run folder
and points ``best`` / ``last`` at them (:mod:`masra.grounding.train.checkpoints`, which describes the
run folder's layout); the pointer files ``best.json`` / ``last.json`` read here by
:func:`resolve_checkpoint` cover the moment a copied ``best`` / ``last`` is swapped and run folders
of older masra versions, whose ``best/`` and ``last/`` are plain folders.

Reading a checkpoint for inference goes through :func:`read_checkpoint`, the one reader: it resolves
the folder (a checkpoint, the ``best`` / ``last`` link or pointer of a run, or a run folder: its best,
else its last checkpoint), checks the format, and returns a :class:`Checkpoint` of typed configs
(:class:`~masra.grounding.config.TrainConfig` with its ``PostprocessConfig``, ``ModelConfig``,
``LossConfig``), the prior run it trained with and its dataset card, resolved once.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model
from torch import nn

from masra.datasets.card import DatasetCard, load_card
from masra.grounding.config import LossConfig, ModelConfig, PostprocessConfig, TrainConfig
from masra.grounding.model import MasraModel, build_model

log = logging.getLogger(__name__)

__all__ = [
    "CHECKPOINT_FORMAT",
    "POINTER_NAMES",
    "Checkpoint",
    "is_complete_checkpoint",
    "load_checkpoint",
    "pointed_checkpoint",
    "read_checkpoint",
    "read_checkpoint_config",
    "read_safetensors",
    "resolve_checkpoint",
]

CHECKPOINT_FORMAT = "masra-grounding-checkpoint/1"
POINTER_NAMES = ("best", "last")
_REQUIRED = ("config.json", "model.safetensors", "optimizer.safetensors", "trainer_state.json")


def read_safetensors(
    path: Path, model: nn.Module | None = None, device: str = "cpu"
) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file (into ``model`` when given); a damaged file is a ValueError
    naming it, not a bare library error."""
    try:
        if model is not None:
            load_model(model, str(path), device=device)
            return {}
        return load_file(str(path))
    except (SafetensorError, OSError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        real = path.resolve()
        named = f"{path} (= {real})" if real != path.absolute() else str(path)
        raise ValueError(
            f"{named}: cannot read this checkpoint file ({first}); it is damaged or incomplete. Use another "
            "checkpoint (checkpoints/step-*), or retrain"
        ) from None


def pointed_checkpoint(run_dir: Path, name: str) -> Path | None:
    """The folder ``{run_dir}/{name}.json`` names, if it names a complete one."""
    pointer = Path(run_dir) / f"{name}.json"
    try:
        with open(pointer, encoding="utf-8") as f:
            target = Path(run_dir) / str(json.load(f)["checkpoint"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return target if is_complete_checkpoint(target) else None


def is_complete_checkpoint(folder: Path) -> bool:
    """Whether ``folder`` holds the config, the weights, the optimizer and the trainer state."""
    return folder.is_dir() and all((folder / n).is_file() for n in _REQUIRED)


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    """The checkpoint folder ``path`` stands for, else ``path`` unchanged.

    In order: ``path`` itself when it holds ``config.json`` (a checkpoint folder, or the ``best`` /
    ``last`` link of a run); the folder its pointer file ``{path}.json`` names (during the instant a
    copied ``best`` / ``last`` is swapped); for a run folder, its best checkpoint, else its last one
    (each by the same two rules).
    """
    p = Path(path)
    for name in (p, *(p / n for n in POINTER_NAMES)):
        if (name / "config.json").is_file():
            return name
        pointed = pointed_checkpoint(name.parent, name.name)
        if pointed is not None:
            return pointed
    return p


def read_checkpoint_config(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """``config.json`` of the checkpoint ``folder`` stands for (:func:`resolve_checkpoint`), as a dict.

    Raises FileNotFoundError when there is none and ValueError for another format; fills in what
    older masra versions did not write.
    """
    path = resolve_checkpoint(folder) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"not a masra checkpoint (no config.json): {folder}")
    with open(path, encoding="utf-8") as f:
        config: dict[str, Any] = json.load(f)
    if config.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: format {config.get('format')!r}, this masra reads {CHECKPOINT_FORMAT!r}")
    model = config.get("model")
    if isinstance(model, dict) and "prior_placement" not in model:
        # Written before ModelConfig.prior_placement existed: the prior heads then read the
        # query-conditioned features ("cross"), without the video encoder of today's default.
        model["prior_placement"] = "cross"
    return config


@dataclass
class Checkpoint:
    """A checkpoint folder read as typed objects (build it with :func:`read_checkpoint`).

    Attributes:
        folder: the resolved checkpoint folder (``config.json`` + ``model.safetensors``).
        train: the run's training config; ``train.postprocess`` turns outputs into windows.
        model / loss: the model and loss configs the weights were trained with.
        priors_run: the prior run the model trained with (None: trained without priors).
        epoch / step / metrics: when it was saved, and the trainer's ``brief`` metrics then.
        datasets: the card names or paths tried, in order, for :attr:`card`.
        card_overrides: dataset-card overrides: the training run's, then the caller's.
        config: ``config.json`` as read (older fields filled in).
    """

    folder: Path
    train: TrainConfig
    model: ModelConfig
    loss: LossConfig
    priors_run: str | None
    epoch: int | None
    step: int | None
    metrics: dict[str, Any] | None
    datasets: tuple[str, ...]
    card_overrides: dict[str, Any]
    config: dict[str, Any]
    _card: DatasetCard | None = field(default=None, repr=False, compare=False)

    @property
    def postprocess(self) -> PostprocessConfig:
        """How model outputs become ranked windows (the training run's ``postprocess`` block)."""
        return self.train.postprocess

    @property
    def card(self) -> DatasetCard:
        """The dataset card, with :attr:`card_overrides` applied; loaded on first use, then kept.

        Each name of :attr:`datasets` but the last is skipped when no card of that name is found
        (the path a run was trained with may be gone); the last one's error is raised.
        """
        if self._card is None:
            if not self.datasets:
                raise ValueError(f"{self.folder}: the checkpoint config names no dataset; pass the card")
            for name in self.datasets[:-1]:
                try:
                    self._card = load_card(name, self.card_overrides)
                    break
                except FileNotFoundError:
                    continue
            else:
                self._card = load_card(self.datasets[-1], self.card_overrides)
        return self._card

    def build_model(self, device: torch.device | str = "cpu") -> MasraModel:
        """The model with the checkpoint's weights, on ``device``, in eval mode."""
        model = build_model(self.model)
        read_safetensors(self.folder / "model.safetensors", model, device=str(device))
        model.to(device).eval()
        return model


def _typed_train(config: dict[str, Any], where: Path) -> TrainConfig:
    """The training config of ``config.json``; keys this masra no longer knows are left out, said once."""
    raw = dict(config.get("train") or {})
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        log.warning("%s: training config keys %s are unknown to this masra; ignored", where, unknown)
    try:
        return TrainConfig.from_dict({k: v for k, v in raw.items() if k in known})
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: its training config does not load: {e}") from None


def _priors_run(config: dict[str, Any]) -> str | None:
    """The prior run a checkpoint trained with: its ``priors`` record (null: none); older checkpoints
    without that record name it in the training config."""
    if "priors" in config:
        record = config["priors"]
        return str(record["run"]) if isinstance(record, dict) and record.get("run") else None
    legacy = (config.get("train") or {}).get("priors_run")
    return str(legacy) if legacy else None


def read_checkpoint(
    path: str | os.PathLike[str],
    *,
    dataset: str | os.PathLike[str] | None = None,
    card_overrides: Mapping[str, Any] | None = None,
    card: DatasetCard | None = None,
) -> Checkpoint:
    """Read a checkpoint: THE reader every inference entry uses (``config.json`` is read once here).

    Args:
        path: a checkpoint folder, a run's ``best`` / ``last``, or a run folder (its best checkpoint,
            else its last; see :func:`resolve_checkpoint`).
        dataset: evaluate on this card instead of the checkpoint's (name or YAML path); the training
            run's card overrides still apply.
        card_overrides: dataset-card overrides applied after the training run's.
        card: a card already loaded; it is the checkpoint's card as is (``dataset`` and
            ``card_overrides`` are then not used).
    Raises:
        FileNotFoundError: no checkpoint there. ValueError: another format, or configs that do not load.
    """
    folder = resolve_checkpoint(path)
    config = read_checkpoint_config(folder)
    where = folder / "config.json"
    train = _typed_train(config, where)
    try:
        model = ModelConfig.from_dict(config["model"])
        loss = LossConfig.from_dict(config.get("loss") or {})
    except KeyError as e:
        raise ValueError(f"{where}: no {e} config") from None
    raw_train = config.get("train") or {}
    names = (
        [str(dataset)]
        if dataset is not None
        else [n for n in (raw_train.get("dataset"), config.get("dataset")) if n]
    )
    return Checkpoint(
        folder=folder,
        train=train,
        model=model,
        loss=loss,
        priors_run=_priors_run(config),
        epoch=config.get("epoch"),
        step=config.get("step"),
        metrics=config.get("metrics"),
        datasets=tuple(str(n) for n in names),
        card_overrides={**(raw_train.get("card") or {}), **(card_overrides or {})},
        config=config,
        _card=card,
    )


def load_checkpoint(
    folder: str | os.PathLike[str], device: torch.device | str = "cpu"
) -> tuple[MasraModel, dict[str, Any]]:
    """Rebuild the model of a checkpoint folder in eval mode; returns (model, config dict).

    The config dict holds ``dataset``, ``model``, ``loss``, ``train``, ``epoch``, ``step`` and
    ``metrics``; :func:`read_checkpoint` gives them typed.
    """
    ckpt = read_checkpoint(folder)
    return ckpt.build_model(device), ckpt.config
